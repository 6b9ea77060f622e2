"""Unattended runs: SIGKILL at random points, a held queue file, two runs at once, signals.

Each test runs `synth run` as a real subprocess against a real DuckDB file and compares the
final queue, row by row, with an uninterrupted run's.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import duckdb
import pytest
from rulesets import LOOSE_SUBSTANCE

from synth.filtering import default_rules_path

VOLATILE = {"first_seen_at", "updated_at", "decided_at", "created_at", "run_id", "acted_at",
            "first_at", "last_at"}
TABLES = {"repos": "repo", "pull_requests": "repo, number", "pr_files": "repo, number, path",
          "decisions": "repo, number, filter_version", "tasks": "task_id",
          "failures": "stage, repo, number", "review_events": "event_id"}


def snapshot(db: Path) -> dict[str, list[tuple]]:
    con = duckdb.connect(str(db), read_only=True)
    try:
        out = {}
        for table, key in TABLES.items():
            cols = [r[0] for r in con.execute(
                "SELECT column_name FROM information_schema.columns WHERE table_name = ? "
                "ORDER BY ordinal_position", [table]).fetchall() if r[0] not in VOLATILE]
            out[table] = con.execute(f"SELECT {', '.join(cols)} FROM {table} ORDER BY {key}").fetchall()
        return out
    finally:
        con.close()


def synth_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "synth", *map(str, args)]


@pytest.fixture
def batchy(tmp_path):
    """Small batches and a short busy timeout, so runs have many commit points."""
    loose = tmp_path / "loose.toml"
    loose.write_text(LOOSE_SUBSTANCE)
    cfg = tmp_path / "synth.toml"
    cfg.write_text(f'[filters]\nfiles = ["{default_rules_path()}", "{loose}"]\n\n'
                   "[run]\nbatch_size = 4\n\n[queue]\nbusy_timeout = 1.0\n")
    return cfg


def run_ok(cwd: Path, *args: str, env=None) -> subprocess.CompletedProcess:
    r = subprocess.run(synth_cmd("run", *args), cwd=cwd, capture_output=True, text=True,
                       env=env, timeout=120)
    assert r.returncode == 0, r.stderr
    return r


@pytest.fixture
def reference(history_100, tmp_path, batchy):
    path, _ = history_100
    ref = tmp_path / "ref.duckdb"
    run_ok(tmp_path, "--git", path, "--db", ref)
    return snapshot(ref)


def test_sigkill_at_random_points_then_rerun_equals_uninterrupted(history_100, tmp_path, batchy,
                                                                   reference):
    path, _ = history_100
    rng = random.Random(20261122)
    assert len(reference["tasks"]) > 20
    for trial in range(6):  # six seeded kill points, from the first batches to the end
        db = tmp_path / f"killed{trial}.duckdb"
        proc = subprocess.Popen(synth_cmd("run", "--git", path, "--db", db), cwd=tmp_path,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(rng.uniform(0.3, 2.0))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        run_ok(tmp_path, "--git", path, "--db", db)
        assert snapshot(db) == reference, f"trial {trial}"
        runs = duckdb.connect(str(db), read_only=True).execute(
            "SELECT status FROM runs ORDER BY started_at").fetchall()
        assert runs[-1] == ("ok",)


def test_held_file_run_completes_and_spool_is_ingested(history_100, tmp_path, batchy, reference):
    path, _ = history_100
    db = tmp_path / "held.duckdb"
    batchy.write_text(batchy.read_text().replace("busy_timeout = 1.0", "busy_timeout = 0.1"))
    subprocess.run(synth_cmd("sql", "SELECT 1", "--db", db), cwd=tmp_path)  # no file yet: fine
    run_ok(tmp_path, "--git", path, "--db", db, "--limit", "1")  # create the file
    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import duckdb, sys
        con = duckdb.connect({str(db)!r})
        print("held", flush=True)
        sys.stdin.readline()
    """)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        r = subprocess.run(synth_cmd("sql", "SELECT 1", "--db", db), cwd=tmp_path,
                           capture_output=True, text=True)
        assert r.returncode == 75 and "in use by another process" in r.stderr
        r = run_ok(tmp_path, "--git", path, "--db", db)  # the whole run while the file is held
        assert "spool" in r.stdout
    finally:
        holder.stdin.close()
        holder.wait(timeout=30)
    spool = tmp_path / "spool" / "held"
    assert [p for p in spool.iterdir() if not p.name.startswith(".")]  # it all waits there
    run_ok(tmp_path, "--git", path, "--db", db)  # the next run ingests it first
    assert not [p for p in spool.iterdir() if not p.name.startswith(".")]
    assert snapshot(db) == reference


