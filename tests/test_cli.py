"""The CLI end to end on real git histories and real DuckDB files."""

from __future__ import annotations

import json
import subprocess
import sys

import duckdb
import pytest
from rulesets import LOOSE_SUBSTANCE


def counts(db) -> dict[str, int]:
    con = duckdb.connect(str(db), read_only=True)
    try:
        return {t: con.execute(f"SELECT count(*) FROM {t}").fetchone()[0]
                for t in ("repos", "pull_requests", "pr_files", "decisions", "tasks",
                          "review_events", "failures", "candidates", "review_queue")}
    finally:
        con.close()


def test_run_git_no_rewrite_stores_all_prs_with_stats(cli, history_100, db):
    path, expected = history_100
    r = cli("run", "--git", path, "--no-rewrite", "--db", db)
    assert r.code == 0, r
    assert "PRs seen:      100 new" in r.out
    c = counts(db)
    assert c["pull_requests"] == 100 and c["decisions"] == 100 and c["tasks"] == 0
    con = duckdb.connect(str(db), read_only=True)
    rows = con.execute("SELECT number, path, status, additions, deletions FROM pr_files").fetchall()
    con.close()
    got: dict[int, dict] = {}
    for number, path_, status, a, d in rows:
        got.setdefault(number, {})[path_] = (status, a, d)
    assert got == {n: e["files"] for n, e in expected.items()}


def test_run_twice_is_idempotent_and_cheap(cli, history_100, db):
    path, _ = history_100
    assert cli("run", "--git", path, "--db", db).code == 0
    first = counts(db)
    r = cli("run", "--git", path, "--db", db)
    assert r.code == 0
    assert "0 new (of 100 in history, 100 already decided)" in r.out
    second = counts(db)
    assert first == second


def test_a_run_after_the_rules_changed_says_it_decides_again(cli, history_100, db, tmp_path):
    """New rules re-decide every stored PR: the summary and the run record say so, rather
    than calling them new."""
    from synth.filtering import default_rules_path
    path, _ = history_100
    assert cli("run", "--git", path, "--no-rewrite", "--db", db).code == 0
    stricter = tmp_path / "stricter.toml"
    stricter.write_text("[substance]\nmin_logic_lines = 12\n")
    config = tmp_path / "synth.toml"
    config.write_text(f'[filters]\nfiles = ["{default_rules_path()}", "{stricter}"]\n')
    r = cli("run", "--git", path, "--no-rewrite", "--db", db, "--config", config)
    assert r.code == 0, r
    assert "0 new, 100 decided again (the rules changed) (of 100 in history, 0 already " \
        "decided)" in r.out
    import duckdb
    con = duckdb.connect(str(db), read_only=True)
    last = json.loads(con.execute("SELECT counts FROM runs ORDER BY started_at DESC LIMIT 1"
                                  ).fetchone()[0])
    con.close()
    assert last["source/prs"] == 100 and last["source/prs_redecided"] == 100


def test_sql_formats_and_errors(cli, history_100, db):
    path, _ = history_100
    cli("run", "--git", path, "--no-rewrite", "--db", db)
    r = cli("sql", "SELECT count(*) AS n FROM candidates", "--db", db, "--format", "json")
    assert json.loads(r.out) == [{"n": 100}]
    r = cli("sql", "SELECT count(*) AS n FROM candidates", "--db", db, "--format", "csv")
    assert r.out.splitlines() == ["n", "100"]
    r = cli("sql", "SELEC nonsense", "--db", db)
    assert r.code == 2 and "SQL error" in r.err
    r = cli("sql", "DELETE FROM repos", "--db", db)
    assert r.code == 2 and "read-only" in r.err.lower()
    r = cli("sql", "SELECT 1", "--db", db.parent / "missing.duckdb")
    assert r.code == 1 and "no queue at" in r.err


def test_clear_errors_for_bad_sources(cli, tmp_path, db):
    r = cli("run", "--git", tmp_path / "nope", "--db", db)
    assert r.code == 1 and "no such path" in r.err
    (tmp_path / "plain").mkdir()
    r = cli("run", "--git", tmp_path / "plain", "--db", db)
    assert r.code == 1 and "not a git repository" in r.err
    subprocess.run(["git", "init", "-q", str(tmp_path / "empty")], check=True)
    r = cli("run", "--git", tmp_path / "empty", "--repo", "a/b", "--db", db)
    assert r.code == 1 and "no commits" in r.err
    r = cli("run", "--db", db)
    assert r.code == 2 and "nothing to run" in r.err
    assert "Traceback" not in r.err


