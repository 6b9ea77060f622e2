"""Stopping a run wherever it waits: SIGTERM during an hour-long rate-limit wait, during an
LLM call that takes a minute, and while a curator holds the queue file. Each time the process
exits 130 within 2 seconds, and a re-run completes the work without duplicates.

Readiness is signalled, never slept for: the test sends SIGTERM once the run says it waits
(its log line) or once the stand-in holds the request.
"""

from __future__ import annotations

import os
import queue as stdqueue
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import duckdb
import pytest
from rulesets import LOOSE_SUBSTANCE
from test_resilience import run_ok, snapshot, synth_cmd

pytestmark = pytest.mark.slow
EXIT_WITHIN = 2.0  # the acceptance bound: SIGTERM to exit


class Run:
    """A `synth run` subprocess whose stderr lines are read as they come."""

    def __init__(self, args, cwd: Path, env=None):
        self.proc = subprocess.Popen(synth_cmd("run", *args), cwd=cwd, env=env, text=True,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self.lines: stdqueue.Queue = stdqueue.Queue()
        self.err: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.proc.stderr:
            self.err.append(line)
            self.lines.put(line)
        self.lines.put(None)

    def wait_for_line(self, text: str, timeout: float = 60) -> None:
        end = time.monotonic() + timeout
        while True:
            line = self.lines.get(timeout=max(0.01, end - time.monotonic()))
            if line is None:
                raise AssertionError(f"run ended before {text!r}: {''.join(self.err)}")
            if text in line:
                return

    def terminate_and_time(self) -> tuple[int, float, str]:
        t = time.monotonic()
        self.proc.send_signal(signal.SIGTERM)
        out = self.proc.stdout.read()
        code = self.proc.wait(timeout=30)
        return code, time.monotonic() - t, out


def test_sigterm_during_an_hour_long_rate_limit_wait(tmp_path):
    from standins.github_fixtures import make_fixtures
    from standins.github_server import GitHubStandIn
    fx = make_fixtures(seed=3, n_repos=1, prs_per_repo=12, n_search_repos=0, n_private_repos=0)
    names = ",".join(r.full_name for r in fx.repos)
    (tmp_path / "synth.toml").write_text("[github]\npage_size = 5\n")
    with GitHubStandIn(fx, tokens={"tok-a": 100000}) as gh:
        env = {**os.environ, "GITHUB_API_URL": gh.url, "GITHUB_TOKEN": "tok-a"}
        args = ("--github", "--repos", names, "--no-rewrite")
        ref = tmp_path / "ref.duckdb"
        run_ok(tmp_path, *args, "--db", ref, env=env)
        gh.exhaust("tok-a", resource="graphql", reset_in=3000)  # reset in 50 minutes
        db = tmp_path / "q.duckdb"
        run = Run((*args, "--db", db), tmp_path, env)
        run.wait_for_line("rate limit reached on every token; waiting")
        code, took, out = run.terminate_and_time()
        assert code == 130, "".join(run.err)
        print(f"exit after SIGTERM: {took:.2f} s")
        assert took < EXIT_WITHIN, took
        assert "interrupted" in out
        gh.set_remaining("tok-a", 5000, resource="graphql")
        run_ok(tmp_path, *args, "--db", db, env=env)
        assert snapshot(db) == snapshot(ref)


def test_sigterm_during_an_llm_call_that_takes_a_minute(tmp_path, history_100):
    from standins.openai_server import OpenAIStandIn
    path, _ = history_100
    from synth.filtering import default_rules_path
    loose = tmp_path / "loose.toml"
    loose.write_text(LOOSE_SUBSTANCE)
    (tmp_path / "synth.toml").write_text(
        f'[filters]\nfiles = ["{default_rules_path()}", "{loose}"]\n\n'
        "[rewrite]\nconcurrency = 2\ntimeout = 600\n")
    with OpenAIStandIn(latency=60) as slow:
        env = {**os.environ, "OPENAI_BASE_URL": slow.base_url, "OPENAI_API_KEY": "sk-x"}
        db = tmp_path / "q.duckdb"
        run = Run(("--git", path, "--limit", "12", "--model", "m", "--db", db), tmp_path, env)
        deadline = time.monotonic() + 60
        while slow.in_flight == 0:  # the stand-in holds a request: the run waits on it
            assert time.monotonic() < deadline and run.proc.poll() is None, "".join(run.err)
            time.sleep(0.01)
        code, took, out = run.terminate_and_time()
        assert code == 130, "".join(run.err)
        print(f"exit after SIGTERM: {took:.2f} s")
        assert took < EXIT_WITHIN, took
        assert "abandoned" in "".join(run.err)
    con = duckdb.connect(str(db), read_only=True)
    assert con.execute("SELECT count(*) FROM tasks").fetchone() == (0,)
    assert con.execute("SELECT status FROM runs").fetchall() == [("interrupted",)]
    con.close()
    with OpenAIStandIn() as quick:
        env = {**os.environ, "OPENAI_BASE_URL": quick.base_url, "OPENAI_API_KEY": "sk-x"}
        run_ok(tmp_path, "--git", path, "--limit", "12", "--model", "m", "--db", db, env=env)
    con = duckdb.connect(str(db), read_only=True)
    kept = con.execute("SELECT count(*) FROM candidates WHERE kept").fetchone()[0]
    tasks = con.execute("SELECT count(*), count(DISTINCT (repo, number)) FROM tasks").fetchone()
    con.close()
    assert kept > 0 and tasks == (kept, kept)  # every kept PR has one task, none twice


HOLD = """
import sys, duckdb
con = duckdb.connect(sys.argv[1])
print("holding", flush=True)
sys.stdin.read()
"""


def test_sigterm_while_a_curator_holds_the_queue_file(tmp_path, history_100):
    path, _ = history_100
    (tmp_path / "synth.toml").write_text("[queue]\nbusy_timeout = 3600\n")
    ref = tmp_path / "ref.duckdb"
    run_ok(tmp_path, "--git", path, "--no-rewrite", "--limit", "20", "--db", ref)
    db = tmp_path / "q.duckdb"
    run_ok(tmp_path, "--git", path, "--no-rewrite", "--limit", "5", "--db", db)
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(db)], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "holding"
        run = Run(("--git", path, "--no-rewrite", "--limit", "20", "--db", db), tmp_path)
        run.wait_for_line("is in use by another process")
        code, took, out = run.terminate_and_time()
        assert code == 130, "".join(run.err)
        print(f"exit after SIGTERM: {took:.2f} s")
        assert took < EXIT_WITHIN, took
        assert "spool" in out  # what was complete waits in the spool
    finally:
        holder.stdin.close()
        holder.wait(timeout=30)
    run_ok(tmp_path, "--git", path, "--no-rewrite", "--limit", "20", "--db", db)
    assert snapshot(db) == snapshot(ref)
