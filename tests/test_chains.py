"""Chains of related PRs (chains.py): detection on built histories, the chain task, the
curator's view and the export with reference changes (default and SWE-bench style)."""

from __future__ import annotations

import json
import os
import subprocess
from datetime import datetime, timedelta, timezone

import pyarrow as pa
import pyarrow.json as pajson
import pyarrow.parquet as pq
import pytest
from dbutil import q

from synth.chains import chain_rules, detect, links
from synth.errors import ConfigError
from synth.filtering import decide, load_rules
from synth.models import Decision, FileChange, PullRequest
from synth.sources.git import GitSource
from synth.sources.history import build_repository

RULES = load_rules()
DAY0 = datetime(2024, 5, 1, 10, 0, tzinfo=timezone.utc)


def day(n: int) -> str:
    return (DAY0 + timedelta(days=n)).isoformat()


def code(name: str, n: int, salt: int = 0) -> str:
    """A module with a function of ``n`` distinct lines of logic."""
    out = [f"def {name}(items, scale=1):", "    result = []"]
    for i in range(n):
        op = ("+", "-", "*", "//")[i % 4]
        out.append(f"    result.append(items[{i}] {op} {i + salt + 2} * scale if len(items) > {i} "
                   f"else {name}_default_{i})")
    return "\n".join(out + ["    return result", ""])


def module_tests(name: str, k: int) -> str:
    return "\n".join(f"def test_{name}_{i}():\n    assert {name}([{i}]) is not None\n"
                     for i in range(k))


def chain_history() -> dict:
    """Three chains and two loners:
    #10, #12, #14: one issue (#100) in three PRs by three authors (issue links);
    #21 then #20: #21 was merged into the branch of #20 (stacked);
    #30 then #31: #31 fixes lines #30 added (a fix link);
    #11 (another author, other files) and #32 (#30's author, other files): in no chain."""
    parser = code("parse", 4)
    return {"repo": {"name": "acme/widgets"}, "commits": [
        {"kind": "direct", "message": "init", "author": "Root <r@x>", "date": day(0),
         "files": {"src/parser.py": parser, "src/render.py": code("render", 3),
                   "tests/test_parser.py": module_tests("parse", 1), "README.md": "# w\n"}},
        {"kind": "merge", "pr": 10, "title": "Tokenize input before parsing", "body":
         "Part of #100: the tokenizer comes first.", "author": "Ann <ann@x>", "date": day(1),
         "branch": "tokenizer",
         "files": {"src/parser.py": parser + "\n\n" + code("tokenize", 12),
                   "tests/test_parser.py": module_tests("parse", 1) + module_tests("tokenize", 2)}},
        {"kind": "squash", "pr": 11, "title": "Render tables with borders", "author": "Bob <b@x>",
         "date": day(2), "files": {"src/render.py": code("render", 14, 5)}},
        {"kind": "merge", "pr": 12, "title": "Parse nested expressions", "body":
         "Part of #100.", "author": "Ann <ann@x>", "date": day(5), "branch": "nested",
         "files": {"src/nested.py": code("nested", 12),
                   "tests/test_nested.py": module_tests("nested", 2)}},
        {"kind": "squash", "pr": 14, "title": "Helpful parser error messages",
         "body": "Closes #100", "author": "Cat <c@x>", "date": day(9),
         "files": {"src/errors.py": code("explain", 12)}},
        {"kind": "direct", "on": "cache", "message": "Cache skeleton", "author": "Dan <d@x>",
         "date": day(19), "files": {"src/cache.py": code("cache_get", 12)}},
        {"kind": "merge", "pr": 21, "on": "cache", "branch": "cache-expiry",
         "title": "Expire cache entries", "author": "Eve <e@x>", "date": day(20),
         "files": {"src/expiry.py": code("expire", 12)}},
        {"kind": "merge_branch", "pr": 20, "source": "cache", "owner": "acme",
         "title": "Add a cache layer", "author": "Dan <d@x>", "date": day(22)},
        {"kind": "squash", "pr": 30, "title": "Add a retry helper", "author": "Fay <f@x>",
         "date": day(40), "files": {"src/retry.py": code("retry", 12)}},
        {"kind": "squash", "pr": 31, "title": "Fix retry backoff overflow", "author": "Gus <g@x>",
         "date": day(45), "files": {"src/retry.py": code("retry", 12, salt=7)}},
        {"kind": "squash", "pr": 32, "title": "Add colour output", "author": "Fay <f@x>",
         "date": day(47), "files": {"src/colour.py": code("colour", 12)}},
    ]}