def test_review_then_export_writes_exactly_the_approved(cli, history_100, db, tmp_path):
    path, _ = history_100
    # keep every PR with code so there are tasks to review
    rules = tmp_path / "loose.toml"
    rules.write_text(LOOSE_SUBSTANCE)
    (tmp_path / "synth.toml").write_text(
        f'[filters]\nfiles = ["{_default_rules()}", "{rules}"]\n')
    assert cli("run", "--git", path, "--db", db).code == 0
    con = duckdb.connect(str(db), read_only=True)
    n_tasks = con.execute("SELECT count(*) FROM tasks").fetchone()[0]
    want = {r[0] for r in con.execute(
        "SELECT task_id FROM tasks WHERE number % 4 = 0").fetchall()}
    con.close()
    assert n_tasks > 10 and 0 < len(want) < n_tasks
    r = cli("review", "approve", "--where", "number % 4 = 0", "--reviewer", "ann", "--db", db)
    assert r.code == 0 and f"{len(want)} task(s) recorded" in r.out
    some = sorted(want)[0]
    r = cli("review", "reject", some, "--reviewer", "bob", "--note", "dup", "--db", db)
    assert r.code == 0
    want.discard(some)
    out = tmp_path / "out"
    r = cli("export", "--out", out, "--db", db)
    assert r.code == 0, r
    records = [json.loads(line) for line in (out / "train.jsonl").read_text().splitlines()]
    assert {rec["task_id"] for rec in records} == want
    for rec in records:
        assert rec["repo"] == "acme/widgets" and rec["pr_url"].endswith(f"/pull/{rec['pr_number']}")
        assert len(rec["base_sha"]) == 40 and len(rec["merge_sha"]) == 40
        assert 2 <= len(rec["subtasks"]) <= 6 and rec["query"] and rec["title"]
        assert rec["rewriter"] == "template" and rec["model"] is None
        assert rec["review"]["reviewers"] == ["ann"]
    con = duckdb.connect(str(db), read_only=True)
    events = con.execute("SELECT reviewer, action, status_before, status_after FROM review_events "
                         "ORDER BY event_id").fetchall()
    con.close()
    assert len(events) == len(want) + 2
    assert events[-1] == ("bob", "reject", "approved", "rejected")
    assert (out / "README.md").exists() and (out / "manifest.json").exists()
    before = (out / "train.jsonl").read_bytes()
    cli("export", "--out", out, "--db", db)
    assert (out / "train.jsonl").read_bytes() == before


def test_review_errors(cli, history_100, db):
    path, _ = history_100
    cli("run", "--git", path, "--db", db, "--limit", "5")
    r = cli("review", "approve", "--where", "no_such_column = 1", "--reviewer", "a", "--db", db)
    assert r.code == 2 and "not a valid predicate" in r.err
    r = cli("review", "approve", "deadbeef", "--reviewer", "a", "--db", db)
    assert r.code == 2 and "no task with id deadbeef" in r.err
    r = cli("review", "approve", "--reviewer", "a", "--db", db)
    assert r.code == 2 and "either with --where" in r.err


HOLD_UNTIL_TOLD = """
import duckdb, sys
con = duckdb.connect(sys.argv[1])
print("held", flush=True)
sys.stdin.readline()
con.close()
print("released", flush=True)
sys.stdin.readline()
"""


