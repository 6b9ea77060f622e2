"""Benchmark: `synth report` on a large queue, on a real DuckDB file in a temp folder.

    python tests/benchmarks/bench_report.py                          # 1M PRs, 100k tasks
    python tests/benchmarks/bench_report.py --prs 100000 --tasks 10000   # smoke

The queue is filled with plain DuckDB SQL (INSERT ... SELECT from range(), as
bench_curation.py fills its tasks): --prs pull_requests over 2,000 repositories, one decision
each (about 35% kept; dropped PRs carry one or two reason codes, kept ones `substantive` and
sometimes `has_tests`) plus a second, newer decision for 10% of them (a rescore, so the
candidates view has a window to compute), --tasks tasks over kept PRs (two rewriters, judge
scores, confidence, flags, near-duplicates, every status), review events by 12 reviewers
over 60 days with overlap (for kappa), 200 runs with slash-keyed counters, 5,000 failures.
Building it is not timed.

Two figures, each printed next to the goal (nothing is asserted):
  a. the aggregates alone: `synth.queue.report_sql.collect` (one read-only connection);
  b. the whole command: `synth.report.write` (aggregates, matplotlib charts, HTML, file).
The goal is 2 s for the whole report at 1M PRs and 100k tasks; the first call (cold file
and, for b, matplotlib's first figure) and the best of 3 are shown.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import duckdb  # noqa: E402

from bench_curation import CATEGORIES, WORDS, _pick  # noqa: E402
from synth.filtering import INFO_CODES  # noqa: E402
from synth.queue import Queue  # noqa: E402
from synth.queue.report_sql import collect  # noqa: E402
from synth.report import write  # noqa: E402

GOAL_S = 2.0
FULL = {"prs": 1_000_000, "tasks": 100_000}
DROP_CODES = ["docs_only", "tests_only", "ci_only", "lockfile_only", "too_small", "too_large",
              "bot_author", "release", "version_bump", "revert", "typo", "chore",
              "whitespace_only", "comment_only", "rename_only"]
REVIEWERS = [f"rev{i}" for i in range(12)]


def fill(db: Path, n_prs: int, n_tasks: int) -> None:
    Queue(db).ensure()
    con = duckdb.connect(str(db))
    try:
        con.execute("BEGIN TRANSACTION")
        con.execute(f"""
            INSERT INTO repos (repo, owner, name, stars, language, license, default_branch,
                               archived, fork, source, first_seen_at, updated_at)
            SELECT 'org' || (i % 500) || '/repo' || i, 'org' || (i % 500), 'repo' || i,
                   (10000 + hash(i) % 50000)::INTEGER,
                   {_pick(['Python', 'TypeScript', 'Go', 'Rust'], 'i')}, 'MIT', 'main', false,
                   false, 'github', TIMESTAMP '2024-01-01', TIMESTAMP '2024-01-01'
            FROM range(2000) t(i)""")
        con.execute(f"""
            INSERT INTO pull_requests (repo, number, title, body, author, author_is_bot,
                merged_at, base_sha, merge_sha, head_sha, url, labels, linked_issues,
                additions, deletions, changed_files, source, first_seen_at, updated_at)
            SELECT repo, number, 'Fix ' || {_pick(WORDS, 'i')} || ' on retry', 'Body.',
                   'user' || (i % 997), false, TIMESTAMP '2022-01-01' + to_seconds(i * 61),
                   md5(i::VARCHAR), md5(i::VARCHAR || 'm'), NULL,
                   'https://github.com/' || repo || '/pull/' || number, [], '[]',
                   (20 + hash(i) % 400)::INTEGER, (hash(i) % 120)::INTEGER,
                   (1 + hash(i) % 12)::INTEGER, 'github',
                   TIMESTAMP '2024-01-01' + to_seconds(i * 30), TIMESTAMP '2024-06-01'
            FROM (SELECT i, 'org' || (i % 500) || '/repo' || (i % 2000) AS repo,
                         (1 + i // 2000)::INTEGER AS number FROM range({n_prs}) t(i))""")
        codes = "[" + ", ".join(f"'{c}'" for c in DROP_CODES) + "]"
        decision = f"""
            SELECT repo, number, fv, kept,
                   CASE WHEN kept THEN CASE WHEN h % 3 = 0 THEN ['substantive', 'has_tests']
                                            ELSE ['substantive'] END
                        WHEN h % 4 = 0 THEN [{codes}[1 + h % {len(DROP_CODES)}],
                                             {codes}[1 + (h // 7) % {len(DROP_CODES)}]]
                        ELSE [{codes}[1 + h % {len(DROP_CODES)}]] END,
                   '{{"code_lines": 12}}', decided, 'run-' || (i % 200)
            FROM (SELECT p.repo, p.number, row_number() OVER () - 1 AS i,
                         (hash(p.repo, p.number) >> 1)::BIGINT AS h, fv, decided,
                         (hash(p.repo, p.number, fv) >> 1)::BIGINT % 100 < 35 AS kept
                  FROM pull_requests p, (SELECT * FROM (VALUES ('v1', TIMESTAMP '2024-07-01'),
                                                               ('v2', TIMESTAMP '2024-08-01'))
                                                        v(fv, decided))
                  WHERE fv = 'v1' OR hash(p.repo, p.number) % 10 = 0)"""
        con.execute(f"INSERT INTO decisions (repo, number, filter_version, kept, reasons, "
                    f"metrics, decided_at, run_id) {decision}")
        con.execute(f"""
            INSERT INTO tasks (task_id, repo, number, title, category, background, query,
                subtasks, modified_files, related_files, difficulty, flags, confidence,
                rewriter, model, prompt_version, status, judge_score, prompt_tokens,
                completion_tokens, cost_usd, revision, created_at, updated_at, run_id,
                dup_of, dup_kind, dup_similarity, pr_url)
            SELECT md5(repo || '#' || number), repo, number, 'Task ' || number,
                   {_pick(CATEGORIES, 'h // 3')}, 'bg', 'query', '[]', [], [],
                   {_pick(['easy', 'medium', 'medium', 'hard'], 'h // 7')},
                   CASE WHEN h % 9 = 0 THEN ['needs_context'] WHEN h % 11 = 0 THEN ['template']
                        ELSE [] END,
                   (h % 1000) / 1000.0,
                   CASE WHEN h % 5 = 0 THEN 'template' ELSE 'llm' END,
                   CASE WHEN h % 5 = 0 THEN NULL WHEN h % 5 = 1 THEN 'model-small'
                        ELSE 'model-large-2' END, 'task_v1',
                   {_pick(['pending', 'pending', 'approved', 'rejected', 'needs_edit',
                           'skipped', 'pending', 'approved'], 'h // 13')},
                   CASE WHEN h % 10 < 7 THEN 1 + (h // 10 % 9) / 2.0 END,
                   1500 + h % 900, 600 + h % 400, (h % 500) / 100000.0, 0,
                   TIMESTAMP '2024-02-01' + to_seconds(i * 30),
                   TIMESTAMP '2024-02-01' + to_seconds(i * 30), 'run-' || (i % 200),
                   CASE WHEN h % 50 = 0 THEN md5('twin' || i) END,
                   CASE WHEN h % 50 = 0 THEN {_pick(['query', 'patch'], 'h // 50')} END,
                   CASE WHEN h % 50 = 0 THEN 0.8 + (h % 20) / 100.0 END,
                   'https://github.com/' || repo || '/pull/' || number
            FROM (SELECT c.repo, c.number, row_number() OVER (ORDER BY c.repo, c.number) - 1 AS i,
                         (hash(c.repo, c.number, 't') >> 1)::BIGINT AS h
                  FROM candidates c WHERE c.kept ORDER BY c.repo, c.number LIMIT {n_tasks})""")
        # each task reviewed by one to three of 12 reviewers (neighbours overlap), over 60 days
        reviewers = "[" + ", ".join(f"'{r}'" for r in REVIEWERS) + "]"
        con.execute(f"""
            INSERT INTO review_events (task_id, reviewer, action, note, status_before,
                                       status_after, acted_at)
            SELECT task_id, {reviewers}[1 + (h + k) % 12],
                   {_pick(['approve', 'approve', 'reject', 'needs-edit', 'skip', 'approve'],
                          'h // 17 + (k * (h % 3 = 0)::INT)')},
                   NULL, 'pending', status,
                   TIMESTAMP '2024-03-01' + to_seconds((h % 5184000)::BIGINT)
            FROM (SELECT task_id, status, (hash(task_id) >> 1)::BIGINT AS h FROM tasks
                  WHERE status <> 'pending') t, range(3) r(k)
            WHERE k <= h % 3""")
        keys = ", ".join(f"'filter/dropped/{c}', (hash(i, '{c}') % 400)::INT" for c in DROP_CODES)
        con.execute(f"""
            INSERT INTO runs (run_id, started_at, ended_at, status, source, config_hash, pid,
                              counts, errors)
            SELECT 'run-' || i, TIMESTAMP '2024-01-01' + to_hours(i * 12),
                   TIMESTAMP '2024-01-01' + to_hours(i * 12) + to_seconds(300 + hash(i) % 3000),
                   {_pick(['ok', 'ok', 'ok', 'partial', 'interrupted'], 'i')}, 'github', 'cfg',
                   1000 + i,
                   json_object('source/prs', 5000, 'filter/kept', 1750, 'filter/dropped', 3250,
                               'rewrite/tasks', 500, 'llm/calls', 1000,
                               'llm/tokens/in', 1500000 + hash(i) % 100000,
                               'llm/tokens/out', 600000, 'llm/cost_microusd', 2500000,
                               'github/requests', 120 + hash(i) % 80, {keys}),
                   '[]'
            FROM range(200) t(i)""")
        con.execute(f"""
            INSERT INTO failures (stage, repo, number, reason, message, detail, transient,
                                  attempts, first_at, last_at, run_id, resolved)
            SELECT {_pick(['rewrite', 'rewrite', 'source', 'filter'], 'i')},
                   'org' || (i % 500) || '/repo' || (i % 2000), (1 + i // 2000)::INTEGER,
                   {_pick(['unavailable', 'malformed', 'truncated', 'invalid_output',
                           'bad_request'], 'i // 4')}, 'message', NULL, i % 3 = 0, 1,
                   TIMESTAMP '2024-04-01', TIMESTAMP '2024-04-01' + to_minutes(i),
                   'run-' || (i % 200), i % 4 = 0
            FROM range(5000) t(i)""")
        con.execute("COMMIT")
        con.execute("CHECKPOINT")
    finally:
        con.close()


def timed(fn, repeat: int = 3) -> tuple[float, float, object]:
    times, out = [], None
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return times[0], min(times), out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--prs", type=int, default=FULL["prs"])
    ap.add_argument("--tasks", type=int, default=FULL["tasks"])
    ap.add_argument("--keep", action="store_true", help="keep the temp folder and print it")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="synth-bench-report-"))
    print(f"synth report benchmark: {os.cpu_count()} CPUs (load average "
          f"{os.getloadavg()[0]:.1f}), duckdb {duckdb.__version__}, work folder {work}")
    try:
        db = work / "queue.duckdb"
        t = time.perf_counter()
        fill(db, args.prs, args.tasks)
        queue = Queue(db)
        _, rows = queue.query("SELECT (SELECT count(*) FROM pull_requests), "
                              "(SELECT count(*) FROM decisions), (SELECT count(*) FROM tasks), "
                              "(SELECT count(*) FROM review_events), (SELECT count(*) FROM runs), "
                              "(SELECT count(*) FROM failures)")
        prs, decisions, tasks, events, runs, failures = rows[0]
        print(f"filled {prs:,} pull_requests, {decisions:,} decisions, {tasks:,} tasks, "
              f"{events:,} review_events, {runs:,} runs, {failures:,} failures with SQL in "
              f"{time.perf_counter() - t:.1f} s, not timed; file {db.stat().st_size / 1e6:,.0f} MB")
        first, best, data = timed(lambda: collect(queue, info_codes=INFO_CODES))
        shown = sum(len(tab.rows) for tab in data.tables.values())
        print(f"a. aggregates (report_sql.collect): first {first:.2f} s, best of 3 {best:.2f} s; "
              f"{len(data.tables)} tables, {shown:,} rows reach Python; kept {data.totals['kept']:,}")
        first, best, res = timed(lambda: write(queue, work / "report.html"))
        scale = "" if (prs, tasks) == (FULL["prs"], FULL["tasks"]) else (
            f" [run at {prs:,} PRs / {tasks:,} tasks, not {FULL['prs']:,} / {FULL['tasks']:,}]")
        print(f"b. synth report (aggregates + charts + HTML): first {first:.2f} s, best of 3 "
              f"{best:.2f} s (of which aggregates {res.queries_seconds:.2f} s); page "
              f"{res.bytes / 1024:,.0f} KB  (goal <= {GOAL_S:.0f} s at {FULL['prs']:,} PRs and "
              f"{FULL['tasks']:,} tasks): {'ok' if first <= GOAL_S else 'over goal'}{scale}")
    finally:
        if args.keep:
            print(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
