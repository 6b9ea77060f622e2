"""The curator and dataset-builder path: review, agreement, edits, dedupe, exclusions, export."""

from __future__ import annotations

import json

import duckdb
import pyarrow.json as pajson
import pyarrow.parquet as pq
import pytest
from dbutil import q
from rulesets import LOOSE_SUBSTANCE

from synth.agreement import cohen_kappa, fleiss_kappa
from synth.dedupe import find_twins


@pytest.fixture
def loose(tmp_path):
    """Settings that keep every PR with code, so the 100-PR history gives plenty of tasks."""
    from synth.filtering import default_rules_path
    rules = tmp_path / "loose.toml"
    rules.write_text(LOOSE_SUBSTANCE)
    cfg = tmp_path / "synth.toml"
    cfg.write_text(f'[filters]\nfiles = ["{default_rules_path()}", "{rules}"]\n\n[review]\nreviews_required = 1\n')
    return cfg


def test_whole_curator_path(cli, history_100, db, tmp_path, loose):
    path, _ = history_100
    assert cli("run", "--git", path, "--db", db).code == 0
    r = cli("review", "list", "--db", db, "--limit", "5", "--format", "json")
    listed = json.loads(r.out)
    assert len(listed) == 5 and all(t["status"] == "pending" for t in listed)
    shown = cli("review", "show", listed[0]["task_id"], "--db", db)
    assert shown.code == 0 and "Subtask 1:" in shown.out and "https://github.com/acme/widgets/pull/" in shown.out

    approve = "number % 3 = 0"
    reject = "number % 3 = 1"
    assert cli("review", "approve", "--where", approve, "--reviewer", "ann", "--db", db).code == 0
    assert cli("review", "reject", "--where", reject, "--reviewer", "ann", "--db", db).code == 0
    # a second reviewer overlaps on a few tasks
    assert cli("review", "approve", "--where", "number % 6 = 0", "--reviewer", "bob", "--db", db).code == 0
    assert cli("review", "reject", "--where", "number % 6 = 3", "--reviewer", "bob", "--db", db).code == 0
    r = cli("review", "agreement", "--db", db)
    assert r.code == 0 and "ann / bob" in r.out and "Fleiss" in r.out

    approved = {t for (t,) in q(db, f"SELECT task_id FROM tasks WHERE {approve}")}
    rejected = {t for (t,) in q(db, f"SELECT task_id FROM tasks WHERE {reject}")}
    assert approved and rejected
    out = tmp_path / "export"
    r = cli("export", "--out", out, "--db", db)
    assert r.code == 0, r
    table = pajson.read_json(out / "train.jsonl")
    assert set(table.column("task_id").to_pylist()) == set(
        t for (t,) in q(db, "SELECT task_id FROM tasks WHERE status = 'approved'"))
    assert set(table.column("task_id").to_pylist()) <= approved
    for col in ("repo", "pr_number", "pr_url", "base_sha", "merge_sha", "subtasks", "review"):
        assert col in table.column_names

    events = q(db, "SELECT reviewer, action, count(*) FROM review_events GROUP BY ALL ORDER BY ALL")
    n_bob = len(q(db, "SELECT task_id FROM tasks WHERE number % 3 = 0"))
    assert sum(c for _, _, c in events) == len(approved) + len(rejected) + n_bob
    stats = q(db, "SELECT reviewer, approvals, rejections FROM reviewer_stats ORDER BY reviewer")
    assert stats[0] == ("ann", len(approved), len(rejected))

    before = {p.name: p.read_bytes() for p in out.iterdir()}
    assert cli("export", "--out", out, "--db", db).code == 0
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before  # identical bytes

    pout = tmp_path / "pq"
    r = cli("export", "--out", pout, "--format", "parquet", "--split-by-repo", "0.5",
            "--style", "agencybench", "--db", db)
    assert r.code == 0, r
    assert "from one repository: all of them are in train" in r.err  # said, not silent
    t = pq.read_table(pout / "train.parquet")
    assert t.num_rows == len(table)
    rec = t.to_pylist()[0]
    assert rec["subtasks"][0]["acceptance_criteria"] and rec["text"].count("Subtask 1:") == 1
    assert "Acceptance Criteria:" in rec["text"]
    manifest = json.loads((pout / "manifest.json").read_text())
    assert manifest["records"] == t.num_rows and "train.parquet" in manifest["files"]
    card = (pout / "README.md").read_text()
    assert "## By repository" in card and "acme/widgets" in card
    again = tmp_path / "pq2"
    cli("export", "--out", again, "--format", "parquet", "--split-by-repo", "0.5",
        "--style", "agencybench", "--db", db)
    assert (again / "train.parquet").read_bytes() == (pout / "train.parquet").read_bytes()