def test_sql_while_another_process_holds_the_file(cli, history_100, db, tmp_path):
    path, _ = history_100
    cli("run", "--git", path, "--db", db, "--no-rewrite", "--limit", "3")
    holder = subprocess.Popen([sys.executable, "-c", HOLD_UNTIL_TOLD, str(db)],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        (tmp_path / "synth.toml").write_text("[queue]\nbusy_timeout = 0.2\n")
        r = cli("sql", "SELECT 1", "--db", db)  # waits its (short) busy_timeout, then gives up
        assert r.code == 75 and "in use by another process" in r.err
        (tmp_path / "synth.toml").unlink()
        # a holder that lets go while `synth sql` waits (up to 5 s): sql answers
        sql = subprocess.Popen(
            [sys.executable, "-m", "synth", "sql", "SELECT count(*) FROM candidates", "--db", str(db)],
            cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        assert "waiting up to 5 s" in sql.stderr.readline()  # it is waiting now
        holder.stdin.write("\n")
        holder.stdin.flush()
        assert holder.stdout.readline().strip() == "released"
        out, err = sql.communicate(timeout=30)
        assert sql.returncode == 0 and "3" in out, err
    finally:
        holder.stdin.close()
        holder.wait(timeout=10)


def test_every_command_has_help(cli):
    for args in (["--help"], ["run", "--help"], ["sql", "--help"], ["review", "--help"],
                 ["review", "approve", "--help"], ["export", "--help"], ["stats", "--help"]):
        r = cli(*args)
        assert r.code == 0 and "usage:" in r.out


def test_python_dash_m(tmp_path):
    r = subprocess.run([sys.executable, "-m", "synth", "--help"], capture_output=True, text=True)
    assert r.returncode == 0 and "usage: synth" in r.stdout


def _default_rules():
    from synth.filtering import default_rules_path
    return default_rules_path()


@pytest.mark.parametrize("bad", ["[queue]\nbusy_timeout = 'soon'\n", "[nope]\nx = 1\n", "[[[\n",
                                 "[github]\ntoken = 'ghp_x'\n"])
def test_broken_config_is_a_clear_error(cli, tmp_path, db, bad):
    (tmp_path / "synth.toml").write_text(bad)
    r = cli("stats", "--db", db)
    assert r.code == 2 and "synth.toml" in r.err and "Traceback" not in r.err


def test_every_command_is_documented_in_the_readme():
    import argparse
    from pathlib import Path

    from synth.cli import build_parser
    readme = (Path(__file__).parents[1] / "README.md").read_text()

    def walk(parser, prefix):
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, sub in action.choices.items():
                    yield from walk(sub, prefix + [name])
        if prefix:
            yield prefix, parser

    for words, parser in walk(build_parser(), []):
        assert parser.description or parser.format_help(), words
        # leaves must be in the README as `synth a b`, possibly within an a|b|c alternation
        if not any(isinstance(a, argparse._SubParsersAction) for a in parser._actions):
            head = " ".join(["synth"] + words[:-1])
            assert f"{head} {words[-1]}" in readme or (
                head in readme and f"{words[-1]}\\|" in readme or f"\\|{words[-1]}" in readme), words


def test_demo_twice_same_counts(cli, tmp_path):
    r = cli("run", "--demo")
    assert r.code == 0 and "tasks written" in r.out
    db = tmp_path / "data" / "queue.duckdb"
    first = counts(db)
    assert first["review_queue"] >= 1
    r = cli("sql", "select count(*) from review_queue", "--format", "csv")
    assert r.out.splitlines()[1] == str(first["review_queue"])
    assert cli("run", "--demo").code == 0
    assert counts(db) == first


def test_sql_out_writes_the_result_where_the_curator_asks(cli, history_100, db, tmp_path):
    import pyarrow.parquet as pq
    path, _ = history_100
    cli("run", "--git", path, "--db", db, "--no-rewrite", "--limit", "4")
    query = "SELECT number, kept, reasons FROM candidates ORDER BY number"
    r = cli("sql", query, "--db", db, "--out", tmp_path / "c.parquet")
    assert r.code == 0 and "wrote 4 rows" in r.out
    table = pq.read_table(tmp_path / "c.parquet")
    assert table.num_rows == 4 and table.column_names == ["number", "kept", "reasons"]
    assert cli("sql", query, "--db", db, "--out", tmp_path / "c.csv").code == 0
    lines = (tmp_path / "c.csv").read_text().splitlines()
    assert lines[0] == '"number","kept","reasons"' and len(lines) == 5
    assert cli("sql", query, "--db", db, "--out", tmp_path / "c.jsonl").code == 0
    rows = [json.loads(x) for x in (tmp_path / "c.jsonl").read_text().splitlines()]
    assert [set(r) for r in rows] == [{"number", "kept", "reasons"}] * 4
    assert isinstance(rows[0]["reasons"], list)
