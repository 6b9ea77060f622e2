"""Every command with its bad inputs: one clear line on stderr, a non-zero exit, no traceback.

Table-driven: each case sets up what it needs in a fresh folder, runs the command in-process
(an exception escaping main() fails the test as a traceback would), and a few run as real
subprocesses to see what reaches a terminal."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest


def _queue(cli, history, tmp: Path) -> Path:
    db = tmp / "q.duckdb"
    path, _ = history
    assert cli("run", "--git", path, "--db", db, "--limit", "3").code == 0
    return db


def _empty_repo(tmp: Path) -> Path:
    repo = tmp / "empty"
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    return repo


def _file(tmp: Path, name: str, text: str) -> Path:
    p = tmp / name
    p.write_text(text)
    return p


# (id, setup(cli, history, tmp) -> args, expected exit, a phrase of the message)
CASES = [
    ("run-no-such-path", lambda c, h, t: ["run", "--git", t / "nope"], 1, "no such path"),
    ("run-not-a-repo", lambda c, h, t: ["run", "--git", t], 1, "not a git repository"),
    ("run-empty-history", lambda c, h, t: ["run", "--git", _empty_repo(t), "--repo", "a/b"], 1,
     "no commits"),
    ("run-db-under-a-file", lambda c, h, t: ["run", "--git", h[0], "--db",
                                             _file(t, "f", "x") / "q.duckdb"], 1, "q.duckdb"),
    ("run-missing-config", lambda c, h, t: ["run", "--demo", "--config", t / "none.toml"], 2,
     "config file not found"),
    ("run-bad-config", lambda c, h, t: ["run", "--demo", "--config",
                                        _file(t, "s.toml", "[queue\nx=")], 2, "not valid TOML"),
    ("run-llm-without-endpoint", lambda c, h, t: ["run", "--demo", "--model", "m"], 2,
     "OPENAI_API_KEY"),
    ("run-nothing", lambda c, h, t: ["run"], 2, "nothing to run"),
    ("run-bad-repo-name", lambda c, h, t: ["run", "--github", "--repos", "not-a-name"], 1,
     "not a repository name"),
    ("sql-no-queue", lambda c, h, t: ["sql", "SELECT 1", "--db", t / "none.duckdb"], 1,
     "no queue at"),
    ("sql-bad-sql", lambda c, h, t: ["sql", "SELEC x", "--db", _queue(c, h, t)], 2, "SQL error"),
    ("sql-copy-to", lambda c, h, t: ["sql", f"COPY (SELECT 42) TO '{t}/x.csv'", "--db",
                                     _queue(c, h, t)], 2, "read-only"),
    ("sql-read-csv", lambda c, h, t: ["sql", "SELECT * FROM read_csv('/etc/passwd')", "--db",
                                      _queue(c, h, t)], 2, "file system operations are disabled"),
    ("sql-attach", lambda c, h, t: ["sql", f"ATTACH '{t}/other.duckdb'", "--db",
                                    _queue(c, h, t)], 2, "read-only"),
    ("sql-two-statements", lambda c, h, t: ["sql", "SELECT 1; SELECT 2", "--db",
                                            _queue(c, h, t)], 2, "one statement"),
    ("sql-out-unwritable", lambda c, h, t: ["sql", "SELECT 1", "--db", _queue(c, h, t), "--out",
                                            _file(t, "f", "x") / "out.csv"], 1, "cannot"),
    ("sql-parquet-needs-out", lambda c, h, t: ["sql", "SELECT 1", "--format", "parquet", "--db",
                                               _queue(c, h, t)], 2, "--out"),
    ("sql-db-is-a-folder", lambda c, h, t: ["sql", "SELECT 1", "--db", t], 1, "queue"),
    ("review-bad-where", lambda c, h, t: ["review", "approve", "--where", "nope = 1",
                                          "--reviewer", "a", "--db", _queue(c, h, t)], 2,
     "not a valid predicate"),
    ("review-unknown-id", lambda c, h, t: ["review", "reject", "deadbeef", "--reviewer", "a",
                                           "--db", _queue(c, h, t)], 2, "no task with id"),
    ("review-show-unknown", lambda c, h, t: ["review", "show", "deadbeef", "--db",
                                             _queue(c, h, t)], 2, "no task with id"),
    ("review-edit-missing-file", lambda c, h, t: ["review", "edit", "x", "--reviewer", "a",
                                                  "--file", t / "none.json", "--db",
                                                  _queue(c, h, t)], 1, "none.json"),
    ("review-edit-bad-json", lambda c, h, t: ["review", "edit", "x", "--reviewer", "a",
                                              "--file", _file(t, "e.json", "{"), "--db",
                                              _queue(c, h, t)], 2, "not valid JSON"),
    ("export-under-a-file", lambda c, h, t: ["export", "--out", _file(t, "f", "x") / "out",
                                             "--db", _queue(c, h, t)], 1,
     "cannot create the export folder"),
    ("export-bad-since", lambda c, h, t: ["export", "--out", t / "o", "--since", "yesterday",
                                          "--db", _queue(c, h, t)], 2, "YYYY-MM-DD"),
    ("export-bad-split", lambda c, h, t: ["export", "--out", t / "o", "--split-by-repo", "2",
                                          "--db", _queue(c, h, t)], 1, "between 0 and 1"),
    ("explain-bad-ref", lambda c, h, t: ["explain", "nonsense", "--db", _queue(c, h, t)], 2,
     "owner/name#NUMBER"),
    ("explain-unknown-pr", lambda c, h, t: ["explain", "a/b#1", "--db", _queue(c, h, t)], 1,
     "not in the queue"),
    ("filters-eval-missing", lambda c, h, t: ["filters", "eval", t / "none.tsv"], 2,
     "cannot read labels"),
    ("filters-eval-bad-header", lambda c, h, t: ["filters", "eval", _file(t, "l.tsv", "a\tb\n")],
     2, "header"),
    ("filters-eval-no-clones", lambda c, h, t: ["filters", "eval", _file(
        t, "l.tsv", "repo\tpr_number\tlabel\na/b\t1\ttrivial\n"), "--clones", t / "none"], 2,
     "no clone of a/b"),
    ("stats-no-queue", lambda c, h, t: ["stats", "--db", t / "none.duckdb"], 1, "no queue at"),
    ("runs-no-queue", lambda c, h, t: ["runs", "--db", t / "none.duckdb"], 1, "no queue at"),
    ("repos-list-no-queue", lambda c, h, t: ["repos", "list", "--db", t / "none.duckdb"], 1,
     "no queue at"),
    ("init-exists", lambda c, h, t: ["init", _file(t, "synth.toml", "")], 2, "exists"),
    ("init-unwritable", lambda c, h, t: ["init", _file(t, "f", "x") / "synth.toml"], 1,
     "synth.toml"),
    ("filter-without-rescore", lambda c, h, t: ["filter"], 2, "--rescore"),
    ("dedupe-no-queue", lambda c, h, t: ["dedupe", "--db", t / "none.duckdb"], 0, ""),
    ("usage-error", lambda c, h, t: ["run", "--limit", "-1"], 2, "must be 0 or more"),
]


@pytest.mark.parametrize("setup,code,phrase", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_is_one_clear_line(cli, history_100, tmp_path, setup, code, phrase):
    args = setup(cli, history_100, tmp_path)
    r = cli(*args)
    assert r.code == code, r
    assert "Traceback" not in r.err and "Traceback" not in r.out
    if phrase:
        assert phrase in r.err, r
        lines = [ln for ln in r.err.splitlines() if ln.startswith("synth:") or "usage:" in ln]
        assert lines, r


@pytest.mark.parametrize("args", [
    ["sql", "SELECT 1", "--db", "{tmp}/none.duckdb"],
    ["export", "--out", "{tmp}/f/out", "--db", "{tmp}/none.duckdb"],
    ["run", "--git", "{tmp}/nope"],
])
def test_no_traceback_reaches_the_terminal(tmp_path, args):
    (tmp_path / "f").write_text("x")
    r = subprocess.run([sys.executable, "-m", "synth", *(a.format(tmp=tmp_path) for a in args)],
                       cwd=tmp_path, capture_output=True, text=True)
    assert r.returncode != 0 and "Traceback" not in r.stderr
    assert len([ln for ln in r.stderr.splitlines() if ln.startswith("synth:")]) == 1, r.stderr
