"""Benchmark: the review queue at curation scale, on real DuckDB files in a temp folder.

    python tests/benchmarks/bench_curation.py                       # full sizes (1M / 1M / 100k)
    python tests/benchmarks/bench_curation.py --prs 20000 --tasks 50000 --approved 5000   # smoke

Three figures, each printed next to its goal with "ok" or "over goal" (nothing is asserted
about time):

  a. ingest of --prs candidate PRs (goal <= 30 s): synthetic PullRequests (1-4 files with short
     Python / TypeScript / Go / test patches, repos org{i%500}/repo{i%2000}) and one Decision
     each, written with the public API `Queue(path).write(Batch(...))` in batches of
     --batch. Only the write calls are timed (the spool to JSON lines and the ingest inside
     them are shown apart); building the PRs and decisions is timed separately.
     Decisions come from `synth.filtering.decide` with `load_rules()`, but decide costs
     ~90 us per PR, which would add minutes: so decide runs once per PR shape (a shape is
     the PR's file layout and patch texts, which is all decide looks at here: the path
     classes, patches and sizes), and each PR gets a Decision built from its shape's verdict
     (same kept flag, reason codes and metrics). A sample of PRs is checked against a real
     decide() call. --decide-all calls decide on every PR instead.
  b. top-50 triage over --tasks tasks (goal <= 0.2 s): pull_requests, repos and tasks filled
     with plain DuckDB SQL (INSERT ... SELECT from range()), then `Queue(path).query(sql)` of
     `SELECT * FROM review_queue LIMIT 50` and of a curator-style filter, best of 5. The
     short read-only connection each query opens is part of the figure.
  c. export of --approved approved tasks to Parquet (goal <= 5 s): that many tasks set to
     'approved' with review_events rows (SQL), then `synth.export.export(Queue(path), out,
     fmt="parquet")`; the row count of the output is checked with pyarrow.parquet.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
import zlib
from datetime import datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import duckdb  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402

from synth.export import export  # noqa: E402
from synth.filtering import decide, load_rules  # noqa: E402
from synth.models import Batch, Decision, FileChange, PullRequest, Repo  # noqa: E402
from synth.queue import Queue  # noqa: E402

GOAL_INGEST_S = 30.0
GOAL_QUERY_S = 0.2
GOAL_EXPORT_S = 5.0
FULL = {"prs": 1_000_000, "tasks": 1_000_000, "approved": 100_000}


def verdict(took: float, goal: float) -> str:
    return "ok" if took <= goal else "over goal"


def scaled_goal(goal: float, n: int, full: int) -> str:
    """The goal is set for the full size; a smaller run also shows it pro rata."""
    if n == full:
        return ""
    return f" [run at {n:,}, not {full:,}: pro-rata goal {goal * n / full:.2f} s]"


def dir_size(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


# ---------------------------------------------------------------- a. ingest

# (path template, patch): short patches, each a real unified-diff hunk.
FILE_VARIANTS: list[tuple[str, str]] = [
    ("src/pkg{a}/loader{b}.py",
     "@@ -10,3 +10,5 @@ def load(self):\n     data = self.read()\n-    return data\n"
     "+    # keep the raw copy for the error report\n+    self.raw = data\n"
     "+    return parse(data, strict=self.strict)\n"),
    ("src/pkg{a}/cli{b}.py",
     "@@ -1,3 +1,4 @@\n import os\n+import sys\n \n def main(argv=None):\n"),
    ("web/src/app{a}/route{b}.ts",
     "@@ -5,2 +5,7 @@ export function run(req: Request) {\n   const id = req.params.id;\n"
     "+  // retry once: the cache may be cold\n+  if (!id) {\n+    throw new Error('no id');\n"
     "+  }\n+  return this.store.get(id);\n"),
    ("src/pkg{a}/retry{b}.py",
     "@@ -40,2 +40,12 @@ class Client:\n     timeout = 30\n \n+    def retry(self, fn, attempts=3):\n"
     '+        """Call fn, retrying on ConnectionError with a growing delay."""\n'
     "+        for i in range(attempts):\n+            try:\n+                return fn()\n"
     "+            except ConnectionError:\n+                time.sleep(2 ** i)\n"
     "+        raise RuntimeError('gave up')\n+\n"),
    ("internal/svc{a}/store{b}.go",
     "@@ -20,3 +20,9 @@ func (s *Store) Get(ctx context.Context, id string) (*Item, error) {\n"
     " \ts.mu.RLock()\n-\tdefer s.mu.RUnlock()\n+\tdefer s.mu.RUnlock()\n"
     "+\t// a miss is not an error\n+\tit, ok := s.items[id]\n+\tif !ok {\n+\t\treturn nil, nil\n+\t}\n"
     " \treturn it, nil\n"),
    ("tests/pkg{a}/test_loader{b}.py",
     "@@ -0,0 +1,11 @@\n+def test_load_keeps_raw(tmp_path):\n+    p = tmp_path / 'x.json'\n"
     "+    p.write_text('{}')\n+    loader = Loader(p)\n+    data = loader.load()\n"
     "+    assert loader.raw == '{}'\n+    assert data == {}\n+\n+\n"
     "+def test_load_strict():\n+    assert Loader('x', strict=True).strict\n"),
]
N_VARIANTS = len(FILE_VARIANTS)
_VARIANT_LINES = [(p.count("\n+"), p.count("\n-")) for _, p in FILE_VARIANTS]
BASE_TIME = datetime(2023, 1, 1)


def pr_shape(i: int) -> tuple[int, int]:
    """(file count, first variant): all decide() sees of a synthetic PR but its title/author."""
    return 1 + (i // 7) % 4, i % N_VARIANTS


def make_pr(i: int) -> PullRequest:
    repo = f"org{i % 500}/repo{i % 2000}"
    number = 1 + i // 2000
    nfiles, first = pr_shape(i)
    files = []
    for k in range(nfiles):
        v = (first + k) % N_VARIANTS
        path_t, patch = FILE_VARIANTS[v]
        adds, dels = _VARIANT_LINES[v]
        files.append(FileChange(path=path_t.format(a=i % 37, b=i % 101), status="modified",
                                additions=adds, deletions=dels, patch=patch,
                                patch_bytes=len(patch)))
    return PullRequest(
        repo=repo, number=number, title=f"Fix loader retry for case {i % 911}",
        body=f"Fixes #{number + 3}: the loader dropped the raw payload on retry.",
        author=f"user{i % 997}", merged_at=BASE_TIME + timedelta(seconds=37 * i),
        base_sha=f"{i * 2654435761 % (1 << 160):040x}", merge_sha=f"{(i + 1) * 40503 % (1 << 160):040x}",
        url=f"https://github.com/{repo}/pull/{number}", labels=("bug",) if i % 3 == 0 else (),
        files=tuple(files), source="github")


class Decider:
    """decide() once per PR shape; Decisions for the others are built from that verdict."""

    def __init__(self, rules, decide_all: bool):
        self.rules = rules
        self.decide_all = decide_all
        self.by_shape: dict[tuple[int, int], Decision] = {}

    def __call__(self, pr: PullRequest, i: int) -> Decision:
        if self.decide_all:
            return decide(pr, self.rules)
        shape = pr_shape(i)
        d = self.by_shape.get(shape)
        if d is None:
            d = self.by_shape[shape] = decide(pr, self.rules)
        return Decision(repo=pr.repo, number=pr.number, kept=d.kept, reasons=d.reasons,
                        filter_version=d.filter_version, metrics=d.metrics)


def check_decider(decider: Decider, n: int, samples: int = 500) -> None:
    step = max(1, n // samples)
    for i in range(0, n, step):
        pr = make_pr(i)
        want, got = decide(pr, decider.rules), decider(pr, i)
        if (want.kept, want.reasons, want.metrics) != (got.kept, got.reasons, got.metrics):
            raise SystemExit(f"shape shortcut disagrees with decide() on PR {i}: {want} vs {got}")


def bench_ingest(work: Path, n: int, batch: int, decide_all: bool) -> None:
    print(f"\n== a. ingest of {n:,} candidate PRs through Queue.write, batches of {batch:,}")
    db = work / "ingest.duckdb"
    queue = Queue(db)
    queue.ensure()  # creating the schema is not ingest
    rules = load_rules()
    decider = Decider(rules, decide_all)
    if not decide_all:
        check_decider(decider, n)
    # time the parts of each write() apart, without changing what write() does
    parts = {"ingest": 0.0}

    def timed(name, fn):
        def wrapper(*a, **kw):
            t0 = time.perf_counter()
            try:
                return fn(*a, **kw)
            finally:
                parts[name] += time.perf_counter() - t0
        return wrapper

    import synth.queue.writes as writes
    writes.ingest = timed("ingest", writes.ingest)

    gen = write = 0.0
    kept = files = 0
    batch_times: list[float] = []
    for start in range(0, n, batch):
        t = time.perf_counter()
        idx = range(start, min(n, start + batch))
        prs = [make_pr(i) for i in idx]
        decisions = [decider(pr, i) for pr, i in zip(prs, idx)]
        repos = [Repo.parse(name, source="github", stars=100 + zlib.crc32(name.encode()) % 5000, license="MIT")
                 for name in sorted({pr.repo for pr in prs})]
        gen += time.perf_counter() - t
        kept += sum(d.kept for d in decisions)
        files += sum(len(pr.files) for pr in prs)
        t = time.perf_counter()
        result = queue.write(Batch(pull_requests=prs, decisions=decisions, repos=repos))
        took = time.perf_counter() - t
        write += took
        batch_times.append(took)
        if result.spooled:
            raise SystemExit(f"a batch stayed spooled: {result}")
    how = ("decide() on every PR" if decide_all else
           f"decide() on {len(decider.by_shape)} PR shapes, Decisions built per PR; "
           "a sample checked against decide()")
    print(f"built {n:,} PRs ({files:,} files) and their decisions ({kept:,} kept) in "
          f"{gen:.1f} s, not timed ({how})")
    _, counts = queue.query("SELECT (SELECT count(*) FROM pull_requests), "
                            "(SELECT count(*) FROM pr_files), (SELECT count(*) FROM decisions), "
                            "(SELECT count(*) FROM repos)")
    prs_n, files_n, dec_n, repos_n = counts[0]
    print(f"queue now holds {prs_n:,} pull_requests, {files_n:,} pr_files, {dec_n:,} decisions, "
          f"{repos_n:,} repos; file {db.stat().st_size / 1e6:,.0f} MB")
    rest = write - sum(parts.values())
    print(f"  write() split: building columns and DuckDB upserts (overlapped) and commit "
          f"{parts['ingest']:.1f} s, open/close {rest:.1f} s")
    print(f"  per batch: first {batch_times[0]:.2f} s, last {batch_times[-1]:.2f} s, "
          f"slowest {max(batch_times):.2f} s")
    print(f"a. ingest {n:,} PRs: {write:.1f} s, {n / write:,.0f} PRs/s  "
          f"(goal <= {GOAL_INGEST_S:.0f} s for {FULL['prs']:,}): "
          f"{verdict(write * FULL['prs'] / n, GOAL_INGEST_S)}"
          f"{scaled_goal(GOAL_INGEST_S, n, FULL['prs'])}")


# ---------------------------------------------------------------- b. triage query

WORDS = ["cache", "parser", "router", "session", "token", "client", "worker", "queue", "schema",
         "index", "handler", "retry", "timeout", "stream", "export", "loader", "metrics", "auth",
         "search", "plugin"]
CATEGORIES = ["algorithm", "app", "llm-app", "backend", "ui", "frontend", "build-deploy",
              "research", "data-processing", "debugging"]
LICENSES = ["MIT", "Apache-2.0", "BSD-3-Clause", "MPL-2.0", "GPL-3.0-only", None]


def _pick(values: list, expr: str) -> str:
    """SQL: values[expr % len(values)] as a list literal index."""
    lit = "[" + ", ".join("NULL" if v is None else "'" + v + "'" for v in values) + "]"
    return f"({lit})[1 + (({expr}) % {len(values)})::BIGINT]"


def fill_tasks(db: Path, n: int) -> None:
    """pull_requests, repos and tasks rows for n PRs/tasks, with plain SQL."""
    Queue(db).ensure()
    con = duckdb.connect(str(db))
    try:
        con.execute("BEGIN TRANSACTION")
        con.execute(f"""
            INSERT INTO repos (repo, owner, name, stars, language, license, default_branch,
                               archived, fork, source, first_seen_at, updated_at)
            SELECT 'org' || (i % 500) || '/repo' || i, 'org' || (i % 500), 'repo' || i,
                   (hash(i) % 50000)::INTEGER, {_pick(['Python', 'TypeScript', 'Go', 'Rust'], 'i')},
                   {_pick(LICENSES, 'hash(i)')}, 'main', false, false, 'github',
                   TIMESTAMP '2024-01-01', TIMESTAMP '2024-01-01'
            FROM range(2000) t(i)""")
        # a PR i: repo org{i%500}/repo{i%2000}, number 1 + i // 2000 (unique per repo)
        con.execute(f"""
            INSERT INTO pull_requests (repo, number, title, body, author, author_is_bot,
                merged_at, base_sha, merge_sha, head_sha, url, labels, linked_issues,
                additions, deletions, changed_files, source, first_seen_at, updated_at)
            SELECT repo, number,
                   'Fix ' || {_pick(WORDS, 'i')} || ' ' || {_pick(WORDS, 'i // 7')} || ' on retry',
                   'Fixes #' || (number + 3) || '. The ' || {_pick(WORDS, 'i // 3')} ||
                       ' dropped its state when the ' || {_pick(WORDS, 'i // 11')} || ' timed out.',
                   'user' || (i % 997), false,
                   TIMESTAMP '2022-01-01' + to_seconds(i * 61),
                   sha, md5(sha), md5(sha || 'h'), 'https://github.com/' || repo || '/pull/' || number,
                   CASE WHEN i % 3 = 0 THEN ['bug'] ELSE [] END, '[]',
                   (20 + hash(i) % 400)::INTEGER, (hash(i) % 120)::INTEGER,
                   (1 + hash(i) % 12)::INTEGER, 'github',
                   TIMESTAMP '2024-01-01', TIMESTAMP '2024-01-01'
            FROM (SELECT i, 'org' || (i % 500) || '/repo' || (i % 2000) AS repo,
                         (1 + i // 2000)::INTEGER AS number, md5(i::VARCHAR) AS sha
                  FROM range({n}) t(i))""")
        # tasks: task_id as synth.models.task_id computes it (sha256 of repo#number|pv|rw|model)
        con.execute(f"""
            INSERT INTO tasks (task_id, repo, number, title, category, background, query,
                subtasks, modified_files, related_files, difficulty, flags, confidence,
                rewriter, model, prompt_version, status, judge_score, judge, prompt_tokens,
                completion_tokens, cost_usd, revision, created_at, updated_at, run_id)
            SELECT substr(sha256(repo || '#' || number || '|v3|' || rewriter || '|' ||
                                 coalesce(model, '')), 1, 16),
                   repo, number, title, category,
                   'The ' || w1 || ' module of ' || repo || ' keeps a ' || w2 || ' per ' || w3 ||
                       '. When the ' || w3 || ' times out, the ' || w2 || ' is dropped and the '
                       || 'next request starts from scratch, which users see as lost work.',
                   'We need the ' || w1 || ' to survive a ' || w3 || ' timeout. Keep the ' || w2 ||
                       ' across retries, make the retry count and delay configurable, and report '
                       || 'each retry in the metrics. Do not change the public API of ' || w1 ||
                       '; existing callers must keep working. Add tests that reproduce the '
                       || 'timeout with a fake ' || w3 || ' and show the ' || w2 || ' is kept. '
                       || 'Document the new settings in the ' || w1 || ' guide.',
                   json_array(
                       json_object('title', 'Reproduce the lost ' || w2, 'goal',
                                   'A failing test shows the ' || w2 || ' is dropped',
                                   'constraints', ['use a fake ' || w3],
                                   'deliverables', ['tests/test_' || w1 || '.py'],
                                   'acceptance_criteria', ['the test fails before the fix']),
                       json_object('title', 'Keep the ' || w2 || ' across retries', 'goal',
                                   'The ' || w1 || ' retries with its ' || w2,
                                   'constraints', ['no public API change', 'configurable delay'],
                                   'deliverables', ['src/' || w1 || '.py'],
                                   'acceptance_criteria', ['the new test passes', 'old tests pass']),
                       json_object('title', 'Document the settings', 'goal',
                                   'Users can tune retries', 'constraints', ['short'],
                                   'deliverables', ['docs/' || w1 || '.md'],
                                   'acceptance_criteria', ['settings listed with defaults']))::JSON,
                   ['src/' || w1 || '.py', 'tests/test_' || w1 || '.py'], ['src/' || w2 || '/'],
                   {_pick(['easy', 'medium', 'medium', 'hard'], 'h // 7')},
                   CASE WHEN h % 9 = 0 THEN ['needs_context'] ELSE [] END,
                   (h % 1000) / 1000.0, rewriter, model, 'v3', status,
                   CASE WHEN h % 10 < 7 THEN (h // 10 % 1001) / 100.0 END, NULL,
                   1500 + h % 900, 600 + h % 400, (h % 500) / 100000.0, 0,
                   TIMESTAMP '2024-02-01' + to_seconds(i * 3), TIMESTAMP '2024-02-01' + to_seconds(i * 3),
                   'run-' || (i // 50000)
            FROM (SELECT i, h, repo, number, title,
                         {_pick(CATEGORIES, 'h // 3')} AS category,
                         {_pick(WORDS, 'h // 11')} AS w1, {_pick(WORDS, 'h // 13')} AS w2,
                         {_pick(WORDS, 'h // 17')} AS w3,
                         CASE WHEN h % 5 = 0 THEN 'template' ELSE 'llm' END AS rewriter,
                         CASE WHEN h % 5 = 0 THEN NULL ELSE 'model-large-2' END AS model,
                         CASE WHEN h % 20 = 0 THEN 'rejected' WHEN h % 20 = 1 THEN 'skipped'
                              ELSE 'pending' END AS status
                  FROM (SELECT p.*, (hash(p.repo, p.number) >> 1)::BIGINT AS h,
                               row_number() OVER (ORDER BY p.repo, p.number) - 1 AS i
                        FROM pull_requests p))""")
        con.execute("COMMIT")
        con.execute("CHECKPOINT")
    finally:
        con.close()


def time_query(queue: Queue, sql: str, repeat: int = 5) -> tuple[float, float, int]:
    times, rows = [], []
    for _ in range(repeat):
        t = time.perf_counter()
        _, rows = queue.query(sql)
        times.append(time.perf_counter() - t)
    return min(times), times[0], len(rows)


def bench_triage(work: Path, n: int) -> Path:
    print(f"\n== b. top-50 triage over {n:,} tasks (Queue.query, read-only connection each time)")
    db = work / "curation.duckdb"
    t = time.perf_counter()
    fill_tasks(db, n)
    queue = Queue(db)
    _, rows = queue.query("SELECT (SELECT count(*) FROM tasks), "
                          "(SELECT count(*) FROM tasks WHERE status = 'pending'), "
                          "(SELECT count(*) FROM pull_requests)")
    print(f"filled {rows[0][0]:,} tasks ({rows[0][1]:,} pending) over {rows[0][2]:,} "
          f"pull_requests with SQL in {time.perf_counter() - t:.1f} s, not timed; "
          f"file {db.stat().st_size / 1e6:,.0f} MB")
    t = time.perf_counter()
    queue.query("SELECT 1")
    print(f"  open + close of a read-only connection alone: {(time.perf_counter() - t) * 1000:.0f} ms")
    queries = {
        "top 50 of review_queue": "SELECT * FROM review_queue LIMIT 50",
        "triage: hard tasks of org1*": (
            "SELECT task_id, repo, title, difficulty, judge_score FROM review_queue "
            "WHERE difficulty = 'hard' AND repo LIKE 'org1%' LIMIT 50"),
    }
    for label, sql in queries.items():
        best, first, got = time_query(queue, sql)
        print(f"b. {label}: {best * 1000:.0f} ms best of 5 (first {first * 1000:.0f} ms), "
              f"{got} rows  (goal <= {GOAL_QUERY_S * 1000:.0f} ms over {FULL['tasks']:,} tasks): "
              f"{verdict(best, GOAL_QUERY_S)}"
              f"{' [run at %s tasks]' % f'{n:,}' if n != FULL['tasks'] else ''}")
    return db


# ---------------------------------------------------------------- c. export

def approve(db: Path, n: int) -> int:
    """Set n pending tasks to approved, with the review events a curator leaves."""
    con = duckdb.connect(str(db))
    try:
        con.execute("BEGIN TRANSACTION")
        con.execute(f"""
            CREATE TEMP TABLE chosen AS
            SELECT task_id, row_number() OVER (ORDER BY hash(task_id), task_id) AS k
            FROM tasks WHERE status = 'pending' ORDER BY hash(task_id), task_id LIMIT {n}""")
        # every third task went through needs-edit first; some approvals carry a note;
        # one in four has a second approver
        con.execute("""
            INSERT INTO review_events (task_id, reviewer, action, note, status_before,
                                       status_after, acted_at)
            SELECT task_id, reviewer, action, note, status_before, status_after, acted_at
            FROM (
                SELECT task_id, k, 1 AS step, 'rev' || (k % 7) AS reviewer, 'needs-edit' AS action,
                       'subtask 2 is vague: say which retries' AS note, 'pending' AS status_before,
                       'needs_edit' AS status_after,
                       TIMESTAMP '2024-03-01' + to_seconds(k * 5) AS acted_at
                FROM chosen WHERE k % 3 = 0
                UNION ALL
                SELECT task_id, k, 2, 'rev' || (k % 5), 'approve',
                       CASE WHEN k % 4 = 0 THEN 'good task, clear acceptance criteria' END,
                       CASE WHEN k % 3 = 0 THEN 'needs_edit' ELSE 'pending' END, 'approved',
                       TIMESTAMP '2024-03-02' + to_seconds(k * 5)
                FROM chosen
                UNION ALL
                SELECT task_id, k, 3, 'rev' || (5 + k % 3), 'approve', NULL, 'approved',
                       'approved', TIMESTAMP '2024-03-03' + to_seconds(k * 5)
                FROM chosen WHERE k % 4 = 1)
            ORDER BY k, step""")
        con.execute("UPDATE tasks SET status = 'approved', "
                    "updated_at = TIMESTAMP '2024-03-02' WHERE task_id IN (SELECT task_id FROM chosen)")
        events = con.execute("SELECT count(*) FROM review_events").fetchone()[0]
        con.execute("COMMIT")
        con.execute("CHECKPOINT")
        return events
    finally:
        con.close()


def bench_export(work: Path, db: Path, n: int) -> None:
    print(f"\n== c. export of {n:,} approved tasks to Parquet (synth.export.export)")
    t = time.perf_counter()
    events = approve(db, n)
    queue = Queue(db)
    _, rows = queue.query("SELECT count(*) FROM approved_tasks")
    print(f"approved {rows[0][0]:,} tasks with {events:,} review_events in "
          f"{time.perf_counter() - t:.1f} s (SQL, not timed)")
    out = work / "export"
    t = time.perf_counter()
    result = export(queue, out, fmt="parquet")
    took = time.perf_counter() - t
    parquet = sorted(out.glob("*.parquet"))
    rows_out = sum(pq.read_metadata(p).num_rows for p in parquet)
    no_approval = sum(
        pq.read_table(p, columns=["review"]).column("review").combine_chunks()
        .field("approvals").to_pylist().count(0) for p in parquet)
    print(f"exported {result.count:,} records; parquet rows (pyarrow): {rows_out:,} in "
          f"{', '.join(f'{p.name} {p.stat().st_size / 1e6:.1f} MB' for p in parquet)}; "
          f"records without an approval in review: {no_approval}"
          + ("" if rows_out == n == result.count else f"  MISMATCH: expected {n:,}"))
    print(f"c. export {n:,} approved tasks to Parquet: {took:.2f} s  "
          f"(goal <= {GOAL_EXPORT_S:.0f} s for {FULL['approved']:,}): "
          f"{verdict(took * FULL['approved'] / n, GOAL_EXPORT_S)}"
          f"{scaled_goal(GOAL_EXPORT_S, n, FULL['approved'])}")


# ---------------------------------------------------------------- main

def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--prs", type=int, default=FULL["prs"], help="candidate PRs to ingest (a)")
    ap.add_argument("--batch", type=int, default=50_000, help="PRs per Queue.write batch (a)")
    ap.add_argument("--tasks", type=int, default=FULL["tasks"], help="tasks in the queue (b, c)")
    ap.add_argument("--approved", type=int, default=FULL["approved"], help="tasks to export (c)")
    ap.add_argument("--decide-all", action="store_true",
                    help="call decide() on every PR in (a), not once per PR shape (slow)")
    ap.add_argument("--only", choices=["a", "b", "bc"],
                    help="run only these figures (c needs the tasks b fills)")
    ap.add_argument("--keep", action="store_true", help="keep the temp folder and print it")
    ap.add_argument("--gc-during-ingest", action="store_true",
                    help="leave the cyclic GC on while a batch is written (what the pause of "
                    "writes._no_gc buys shows against a run without this flag)")
    args = ap.parse_args()
    if args.gc_during_ingest:
        import contextlib
        import synth.queue.writes as writes
        writes._no_gc = contextlib.nullcontext
    if args.approved > args.tasks * 0.85:
        ap.error("--approved must be at most 85% of --tasks (about 10% of tasks are not pending)")
    work = Path(tempfile.mkdtemp(prefix="synth-bench-curation-"))
    print(f"synth curation benchmark: {os.cpu_count()} CPUs, duckdb {duckdb.__version__}, "
          f"work folder {work}")
    t0 = time.perf_counter()
    try:
        if args.only in (None, "a"):
            bench_ingest(work, args.prs, args.batch, args.decide_all)
        if args.only in (None, "b", "bc"):
            db = bench_triage(work, args.tasks)
            if args.only != "b":
                bench_export(work, db, args.approved)
        print(f"\ntotal {time.perf_counter() - t0:.0f} s; temp folder {dir_size(work) / 1e6:,.0f} MB")
    finally:
        if args.keep:
            print(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