def test_reviews_required_and_raw_update_respected(cli, history_100, db, tmp_path, loose):
    loose.write_text(loose.read_text().replace("reviews_required = 1", "reviews_required = 2"))
    path, _ = history_100
    cli("run", "--git", path, "--db", db, "--limit", "10")
    (tid,) = q(db, "SELECT task_id FROM tasks ORDER BY task_id LIMIT 1")[0]
    cli("review", "approve", tid, "--reviewer", "ann", "--db", db)
    assert q(db, "SELECT status FROM tasks WHERE task_id = ?", [tid]) == [("pending",)]
    cli("review", "approve", tid, "--reviewer", "ann", "--db", db)  # same reviewer again
    assert q(db, "SELECT status FROM tasks WHERE task_id = ?", [tid]) == [("pending",)]
    cli("review", "approve", tid, "--reviewer", "bob", "--db", db)
    assert q(db, "SELECT status FROM tasks WHERE task_id = ?", [tid]) == [("approved",)]
    # a curator sets a status by hand: the next action records it as status_before
    con = duckdb.connect(str(db))
    con.execute("UPDATE tasks SET status = 'rejected' WHERE task_id = ?", [tid])
    con.close()
    cli("review", "skip", tid, "--reviewer", "cy", "--db", db)
    assert q(db, "SELECT status_before, status_after FROM review_events WHERE reviewer = 'cy'") == [
        ("rejected", "skipped")]


def test_edit_keeps_the_original(cli, history_100, db, tmp_path, loose):
    path, _ = history_100
    cli("run", "--git", path, "--db", db, "--limit", "10")
    (tid,) = q(db, "SELECT task_id FROM tasks ORDER BY task_id LIMIT 1")[0]
    cli("review", "needs-edit", tid, "--reviewer", "ann", "--db", db)
    shown = json.loads(cli("review", "show", tid, "--db", db, "--format", "json").out)
    from synth.queue.curation import task_content
    content = task_content(shown)
    original_title = content["title"]
    content["title"] = "A clearer title"
    edited = tmp_path / "edit.json"
    edited.write_text(json.dumps(content))
    r = cli("review", "edit", tid, "--reviewer", "ann", "--file", edited, "--db", db)
    assert r.code == 0 and "revision 1" in r.out
    assert q(db, "SELECT title, revision, status FROM tasks WHERE task_id = ?", [tid]) == [
        ("A clearer title", 1, "pending")]
    revs = q(db, "SELECT revision, content->>'title' FROM task_revisions WHERE task_id = ? ORDER BY 1", [tid])
    assert revs == [(0, original_title), (1, "A clearer title")]
    content["subtasks"] = content["subtasks"][:1]  # invalid: fewer than 2 subtasks
    edited.write_text(json.dumps(content))
    r = cli("review", "edit", tid, "--reviewer", "ann", "--file", edited, "--db", db)
    assert r.code == 2 and "does not validate" in r.err
    # the editor path: $EDITOR is a real program that changes the file
    script = tmp_path / "ed.py"
    script.write_text("import json,sys\np=sys.argv[1]\nd=json.load(open(p))\nd['difficulty']='hard'\n"
                      "json.dump(d,open(p,'w'))\n")
    import os
    import sys
    os.environ["EDITOR"] = f"{sys.executable} {script}"
    try:
        r = cli("review", "edit", tid, "--reviewer", "ann", "--db", db)
    finally:
        del os.environ["EDITOR"]
    assert r.code == 0 and q(db, "SELECT difficulty FROM tasks WHERE task_id = ?", [tid]) == [("hard",)]


def test_exclusion_list_keeps_prs_out(cli, history_100, db, tmp_path, loose):
    path, _ = history_100
    excl = tmp_path / "exclude.txt"
    excl.write_text("# used by a public benchmark\nacme/widgets#208\nacme/widgets#206\n")
    loose.write_text(loose.read_text().replace("[filters]\n", f'[filters]\nexclude_file = "{excl}"\n'))
    cli("run", "--git", path, "--db", db, "--limit", "10")
    assert q(db, "SELECT count(*) FROM tasks WHERE number IN (208, 206)") == [(0,)]
    assert q(db, "SELECT reasons[1] FROM candidates WHERE number = 208") == [("excluded",)]


def test_near_duplicates_are_flagged(cli, tmp_path, db, loose):
    from histories import module_text

    from synth.sources.history import build_repository
    body = ("Workers retry failed jobs with exponential backoff and jitter, up to a configurable "
            "number of attempts, and record every attempt in the job history for operators.")
    commits = [{"kind": "direct", "message": "init", "author": "A <a@b.c>",
                "date": "2024-01-01T00:00:00+00:00", "files": {"README.md": "x\n"}}]
    for i, n in enumerate((5, 9)):  # the same change landed twice (a backport)
        commits.append({"kind": "squash", "pr": n, "title": "Retry with backoff", "body": body,
                        "author": "A <a@b.c>", "date": f"2024-01-0{2 + i}T00:00:00+00:00",
                        "files": {f"src/retry{i}.py": module_text("retry", 9)}})
    repo = build_repository({"repo": {"name": "acme/dups"}, "commits": commits}, tmp_path / "d")
    assert cli("run", "--git", repo, "--db", db).code == 0
    rows = q(db, "SELECT number, dup_of, dup_kind FROM tasks ORDER BY number")
    assert rows[0][1] is None
    first_id = q(db, "SELECT task_id FROM tasks WHERE number = 5")[0][0]
    assert rows[1][1] == first_id


