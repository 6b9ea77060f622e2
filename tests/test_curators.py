"""Curators and a run side by side: a GitHub crawl of a few thousand PRs, and four curator
processes doing random reads and review actions for its whole length. Nothing is refused,
every action is recorded exactly once with the time the curator took it, and the final
statuses are a replay of the actions in time order. Also the journal and the turns alone."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest
from rulesets import LOOSE_SUBSTANCE
from test_resilience import run_ok, synth_cmd

from synth.models import ACTION_STATUS
from synth.queue import Queue
from synth.queue.journal import Journal, JournalRecord
from synth.queue.turns import Turns

CURATOR = Path(__file__).parent / "curator_load.py"


def test_journal_appends_in_time_order_and_survives_a_torn_line(tmp_path):
    j = Journal(tmp_path / "q.duckdb")
    a = j.append([JournalRecord("t1", "ann", "approve")])
    b = j.append([JournalRecord("t2", "bob", "reject", note="no")])
    with open(j.path, "a") as fh:
        fh.write('{"task_id": "t3", "reviewer"')  # a crash mid-append: never acknowledged
    with j.locked():
        got = j.read()
    assert [r.journal_id for r in got] == [a[0].journal_id, b[0].journal_id]
    assert got[0].acted_at <= got[1].acted_at and got[1].note == "no"


def test_a_dead_curators_marker_is_not_waited_for(tmp_path):
    turns = Turns(tmp_path / "q.duckdb")
    with turns.waiting():
        assert turns.waiters() == 1
    assert turns.waiters() == 0
    child = subprocess.run([sys.executable, "-c", (
        "import os, sys; sys.path.insert(0, sys.argv[2]); from synth.queue.turns import Turns; "
        "t = Turns(sys.argv[1]); t.waiting().__enter__(); os._exit(0)"),
        str(tmp_path / "q.duckdb"), str(Path(__file__).parents[1])])
    assert child.returncode == 0
    assert turns.waiters() == 0 and not list(turns.dir.iterdir())  # stale marker removed


def test_an_action_while_a_process_holds_the_file_is_journaled_then_applied(cli, history_100,
                                                                            tmp_path):
    path, _ = history_100
    db = tmp_path / "q.duckdb"
    loose = tmp_path / "loose.toml"
    loose.write_text(LOOSE_SUBSTANCE)
    from synth.filtering import default_rules_path
    (tmp_path / "synth.toml").write_text(f'[filters]\nfiles = ["{default_rules_path()}", "{loose}"]\n')
    assert cli("run", "--git", path, "--db", db, "--limit", "6").code == 0
    tid = duckdb.connect(str(db), read_only=True).execute(
        "SELECT min(task_id) FROM tasks").fetchone()[0]
    holder = subprocess.Popen([sys.executable, "-c", (
        "import duckdb, sys; con = duckdb.connect(sys.argv[1]); print('held', flush=True); "
        "sys.stdin.readline()"), str(db)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        from synth.queue.curation import apply_action
        res = apply_action(Queue(db), "approve", [tid], "ann", "while held", wait=0.2)
        assert res.journaled
    finally:
        holder.stdin.close()
        holder.wait(timeout=30)
    assert Journal(db).pending()
    r = cli("review", "reject", tid, "--reviewer", "bob", "--db", db)  # applies both, in order
    assert r.code == 0 and "1 changed status" in r.out
    con = duckdb.connect(str(db), read_only=True)
    events = con.execute("SELECT reviewer, action, note, status_after FROM review_events "
                         "ORDER BY event_id").fetchall()
    assert events == [("ann", "approve", "while held", "approved"), ("bob", "reject", None, "rejected")]
    assert not Journal(db).pending()


@pytest.mark.slow
def test_four_curators_beside_a_crawl(history_100, tmp_path):
    from standins.github_fixtures import make_fixtures
    from standins.github_server import GitHubStandIn

    from synth.filtering import default_rules_path
    path, _ = history_100
    loose = tmp_path / "loose.toml"
    loose.write_text(LOOSE_SUBSTANCE)
    (tmp_path / "synth.toml").write_text(
        f'[filters]\nfiles = ["{default_rules_path()}", "{loose}"]\n\n[run]\nbatch_size = 50\n'
        "[github]\npage_size = 50\n")
    db = tmp_path / "q.duckdb"
    run_ok(tmp_path, "--git", path, "--db", db, "--limit", "40")  # tasks to review
    con = duckdb.connect(str(db), read_only=True)
    tasks = [t for (t,) in con.execute("SELECT task_id FROM tasks ORDER BY task_id").fetchall()]
    con.close()
    assert len(tasks) >= 20
    (tmp_path / "tasks.json").write_text(json.dumps(tasks))
    fx = make_fixtures(seed=11, n_repos=2, prs_per_repo=1000, n_search_repos=0, n_private_repos=0)
    stop = tmp_path / "stop"
    with GitHubStandIn(fx, tokens={"tok-a": 10**6}) as gh:
        env = {**os.environ, "GITHUB_API_URL": gh.url, "GITHUB_TOKEN": "tok-a"}
        crawl = subprocess.Popen(synth_cmd("run", "--github", "--repos",
                                           ",".join(r.full_name for r in fx.repos),
                                           "--no-rewrite", "--db", db),
                                 cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE, text=True)
        curators = [subprocess.Popen([sys.executable, str(CURATOR), str(db), "7", name,
                                      str(tmp_path / "tasks.json"), str(stop),
                                      str(tmp_path / f"{name}.jsonl"), "0.2"], cwd=tmp_path)
                    for name in ("ann", "bob", "cy", "dee")]
        out, err = crawl.communicate(timeout=600)
        stop.write_text("")
        for c in curators:
            assert c.wait(timeout=120) == 0
    assert crawl.returncode == 0, err
    log = [json.loads(x) for name in ("ann", "bob", "cy", "dee")
           for x in (tmp_path / f"{name}.jsonl").read_text().splitlines()]
    refused = [e for e in log if e["code"] != 0]
    assert not refused, refused[:3]
    actions = [e for e in log if e["kind"] == "action"]
    reads = [e for e in log if e["kind"] == "read"]
    assert len(actions) >= 10 and len(reads) >= 10
    r = subprocess.run(synth_cmd("review", "list", "--db", db), cwd=tmp_path, capture_output=True)
    assert r.returncode == 0  # applies whatever the last actions left in the journal
    assert not Journal(db).pending()
    con = duckdb.connect(str(db), read_only=True)
    events = {note: (acted, action, task) for note, acted, action, task in con.execute(
        "SELECT note, acted_at, action, task_id FROM review_events").fetchall()}
    counts = dict(con.execute("SELECT note, count(*) FROM review_events GROUP BY note").fetchall())
    status = dict(con.execute("SELECT task_id, status FROM tasks").fetchall())
    con.close()
    for a in actions:  # exactly once, at the time the curator acted
        assert counts.get(a["note"]) == 1, a
        acted = events[a["note"]][0].isoformat()
        assert a["start"] <= acted <= a["end"], (a, acted)
    last: dict[str, tuple] = {}
    for note, (acted, action, task) in events.items():
        if task not in last or acted > last[task][0]:
            last[task] = (acted, action)
    for task, (_, action) in last.items():  # a replay in time order gives today's statuses
        assert status[task] == ACTION_STATUS[action], task
    prs = duckdb.connect(str(db), read_only=True).execute(
        "SELECT count(*) FROM pull_requests WHERE repo <> 'acme/widgets'").fetchone()[0]
    merged = sum(1 for r in fx.repos for p in r.prs if p.state == "MERGED")
    assert prs == merged > 1500  # the crawl lost nothing beside its curators
