"""The queue module alone: migrations, idempotent batches, spool and ingest."""

from __future__ import annotations

from datetime import datetime

import duckdb

from dbutil import q
from synth.models import Batch, Decision, FileChange, PullRequest, Repo
from synth.queue import SCHEMA_VERSION, Queue


def pr(n: int) -> PullRequest:
    return PullRequest(repo="o/r", number=n, title=f"t{n}", body="b", author="a",
                       merged_at=datetime(2024, 1, n), base_sha="a" * 40, merge_sha="b" * 40,
                       url=f"https://github.com/o/r/pull/{n}", labels=("x",),
                       files=(FileChange("src/a.py", "modified", 2, 1, "@@\n+a\n+b\n-c\n"),))


def test_an_older_file_is_upgraded_in_place(tmp_path):
    db = tmp_path / "old.duckdb"
    Queue(db).ensure()
    con = duckdb.connect(str(db))  # make it look like a version-1 file
    for view in ("candidates", "review_queue", "approved_tasks", "reviewer_stats"):
        con.execute(f"DROP VIEW {view}")
    for col in ("dup_of", "dup_kind", "dup_similarity", "pr_url"):
        con.execute(f"ALTER TABLE tasks DROP COLUMN {col}")
    for table in ("task_revisions", "task_signatures", "http_cache"):
        con.execute(f"DROP TABLE {table}")
    con.execute("ALTER TABLE pr_files ADD PRIMARY KEY (repo, number, path)")  # as version 1 had
    con.execute("DELETE FROM schema_migrations WHERE version > 1")
    con.close()
    Queue(db).write(Batch(pull_requests=[pr(1)]))
    assert q(db, "SELECT max(version) FROM schema_migrations") == [(SCHEMA_VERSION,)]
    cols = {c for (c,) in q(db, "SELECT column_name FROM information_schema.columns WHERE table_name = 'tasks'")}
    assert {"dup_of", "pr_url"} <= cols
    assert q(db, "SELECT count(*) FROM reviewer_stats") == [(0,)]


def test_batches_are_idempotent_and_files_replaced_whole(tmp_path):
    db = tmp_path / "q.duckdb"
    queue = Queue(db)
    batch = Batch(repos=[Repo("o", "r")], pull_requests=[pr(1), pr(2)],
                  decisions=[Decision("o/r", 1, True, ("substantive",), "v1")])
    queue.write(batch)
    queue.write(batch)
    assert q(db, "SELECT count(*) FROM pull_requests") == [(2,)]
    assert q(db, "SELECT count(*) FROM decisions") == [(1,)]
    changed = PullRequest(**{**{k: getattr(pr(1), k) for k in pr(1).__dataclass_fields__},
                             "files": (FileChange("src/b.py", "added", 1, 0, "@@\n+x\n"),)})
    queue.write(Batch(pull_requests=[changed]))
    assert q(db, "SELECT path FROM pr_files WHERE number = 1") == [("src/b.py",)]
    assert q(db, "SELECT first_seen_at < updated_at OR first_seen_at = updated_at FROM pull_requests "
                 "WHERE number = 1") == [(True,)]