def test_template_tasks_are_not_twins_for_sharing_the_templates_words(cli, tmp_path, db, loose):
    """Found on real clones (go-playground/validator, samber/lo): PRs with a short title and
    no description got template queries that were nearly all fixed sentences ("In the x
    codebase: ...", "No description was given ...", "Work through the subtasks ..."), so
    nearly every such task was flagged a near-duplicate of another, and dedupe compared
    every pair. Only the distinctive part is compared now; the same change landed twice is
    still a twin."""
    from histories import module_text

    from synth.sources.history import build_repository
    titles = ["Add base32 validator tag", "Deprecate rmagic", "Fix flow.kill",
              "Add validation for directories", "Add dutch translations", "Fix flow.kill"]
    commits = [{"kind": "direct", "message": "init", "author": "A <a@b.c>",
                "date": "2024-01-01T00:00:00+00:00", "files": {"README.md": "x\n"}}]
    for i, title in enumerate(titles):
        commits.append({"kind": "squash", "pr": 10 + i, "title": title, "body": "",
                        "author": "A <a@b.c>", "date": f"2024-01-0{2 + i}T00:00:00+00:00",
                        "files": {f"src/m{i}.py": module_text(f"m{i}", 9)}})
    repo = build_repository({"repo": {"name": "acme/short"}, "commits": commits}, tmp_path / "s")
    assert cli("run", "--git", repo, "--db", db).code == 0
    rows = q(db, "SELECT number, dup_of IS NOT NULL, dup_kind FROM tasks ORDER BY number")
    assert len(rows) == 6
    assert [(n, k) for n, dup, k in rows if dup] == [(15, "query")]  # the second "Fix flow.kill"


def test_a_queue_signed_the_old_way_is_signed_again(cli, tmp_path, db, loose):
    """Schema 9 drops the signatures taken with the template's words; the next run (or
    `synth dedupe`) signs every task again and clears the flags they caused."""
    import duckdb

    from synth.queue.schema import SCHEMA_VERSION
    test_template_tasks_are_not_twins_for_sharing_the_templates_words(cli, tmp_path, db, loose)
    con = duckdb.connect(str(db))
    con.execute("UPDATE tasks SET dup_of = 'x', dup_kind = 'query'")  # as the old flags were
    con.execute("DELETE FROM schema_migrations WHERE version = 9")
    con.close()
    assert cli("dedupe", "--db", db).code == 0
    assert q(db, "SELECT count(*) FROM tasks WHERE dup_of IS NOT NULL") == [(1,)]
    assert q(db, "SELECT max(version) FROM schema_migrations") == [(SCHEMA_VERSION,)]
    assert q(db, "SELECT count(DISTINCT task_id) FROM task_signatures") == [(6,)]


def test_agreement_math():
    assert cohen_kappa(["a", "a", "r", "r"], ["a", "a", "r", "r"]) == 1.0
    assert cohen_kappa(["a", "r", "a", "r"], ["r", "a", "r", "a"]) == -1.0
    # Fleiss' worked example (Wikipedia) reduced: perfect agreement is 1
    assert fleiss_kappa([["a", "a", "a"], ["r", "r", "r"]]) == 1.0
    k = fleiss_kappa([["a", "a", "r"], ["a", "r", "r"], ["a", "a", "a"], ["r", "r", "r"]])
    assert -1 <= k < 1


def test_find_twins():
    text = "add a retry policy with exponential backoff to the worker so failed jobs retry"
    twins = find_twins([("a", text), ("b", "something else entirely about metrics export"),
                        ("c", text + " again")])
    assert [(t.item, t.twin_of) for t in twins] == [("c", "a")]


def test_export_since(cli, history_100, db, tmp_path, loose):
    path, _ = history_100
    cli("run", "--git", path, "--db", db, "--limit", "10")
    cli("review", "approve", "--where", "true", "--reviewer", "ann", "--db", db)
    out = tmp_path / "since"
    assert cli("export", "--out", out, "--since", "2999-01-01", "--db", db).code == 0
    assert (out / "train.jsonl").read_text() == ""
    assert cli("export", "--out", out, "--since", "2000-01-01", "--db", db).code == 0
    assert len((out / "train.jsonl").read_text().splitlines()) == len(q(db, "SELECT * FROM approved_tasks"))