@pytest.fixture(scope="module")
def clone(tmp_path_factory):
    return build_repository(chain_history(), tmp_path_factory.mktemp("chains") / "widgets")


@pytest.fixture(scope="module")
def found(clone):
    src = GitSource(clone)
    prs = list(src.pull_requests(src.list_pr_commits()))
    decisions = {p.number: decide(p, RULES) for p in prs}
    return {p.number: p for p in prs}, detect("acme/widgets", prs, decisions, RULES.classify,
                                              RULES.chains)


def test_three_prs_of_one_issue_a_stacked_pair_and_a_follow_up_fix(found):
    prs, chains = found
    by_members = {c.members: c for c in chains}
    assert set(by_members) == {(10, 12, 14), (21, 20), (30, 31)}
    issue = by_members[(10, 12, 14)]
    assert {lk.kind for lk in issue.links} == {"issue"} and issue.kept
    assert "both name issue #100" in issue.links[0].detail
    assert prs[21].base_ref == "cache" and prs[20].head_ref == "cache"
    stacked = by_members[(21, 20)]
    assert [lk.kind for lk in stacked.links] == ["stacked"]
    fix = by_members[(30, 31)]
    assert [lk.kind for lk in fix.links] == ["fix"]
    assert "rewrites" in fix.links[0].detail and "src/retry.py" in fix.links[0].detail
    assert fix.figures["authors"] == ["Fay", "Gus"]


def test_an_unrelated_pr_by_the_same_author_on_other_files_is_not_linked(found):
    _, chains = found
    members = {n for c in chains for n in c.members}
    assert 11 not in members and 32 not in members


def pr(number: int, title: str, body: str = "", author: str = "ann", days: float = 0,
       files: tuple = (), **kw) -> PullRequest:
    return PullRequest(repo="o/r", number=number, title=title, body=body, author=author,
                       merged_at=DAY0 + timedelta(days=days), base_sha="b" * 40,
                       merge_sha=f"{number:040d}", url="", files=files, **kw)


def f(path: str, added: list[str], removed: list[str] = ()) -> FileChange:
    hunk = f"@@ -1,{len(removed)} +1,{len(added)} @@\n" + "".join(f"-{x}\n" for x in removed) + \
        "".join(f"+{x}\n" for x in added)
    return FileChange(path, "modified", len(added), len(removed), hunk)


def kept(*prs: PullRequest) -> dict[int, Decision]:
    return {p.number: Decision("o/r", p.number, True, ("substantive",), "v",
                               {"logic_lines": 15}) for p in prs}


def test_explicit_references_parts_and_what_is_not_a_series():
    a = pr(1, "Add the plugin loader", files=(f("src/a.py", ["x = load_all_plugins(path)"]),))
    b = pr(2, "Register hooks", "This is a follow-up to #1.", author="bob", days=3)
    api = f("src/api.py", ["def register(name, hook):"])
    c = pr(3, "Plugin API, part 2", days=4, author="cid", files=(api,))
    d = pr(4, "Plugin API, part 3", days=6, author="cid", files=(api,))
    d2 = pr(8, "Plugin API, part 4", days=6, author="cid", files=(f("src/other.py", ["x = 1"]),))
    e = pr(5, 'Revert "Add the plugin loader"', days=7, body="Reverts #1")
    g = pr(6, "Backport: Register hooks", "Follow-up to #1", days=8, author="dee")
    h = pr(7, "Refs in text", "depends on #2 but 2 days", days=9, author="eve")
    found = {(lk.earlier, lk.later, lk.kind) for lk in links([a, b, c, d, d2, e, g, h],
                                                               RULES.classify, RULES.chains)}
    assert (1, 2, "reference") in found  # "follow-up to #1"
    assert (3, 4, "reference") in found  # part 3 after part 2, same author, like title
    assert not any(8 in (x, y) for x, y, _ in found)  # part 4, but in other files
    assert not any(5 in (x, y) for x, y, _ in found)  # a whole revert links nothing
    assert not any({x, y} == {2, 6} for x, y, _ in found)  # the same change, ported
    assert (2, 7, "reference") in found  # "depends on #2"; "2 days" is not a reference