def test_a_busy_file_spools_and_the_next_write_ingests(tmp_path):
    db = tmp_path / "q.duckdb"
    queue = Queue(db, busy_timeout=0.2)
    queue.ensure()
    import subprocess
    import sys
    holder = subprocess.Popen([sys.executable, "-c", f"import duckdb,sys; c=duckdb.connect({str(db)!r}); "
                               "print('held', flush=True); sys.stdin.readline()"],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        res = queue.write(Batch(pull_requests=[pr(3)]))
        assert res.spooled == 1 and res.ingested == 0
        assert len(queue.pending_spool()) == 1
    finally:
        holder.stdin.close()
        holder.wait()
    res = queue.write(Batch(pull_requests=[pr(4)]))
    assert res.ingested == 2 and not queue.pending_spool()
    assert q(db, "SELECT number FROM pull_requests ORDER BY 1") == [(3,), (4,)]


def failure(stage: str, number: int, reason: str = "x"):
    from synth.models import Failure
    return Failure(stage, reason, "m", repo="o/r", number=number)


def test_merged_batches_write_what_the_batches_wrote_one_by_one(tmp_path):
    from synth.models import merge_batches
    a = Batch(run_id="r1", pull_requests=[pr(1), pr(2)], failures=[failure("rewrite", 1)],
              run={"run_id": "r1", "started_at": "2024-01-01 00:00:00", "ended_at": None,
                   "status": "running", "source": "git", "config_hash": None, "pid": 1,
                   "counts": {}, "errors": []})
    b = Batch(run_id="r1", pull_requests=[pr(2)], resolved=[("rewrite", "o/r", 1)])
    c = Batch(run_id="r1", failures=[failure("rewrite", 1, "again")])  # after its resolution
    d = Batch(run_id="r2", pull_requests=[pr(3)])  # another run's batch
    merged = merge_batches([a, b, c, d])
    assert [len(m.pull_requests) for m in merged] == [3, 0, 1]
    assert merged[0].run == a.run and merged[0].resolved == [("rewrite", "o/r", 1)]
    assert merged[1].failures[0].reason == "again" and merged[2].run_id == "r2"
    one_by_one, together = tmp_path / "a.duckdb", tmp_path / "b.duckdb"
    for batch in (a, b, c, d):
        Queue(one_by_one).write(batch)
    Queue(together).write_many([a, b, c, d])
    sql = ("SELECT stage, number, reason, resolved, attempts FROM failures ORDER BY 1, 2",
           "SELECT number FROM pull_requests ORDER BY 1", "SELECT run_id, status FROM runs")
    for s in sql:
        assert q(one_by_one, s) == q(together, s), s
    assert q(together, sql[0]) == [("rewrite", 1, "again", False, 2)]


def test_a_failed_write_leaves_the_queue_as_it_was_and_usable(tmp_path):
    db = tmp_path / "q.duckdb"
    queue = Queue(db)
    queue.write(Batch(pull_requests=[pr(1)]))
    bad = PullRequest(**{**{k: getattr(pr(2), k) for k in pr(2).__dataclass_fields__},
                         "title": None})  # title is NOT NULL
    import pytest
    from synth.errors import QueueError
    with queue.holding():
        with pytest.raises(QueueError):
            queue.write(Batch(pull_requests=[pr(5), bad]))
        queue.write(Batch(pull_requests=[pr(3)]))  # the held connection was renewed
    assert q(db, "SELECT number FROM pull_requests ORDER BY 1") == [(1,), (3,)]


def test_a_held_connection_is_let_go_for_other_processes(tmp_path):
    import subprocess
    import sys
    db = tmp_path / "q.duckdb"
    queue = Queue(db)
    reader = [sys.executable, "-c", "import duckdb,sys; duckdb.connect(sys.argv[1], read_only=True)"
              ".execute('SELECT count(*) FROM pull_requests')", str(db)]
    with queue.holding(max_hold=60) as held:
        queue.write(Batch(pull_requests=[pr(1)]))
        queue.write(Batch(pull_requests=[pr(2)]))
        assert held.is_open  # one connection for both writes, still open
        assert subprocess.run(reader, capture_output=True).returncode != 0  # locked out meanwhile
        held.release()
        assert subprocess.run(reader, capture_output=True).returncode == 0
        queue.write(Batch(pull_requests=[pr(3)]))  # opened again on use
    assert not held.is_open
    with queue.holding(max_hold=0) as held:  # held no longer than max_hold
        queue.write(Batch(pull_requests=[pr(4)]))
        assert not held.is_open
    assert q(db, "SELECT count(*) FROM pull_requests") == [(4,)]


def test_reads_during_a_run_share_the_file_with_a_reading_curator(tmp_path):
    import subprocess
    import sys
    from synth.queue import crawl_state
    db = tmp_path / "q.duckdb"
    queue = Queue(db, busy_timeout=1.0)
    queue.write(Batch(pull_requests=[pr(1)], decisions=[Decision("o/r", 1, True, ("substantive",), "v1")]))
    curator = subprocess.Popen(
        [sys.executable, "-c", "import duckdb,sys; c=duckdb.connect(sys.argv[1], read_only=True); "
         "print('reading', flush=True); sys.stdin.readline()", str(db)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert curator.stdout.readline().strip() == "reading"
        with queue.holding():
            known, cursor, failed, before = crawl_state(queue, "o/r", "v1", "git")  # read-only
            assert known == {1} and cursor is None and failed == set() == before
            assert crawl_state(queue, "o/r", "v2", "git")[::3] == (set(), {1})  # other rules
            res = queue.write(Batch(pull_requests=[pr(2)]))  # a write waits, then spools
            assert res.spooled == 1
    finally:
        curator.stdin.close()
        curator.wait(timeout=10)
    assert queue.write(Batch()).ingested == 1  # the spooled batch, now the file is free
    assert q(db, "SELECT count(*) FROM pull_requests") == [(2,)]


def test_a_file_from_before_chains_is_upgraded_in_place(tmp_path):
    """Version 6 -> 7: the chains table, tasks' kind, members and reference change, file
    modes and branch names; a task written before is a one-PR task over its own PR."""
    db = tmp_path / "v6.duckdb"
    Queue(db).ensure()
    con = duckdb.connect(str(db))
    for (view,) in con.execute("SELECT view_name FROM duckdb_views() WHERE NOT internal").fetchall():
        con.execute(f"DROP VIEW {view}")
    con.execute("DROP TABLE chains")
    for table, cols in (("tasks", ("kind", "members", "chain_id", "patch", "test_patch",
                                   "tests_added", "applicable", "apply_issues", "stages")),
                        ("pr_files", ("old_mode", "new_mode")),
                        ("pull_requests", ("head_ref", "base_ref"))):
        for col in cols:
            con.execute(f"ALTER TABLE {table} DROP COLUMN {col}")
    con.execute("INSERT INTO tasks (task_id, repo, number, title, category, background, query, "
                "subtasks, difficulty, rewriter, prompt_version, created_at, updated_at) VALUES "
                "('t1', 'o/r', 1, 't', 'backend', 'b', 'q', '[]', 'easy', 'template', "
                "'template_v1', now(), now())")
    con.execute("DELETE FROM schema_migrations WHERE version = 7")
    con.close()
    Queue(db).write(Batch(pull_requests=[pr(1)]))
    assert q(db, "SELECT max(version) FROM schema_migrations") == [(SCHEMA_VERSION,)]
    assert q(db, "SELECT kind, members, patch FROM tasks") == [("pr", [1], None)]
    assert q(db, "SELECT count(*) FROM chains") == [(0,)]
    assert q(db, "SELECT old_mode, new_mode FROM pr_files") == [(None, None)]
    assert q(db, "SELECT kind, members FROM review_queue") == [("pr", [1])]


def test_the_writer_checkpoints_while_the_file_stays_held(tmp_path):
    """Writer.checkpoint folds the write-ahead log into the file on the writer's thread (the
    run asks for it before chain detection), and the held connection stays open."""
    from synth.clock import Clock
    from synth.models import RunSummary
    from synth.writer import Writer
    db = tmp_path / "q.duckdb"
    queue = Queue(db)
    queue.ensure()
    wal = tmp_path / "q.duckdb.wal"
    with queue.holding() as held:
        def run_row(status):
            return {"run_id": "r1", "started_at": "2024-01-01 00:00:00", "ended_at": None,
                    "status": status, "source": "test", "config_hash": "h", "pid": 1,
                    "counts": {}, "errors": []}
        writer = Writer(queue, RunSummary("r1"), run_row, Clock(), idle_after=30.0)
        writer.put(Batch(pull_requests=[pr(n) for n in range(1, 20)]))
        writer.flush()
        assert wal.exists() and wal.stat().st_size > 0  # written, not yet in the file
        writer.checkpoint()
        writer.flush()
        assert not wal.exists() or wal.stat().st_size == 0
        assert held._con is not None  # still held: no close was needed
        writer.close()
    assert q(db, "SELECT count(*) FROM pull_requests") == [(19,)]
