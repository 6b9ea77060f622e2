"""The pipeline with a source made here: how a run shares the queue file while it lasts."""

from __future__ import annotations

import subprocess
import sys
from datetime import datetime

from dbutil import q
from synth.filtering import load_rules
from synth.models import FileChange, PullRequest, Repo, SourceBatch
from synth.pipeline import Pipeline, RunOptions
from synth.queue import Queue


def pr(n: int) -> PullRequest:
    body = "".join(f"+    value_{i} = compute({i}, {n})\n" for i in range(40))
    return PullRequest(repo="o/r", number=n, title=f"Add feature {n}", body="b", author="dev",
                       merged_at=datetime(2024, 1, 1 + n % 28), base_sha="a" * 40,
                       merge_sha="b" * 40, url=f"https://github.com/o/r/pull/{n}",
                       files=(FileChange("src/a.py", "modified", 40, 0, "@@ -1 +1,40 @@\n" + body),))


class SlowSource:
    """Two batches; between them the source waits (as for an LLM or a rate limit) until
    another process has read the queue file, which it can only once the run lets go."""

    label = "test"
    kind = "git"

    def __init__(self, db):
        self.db, self.read_during_pause = db, None

    def repos(self):
        return [Repo("o", "r")]

    def batches(self, repo, known, batch_size, limit, cursor=None):
        import time
        yield SourceBatch(prs=[pr(1), pr(2)], total=4)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:  # until the reader gets in (a bound, not a pace)
            self.read_during_pause = subprocess.run(
                [sys.executable, "-c", "import duckdb,sys; print(duckdb.connect(sys.argv[1], "
                 "read_only=True).execute('SELECT count(*) FROM pull_requests').fetchone()[0])",
                 str(self.db)], capture_output=True, text=True)
            if self.read_during_pause.returncode == 0:
                break
        yield SourceBatch(prs=[pr(3), pr(4)], total=4)


def test_a_run_lets_go_of_the_file_while_its_source_is_slow(tmp_path):
    db = tmp_path / "q.duckdb"
    source = SlowSource(db)  # the writer lets go after 0.5 s without work
    summary = Pipeline(Queue(db), load_rules(), None, RunOptions(rewrite=False)).run([source])
    assert summary.status == "ok"
    read = source.read_during_pause
    assert read.returncode == 0, read.stderr
    assert read.stdout.strip() == "2"  # the first batch was in, and readable, mid-run
    assert q(db, "SELECT count(*) FROM pull_requests") == [(4,)]
    assert q(db, "SELECT status FROM runs") == [("ok",)]


def test_quick_handoffs_restore_the_switch_interval():
    """The crawl's last step hands the GIL over every 0.2 ms (DuckDB's client needs it
    after every task of a write); the process-wide interval comes back after, errors too."""
    import pytest
    from synth.stages import HANDOFF_INTERVAL, _quick_handoffs
    before = sys.getswitchinterval()
    with _quick_handoffs():
        assert sys.getswitchinterval() == pytest.approx(HANDOFF_INTERVAL)
    assert sys.getswitchinterval() == before
    with pytest.raises(RuntimeError):
        with _quick_handoffs():
            raise RuntimeError("a stage failed")
    assert sys.getswitchinterval() == before
