"""The optional LLM triage between the filter and the rewrite, against the OpenAI stand-in."""

from __future__ import annotations

import json
import re

import pytest
from dbutil import q
from rulesets import LOOSE_SUBSTANCE
from standins.openai_server import OpenAIStandIn, find_schema, task_responder


def triage_responder(request: dict) -> str:
    """Verdicts keyed by the PR (its title's number), not by arrival order: odd changes
    are trivial. Tasks come from the default responder."""
    schema = find_schema(request) or {}
    if "verdict" not in (schema.get("properties") or {}):
        return task_responder(request)
    text = json.dumps(request.get("messages"))
    n = int(re.search(r"Change number (\d+)", text).group(1))
    verdict = "trivial" if n % 2 else "substantive"
    return json.dumps({"verdict": verdict, "reason": f"change {n} judged {verdict}"})


@pytest.fixture
def triaged_run(cli, history_100, tmp_path, monkeypatch):
    path, _ = history_100
    from synth.filtering import default_rules_path
    loose = tmp_path / "loose.toml"  # the built history's PRs are small: keep more of them
    loose.write_text(LOOSE_SUBSTANCE)
    (tmp_path / "synth.toml").write_text(
        f'[filters]\nfiles = ["{default_rules_path()}", "{loose}"]\n\n[triage]\nenabled = true\n')
    db = tmp_path / "q.duckdb"
    with OpenAIStandIn(responder=triage_responder) as llm:
        monkeypatch.setenv("OPENAI_BASE_URL", llm.base_url)
        r = cli("run", "--git", path, "--model", "m", "--db", db)
        assert r.code == 0, r
        calls = llm.calls
        again = cli("run", "--git", path, "--model", "m", "--db", db)
        assert again.code == 0 and llm.calls == calls  # verdicts and tasks are not asked twice
    return db, r


def test_triage_verdicts_are_decisions_and_trivial_prs_are_not_rewritten(triaged_run):
    db, r = triaged_run
    rows = q(db, "SELECT number, kept, reasons, metrics->>'triage_reason', "
                 "metrics->>'triage_model' FROM decisions WHERE list_has_any(reasons, "
                 "['triage_substantive', 'triage_trivial']) ORDER BY number")
    assert rows and {m for *_, m in rows} == {"m"}
    for number, kept, reasons, reason, _ in rows:
        assert reason.startswith("change ")
        assert kept == (reasons == ["triage_substantive"])
    trivial = {n for n, kept, *_ in rows if not kept}
    substantive = {n for n, kept, *_ in rows if kept}
    assert trivial and substantive
    tasks = {n for (n,) in q(db, "SELECT number FROM tasks")}
    assert tasks == substantive  # a triaged-trivial PR is never rewritten
    # the triage verdict is the PR's latest decision: candidates says dropped, and why
    dropped = {n for (n,) in q(db, "SELECT number FROM candidates WHERE NOT kept AND "
                                   "list_contains(reasons, 'triage_trivial')")}
    assert dropped == trivial
    assert "LLM calls" in r.out


def test_filters_eval_reports_the_triage_apart(cli, triaged_run, tmp_path):
    db, _ = triaged_run
    rows = q(db, "SELECT repo, number FROM candidates ORDER BY number")
    labels = tmp_path / "labels.tsv"
    labels.write_text("repo\tpr_number\tlabel\n" + "".join(
        f"{repo}\t{n}\t{'substantive' if i % 3 else 'trivial'}\n" for i, (repo, n) in enumerate(rows)))
    r = cli("filters", "eval", labels, "--db", db)
    assert r.code == 0, r
    assert "LLM triage (m), on the" in r.out
    assert r.out.count("precision:") == 2


def test_review_queue_leaves_out_tasks_the_rewriter_flagged(triaged_run):
    import duckdb
    db, _ = triaged_run
    con = duckdb.connect(str(db))
    before = con.execute("SELECT count(*) FROM review_queue").fetchone()[0]
    con.execute("UPDATE tasks SET flags = ['trivial'] WHERE task_id = "
                "(SELECT min(task_id) FROM tasks)")
    after = con.execute("SELECT count(*) FROM review_queue").fetchone()[0]
    con.close()
    assert after == before - 1