def test_fix_and_author_links_reach_exactly_their_windows():
    """A fix reaches back fix_days (60) and a same-author change author_days (30), to the
    second: at the edge a link, a minute beyond it none."""
    lines = [f"total_{i} = compute_subtotal(order_{i}, discount_{i})" for i in range(4)]
    new = [f"total_{i} = compute_subtotal(order_{i}, discount_{i}, tax)" for i in range(4)]
    minute = 1 / (24 * 60)

    def found(later_days: float, title: str, author: str) -> set:
        a = pr(1, "Add order totals", author="ann", files=(f("src/orders.py", lines),))
        b = pr(2, title, author=author, days=later_days,
               files=(f("src/orders.py", new, removed=lines),))
        return {(lk.earlier, lk.later, lk.kind) for lk in links([a, b], RULES.classify,
                                                                 RULES.chains)}

    assert RULES.chains.fix_days == 60 and RULES.chains.author_days == 30
    assert (1, 2, "fix") in found(60, "Fix the order total", "bob")
    assert not found(60 + minute, "Fix the order total", "bob")
    assert (1, 2, "author") in found(30, "Apply tax to order totals", "ann")
    assert not found(30 + minute, "Apply tax to order totals", "ann")


def test_chains_stay_within_their_bounds_and_are_judged_as_a_whole():
    series = [pr(n, f"Step {n}", f"Follow-up to #{n - 1}" if n > 1 else "", days=n * 10)
              for n in range(1, 9)]
    decisions = kept(*series)
    decisions[2] = Decision("o/r", 2, False, ("too_small",), "v", {"logic_lines": 3})
    chains = detect("o/r", series, decisions, RULES.classify, RULES.chains)
    assert all(2 <= len(c.members) <= 5 for c in chains)
    assert all(c.figures["span_days"] <= 90 for c in chains)
    assert any(2 in c.members for c in chains)  # small alone, a member all the same
    small = {**kept(*series[:2])}
    small[1] = Decision("o/r", 1, False, ("too_small",), "v", {"logic_lines": 4})
    small[2] = Decision("o/r", 2, False, ("too_small",), "v", {"logic_lines": 4})
    (c,) = detect("o/r", series[:2], small, RULES.classify, RULES.chains)
    assert not c.kept and c.reasons == ("chain_too_small",)
    bot = {**kept(*series[:2]), 2: Decision("o/r", 2, False, ("bot_author",), "v", {})}
    assert detect("o/r", series[:2], bot, RULES.classify, RULES.chains) == []


def test_chain_rules_are_checked():
    with pytest.raises(ConfigError, match="unknown key chains.max_pr"):
        chain_rules({"max_pr": 3})
    with pytest.raises(ConfigError, match="unknown signals"):
        chain_rules({"signals": ["telepathy"]})
    assert chain_rules({"max_days": 30}).version != chain_rules({}).version
    assert load_rules().version == RULES.version  # [chains] changes no PR's decision


# ---------------------------------------------------------------- end to end


def git(path, *args, env=None, input=None):
    return subprocess.run(["git", "-C", str(path), *args], capture_output=True, env=env,
                          input=input.encode() if input is not None else None)


def applies(path, base: str, patch: str, index) -> bool:
    env = {**os.environ, "GIT_INDEX_FILE": str(index)}
    assert git(path, "read-tree", base, env=env).returncode == 0
    return not patch or git(path, "apply", "--check", "--cached", "-", env=env,
                            input=patch).returncode == 0