def test_two_runs_at_once_one_exits_75(history_100, tmp_path, batchy):
    path, _ = history_100
    db = tmp_path / "two.duckdb"
    first = subprocess.Popen(synth_cmd("run", "--git", path, "--db", db), cwd=tmp_path,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lock = Path(f"{db}.run.lock")
    deadline = time.time() + 20
    while time.time() < deadline and not (lock.exists() and '"pid"' in lock.read_text()):
        time.sleep(0.02)
    second = subprocess.run(synth_cmd("run", "--git", path, "--db", db), cwd=tmp_path,
                            capture_output=True, text=True)
    out, err = first.communicate(timeout=120)
    assert first.returncode == 0, err
    assert second.returncode == 75
    assert "another synth run is using" in second.stderr and str(first.pid) in second.stderr


def test_sigterm_stops_cleanly_after_the_current_batch(history_100, tmp_path, batchy, reference):
    path, _ = history_100
    db = tmp_path / "term.duckdb"
    proc = subprocess.Popen(synth_cmd("run", "--git", path, "--db", db), cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lock = Path(f"{db}.run.lock")  # the run has started (signal handlers are in place)
    deadline = time.time() + 30
    while time.time() < deadline and not (lock.exists() and '"pid"' in lock.read_text()):
        time.sleep(0.01)
    time.sleep(0.05)  # into its first batches (a fast machine may finish: handled below)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=60)
    if proc.returncode == 0:  # it had already finished
        assert snapshot(db) == reference
        return
    assert proc.returncode == 130, err
    assert "interrupted" in out
    status = duckdb.connect(str(db), read_only=True).execute(
        "SELECT status FROM runs ORDER BY started_at DESC LIMIT 1").fetchone()
    assert status == ("interrupted",)
    run_ok(tmp_path, "--git", path, "--db", db)
    assert snapshot(db) == reference


def test_crashed_lock_is_taken_over(history_100, tmp_path, batchy):
    path, _ = history_100
    db = tmp_path / "stale.duckdb"
    Path(f"{db}.run.lock").write_text('{"pid": 999999, "host": "x", "since": "2020-01-01T00:00:00Z"}')
    r = run_ok(tmp_path, "--git", path, "--db", db, "--limit", "3")
    assert "did not finish" in r.stderr


def test_corrupted_config_is_a_clear_error(tmp_path, history_100):
    path, _ = history_100
    (tmp_path / "synth.toml").write_bytes(b"\x00\xff[queue\nbusy = \n")
    r = subprocess.run(synth_cmd("run", "--git", path), cwd=tmp_path, capture_output=True, text=True)
    assert r.returncode == 2 and "synth.toml" in r.stderr and "Traceback" not in r.stderr
    (tmp_path / "synth.toml").write_text("[run]\nbatch_size = 0\n")
    r = subprocess.run(synth_cmd("run", "--git", path), cwd=tmp_path, capture_output=True, text=True)
    assert r.returncode == 2 and "run.batch_size" in r.stderr


def test_output_is_plain_without_a_terminal(history_100, tmp_path, batchy):
    path, _ = history_100
    r = run_ok(tmp_path, "--git", path, "--db", tmp_path / "plain.duckdb", "--limit", "8")
    assert "\r" not in r.stderr and "\x1b[" not in r.stderr
    assert "crawl acme/widgets: 8 new PRs" in r.stderr
    r = subprocess.run(synth_cmd("run", "--git", path, "--db", tmp_path / "j.duckdb", "--limit", "3",
                                 "--log-json"), cwd=tmp_path, capture_output=True, text=True)
    import json
    lines = [json.loads(x) for x in r.stderr.splitlines() if x.strip()]
    assert any("crawl acme/widgets" in x["message"] for x in lines)


def test_progress_bars_on_a_terminal(history_100, tmp_path, batchy):
    import pty
    path, _ = history_100
    pid, fd = pty.fork()
    if pid == 0:  # child: stdout and stderr are the terminal
        os.chdir(tmp_path)
        os.execv(sys.executable, synth_cmd("run", "--git", str(path), "--db",
                                           str(tmp_path / "tty.duckdb"), "--limit", "40"))
    chunks = []
    while True:
        try:
            data = os.read(fd, 4096)
        except OSError:
            break
        if not data:
            break
        chunks.append(data)
    os.waitpid(pid, 0)
    screen = b"".join(chunks).decode(errors="replace")
    assert "█" in screen and "\r" in screen


def test_sigkill_during_github_crawl_with_llm_rewrites(tmp_path):
    """The same guarantee with the GitHub and LLM stand-ins: kill, re-run, compare."""
    from standins.github_fixtures import make_fixtures
    from standins.github_server import GitHubStandIn
    from standins.openai_server import OpenAIStandIn
    fx = make_fixtures(seed=5, n_repos=2, prs_per_repo=60, n_search_repos=0, n_private_repos=0)
    names = ",".join(r.full_name for r in fx.repos)
    (tmp_path / "synth.toml").write_text("[run]\nbatch_size = 5\n[github]\npage_size = 10\n")
    rng = random.Random(7)
    with GitHubStandIn(fx, tokens={"tok-a": 100000}) as gh, OpenAIStandIn(latency=0.01) as llm:
        env = {**os.environ, "GITHUB_API_URL": gh.url, "GITHUB_TOKEN": "tok-a",
               "OPENAI_BASE_URL": llm.base_url, "OPENAI_API_KEY": "sk-x"}
        args = ("--github", "--repos", names, "--model", "m")
        ref = tmp_path / "ref.duckdb"
        run_ok(tmp_path, *args, "--db", ref, env=env)
        reference = snapshot(ref)
        assert len(reference["tasks"]) > 10
        for trial in range(3):
            db = tmp_path / f"gk{trial}.duckdb"
            proc = subprocess.Popen(synth_cmd("run", *args, "--db", db), cwd=tmp_path, env=env,
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            time.sleep(rng.uniform(1.0, 3.0))
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            run_ok(tmp_path, *args, "--db", db, env=env)
            assert snapshot(db) == reference, f"trial {trial}"