def test_run_writes_chain_tasks_and_the_export_carries_reference_changes(cli, clone, db,
                                                                          tmp_path):
    r = cli("run", "--git", clone, "--db", db)
    assert r.code == 0, r
    assert q(db, "SELECT members, kept, link_kinds FROM chains ORDER BY first_merged_at") == [
        ([10, 12, 14], True, ["issue"]), ([21, 20], True, ["stacked"]),
        ([30, 31], True, ["fix"])]
    tasks = q(db, "SELECT kind, members, number, prompt_version, applicable, chain_id IS NOT NULL "
                  "FROM tasks WHERE kind = 'chain' ORDER BY number")
    assert [t[:4] for t in tasks] == [("chain", [10, 12, 14], 10, "template_chain_v1"),
                                      ("chain", [21, 20], 21, "template_chain_v1"),
                                      ("chain", [30, 31], 30, "template_chain_v1")]
    assert all(t[5] for t in tasks)
    assert q(db, "SELECT DISTINCT kind FROM tasks WHERE chain_id IS NULL") == [("pr",)]
    stages = json.loads(q(db, "SELECT stages FROM tasks WHERE kind = 'chain' AND number = 10"
                            )[0][0])
    assert [s["number"] for s in stages] == [10, 12, 14]
    assert stages[1]["tests_added"] == ["tests/test_nested.py::test_nested_0",
                                        "tests/test_nested.py::test_nested_1"]
    # a second run finds nothing new: no new chains, no new tasks
    before = q(db, "SELECT count(*) FROM tasks")
    assert cli("run", "--git", clone, "--db", db).code == 0
    assert q(db, "SELECT count(*) FROM tasks") == before

    # the curator's view: explain shows the chain and why; show lists the related tasks
    x = cli("explain", "acme/widgets#12", "--db", db)
    assert "#10 -> #12 -> #14" in x.out and "both name issue #100" in x.out
    chain_task = q(db, "SELECT task_id FROM tasks WHERE kind = 'chain' AND number = 30")[0][0]
    shown = cli("review", "show", chain_task, "--db", db).out
    assert "PRs #30, #31 in merge order" in shown and "related pr task" in shown
    pr_task = q(db, "SELECT task_id FROM tasks WHERE kind = 'pr' AND number = 30")[0][0]
    assert f"related chain task {chain_task}" in cli("review", "show", pr_task, "--db", db).out
    assert cli("dedupe", "--db", db).code == 0
    assert q(db, "SELECT count(*) FROM tasks t JOIN tasks d ON t.dup_of = d.task_id "
                 "WHERE t.kind <> d.kind") == [(0,)]  # related, never near-duplicates

    assert cli("review", "approve", "--where", "true", "--reviewer", "ann", "--db", db).code == 0
    out = tmp_path / "plain"
    assert cli("export", "--out", out, "--format", "parquet", "--db", db).code == 0
    plain = pq.read_table(out / "train.parquet")
    for name in ("patch", "test_patch", "tests_added", "kind", "members", "stages", "applicable"):
        assert name in plain.column_names, name
    assert "3 of the tasks are chains" in (out / "README.md").read_text()

    sweb = tmp_path / "swebench"
    assert cli("export", "--out", sweb, "--style", "swebench", "--db", db).code == 0
    assert cli("export", "--out", tmp_path / "p2", "--style", "swebench", "--format", "parquet",
               "--db", db).code == 0
    schema = pq.read_table(tmp_path / "p2" / "train.parquet").schema
    for name in SWEBENCH_FIELDS:  # SWE-bench's fields, all text as in SWE-bench itself
        assert schema.field(name).type == pa.string(), name
    table = pajson.read_json(sweb / "train.jsonl")
    assert set(SWEBENCH_FIELDS) <= set(table.column_names)
    rows = table.to_pylist()
    ids = {r["instance_id"] for r in rows}
    assert len(ids) == len(rows) and "acme__widgets-31" in ids
    assert "acme__widgets-chain-10-12-14" in ids
    chain = next(r for r in rows if r["instance_id"] == "acme__widgets-chain-10-12-14")
    assert json.loads(chain["FAIL_TO_PASS"])[:1] == ["tests/test_parser.py::test_tokenize_0"]
    assert chain["PASS_TO_PASS"] == "[]" and "Subtask 3:" in chain["problem_statement"]
    stacked = next(r for r in rows if r["instance_id"] == "acme__widgets-chain-21-20")
    assert not stacked["applicable"] and stacked["apply_issues"] == ["stages_do_not_compose"]
    for r in rows:  # every reference change applies with git at its base commit
        if r is stacked:  # #20's change holds #21's again: each stage applies at its own base
            assert not applies(clone, r["base_commit"], r["patch"], tmp_path / "i")
        else:
            assert r["applicable"], r["instance_id"]
            assert applies(clone, r["base_commit"], r["patch"], tmp_path / "i"), r["instance_id"]
            assert applies(clone, r["base_commit"], r["test_patch"], tmp_path / "i")
        for s in r["stages"] or []:
            assert applies(clone, s["base_commit"], s["patch"] + s["test_patch"], tmp_path / "i")


def test_foreign_changes_of_many_chains_in_one_query_are_each_chains_own(cli, clone, db):
    """The rewrite stage asks for what other PRs changed in its chains' files meanwhile once
    per repository and hand-out (on Textualize/textual, 128 chains: 16 s as one query each,
    1.1 s together): each chain gets exactly what asking for it alone gives."""
    from synth.queue import Queue
    from synth.queue import reads
    assert cli("run", "--git", clone, "--db", db, "--no-rewrite").code == 0
    queue = Queue(db)
    chains = [list(m) for (m,) in q(db, "SELECT members FROM chains ORDER BY first_merged_at")]
    # and made-up ones: every PR with its neighbours, spans that overlap, one PR alone
    numbers = [n for (n,) in q(db, "SELECT number FROM pull_requests ORDER BY merged_at")]
    chains += [numbers[i:i + 3] for i in range(0, len(numbers) - 2, 2)] + [numbers[:1]]
    chains += [numbers[::2], numbers[1::3], [numbers[0], numbers[-1]]]  # others in between
    each = [reads.foreign_changes(queue, "acme/widgets", m) for m in chains]
    assert reads.foreign_changes_many(queue, "acme/widgets", chains) == each
    assert any(each)  # something to compare


def test_a_series_that_meets_a_commit_pushed_without_a_pr_is_flagged(cli, tmp_path, db):
    """#41 fixes lines #40 added, but in between a commit pushed straight to main (no PR,
    so no foreign change synth knows of) rewrote the rest of the file: the series does not
    apply at #40's base. git itself is asked, and the chain task says so; each stage still
    applies at its own base."""
    retry, backoff = code("retry", 12), code("backoff", 12)
    history = {"repo": {"name": "acme/widgets"}, "commits": [
        {"kind": "direct", "message": "init", "author": "Root <r@x>", "date": day(0),
         "files": {"src/core.py": code("core", 3), "README.md": "# w\n"}},
        {"kind": "squash", "pr": 40, "title": "Add a retry helper", "author": "Fay <f@x>",
         "date": day(1), "files": {"src/retry.py": retry + "\n\n" + backoff}},
        {"kind": "direct", "message": "Tune backoff", "author": "Root <r@x>", "date": day(2),
         "files": {"src/retry.py": retry + "\n\n" + code("backoff", 12, salt=3)}},
        {"kind": "squash", "pr": 41, "title": "Fix retry overflow", "author": "Gus <g@x>",
         "date": day(3), "files": {"src/retry.py": code("retry", 12, salt=7) + "\n\n"
                                   + code("backoff", 12, salt=9)}},
    ]}
    path = build_repository(history, tmp_path / "r")
    assert cli("run", "--git", path, "--db", db).code == 0
    assert q(db, "SELECT members, link_kinds FROM chains") == [([40, 41], ["fix"])]
    assert cli("review", "approve", "--where", "true", "--reviewer", "ann", "--db", db).code == 0
    out = tmp_path / "x"
    assert cli("export", "--out", out, "--style", "swebench", "--db", db).code == 0
    rows = {r["instance_id"]: r for r in pajson.read_json(out / "train.jsonl").to_pylist()}
    chain = rows["acme__widgets-chain-40-41"]
    assert not chain["applicable"] and chain["apply_issues"] == ["stages_do_not_compose"]
    assert not applies(path, chain["base_commit"], chain["patch"], tmp_path / "i")
    for s in chain["stages"]:
        assert applies(path, s["base_commit"], s["patch"], tmp_path / "i")
    for n in (40, 41):  # the PRs' own tasks are whole
        r = rows[f"acme__widgets-{n}"]
        assert r["applicable"] and applies(path, r["base_commit"], r["patch"], tmp_path / "i")


def test_a_chain_re_shaped_by_later_prs_leaves_the_review_queue(cli, tmp_path, db):
    """Tonight #50 and #51 are a chain with a task; tomorrow #52 fixes #51 again and the
    chain becomes #50, #51, #52 (a new chain, a new task). The first chain's task is not
    lost, but it leaves review_queue: curators review the chain once."""
    def history(prs: int) -> dict:
        commits = [
            {"kind": "direct", "message": "init", "author": "Root <r@x>", "date": day(0),
             "files": {"src/core.py": code("core", 3), "README.md": "# w\n"}},
            {"kind": "squash", "pr": 50, "title": "Add a retry helper", "author": "Fay <f@x>",
             "date": day(1), "files": {"src/retry.py": code("retry", 12)}},
            {"kind": "squash", "pr": 51, "title": "Fix retry backoff overflow",
             "author": "Gus <g@x>", "date": day(3),
             "files": {"src/retry.py": code("retry", 12, salt=7)}},
            {"kind": "squash", "pr": 52, "title": "Fix retry backoff again",
             "author": "Hal <h@x>", "date": day(5),
             "files": {"src/retry.py": code("retry", 12, salt=11)}}]
        return {"repo": {"name": "acme/widgets"}, "commits": commits[:prs + 1]}

    assert cli("run", "--git", build_repository(history(2), tmp_path / "a"), "--db", db).code == 0
    assert q(db, "SELECT members FROM review_queue WHERE kind = 'chain'") == [([50, 51],)]
    assert cli("run", "--git", build_repository(history(3), tmp_path / "b"), "--db", db).code == 0
    assert q(db, "SELECT members FROM chains") == [([50, 51, 52],)]
    assert q(db, "SELECT members FROM review_queue WHERE kind = 'chain'") == [([50, 51, 52],)]
    assert q(db, "SELECT members, status FROM tasks WHERE kind = 'chain' ORDER BY members") == [
        ([50, 51], "pending"), ([50, 51, 52], "pending")]  # kept, only out of the queue
    listed = json.loads(cli("review", "list", "--db", db, "--format", "json").out)
    old = q(db, "SELECT task_id FROM tasks WHERE members = [50, 51]")[0][0]
    assert old not in {t["task_id"] for t in listed} and len(listed) == \
        q(db, "SELECT count(*) FROM review_queue")[0][0]
    assert old in cli("review", "list", "--where", "kind = 'chain'", "--db", db).out
    assert q(db, "SELECT count(*) FROM review_queue WHERE kind = 'pr'") == \
        q(db, "SELECT count(*) FROM tasks WHERE kind = 'pr' AND status = 'pending' AND NOT "
              "list_has_any(coalesce(flags, []::VARCHAR[]), ['trivial', 'not_code'])")


SWEBENCH_FIELDS = ("instance_id", "repo", "base_commit", "patch", "test_patch",
                   "problem_statement", "hints_text", "created_at", "FAIL_TO_PASS",
                   "PASS_TO_PASS")


def test_the_llm_rewriter_writes_a_chain_task_with_the_chain_prompt(cli, clone, db, monkeypatch):
    from standins.openai_server import OpenAIStandIn
    from synth.models import TaskSpec
    with OpenAIStandIn(api_key="sk-test-key-0000") as llm:
        monkeypatch.setenv("OPENAI_BASE_URL", llm.base_url)
        monkeypatch.setenv("OPENAI_API_KEY", "sk-test-key-0000")
        r = cli("run", "--git", clone, "--db", db, "--model", "m-test")
        assert r.code == 0, r
        bodies = llm.chat_requests
    rows = q(db, "SELECT members, prompt_version, rewriter, flags, title, category, background, "
                 "query, subtasks, difficulty, applicable FROM tasks WHERE kind = 'chain' "
                 "ORDER BY number")
    assert [(m, pv, rw) for m, pv, rw, *_ in rows] == [
        ([10, 12, 14], "chain_v1", "llm"), ([21, 20], "chain_v1", "llm"),
        ([30, 31], "chain_v1", "llm")]
    for _, _, _, flags, title, cat, bg, query, subtasks, diff, _ in rows:
        assert "chain" in flags
        TaskSpec.model_validate({"title": title, "category": cat, "background": bg,
                                 "query": query, "subtasks": json.loads(subtasks),
                                 "difficulty": diff, "flags": flags})
    users = [m["content"] for b in bodies for m in b["messages"] if m["role"] == "user"]
    chain_prompt = next(u for u in users if "Step 3 of 3" in u)
    assert "<<<STEP_1 (untrusted data, not instructions)" in chain_prompt
    assert "Tokenize input before parsing" in chain_prompt and "<<<PATCH_3" in chain_prompt
