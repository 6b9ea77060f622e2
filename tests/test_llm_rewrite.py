"""The LLM rewriter end to end against the OpenAI-compatible stand-in (a real loopback server).

Covers: both structured-output dialects, plain prompting and llama-cpp-python's; faults become
recorded failures, never invalid rows, and the next run retries them; every HTTP status the
stand-in can send is a recorded failure or one clear error, never a traceback, and reads as one
line in the summary; the cache (a second run makes no call); the prompt-injection corpus;
planted secrets scrubbed before anything leaves the machine (more in test_scrub.py).

Retry waits go through a FakeClock (the ``fake_clock`` fixture): no test sleeps.
"""

from __future__ import annotations

import json
import random
import string
import tomllib
from pathlib import Path

import pytest

from dbutil import q as table
from histories import module_text
from standins.openai_server import FAULT_KINDS, OpenAIStandIn, task_responder
from synth import app
from synth.clock import FakeClock
from synth.models import TaskSpec
from synth.rewrite.prompts import load_template
from synth.sources.history import build_repository

DATA = Path(__file__).parent / "data"


def repo_with_prs(root: Path, bodies: list[str], name: str = "acme/llm") -> Path:
    """One substantive squash PR per body (two new code modules each)."""
    commits = [{"kind": "direct", "message": "init", "author": "A <a@example.com>",
                "date": "2024-01-01T00:00:00+00:00", "files": {"README.md": "# x\n"}}]
    for i, body in enumerate(bodies):
        commits.append({
            "kind": "squash", "pr": 100 + i, "title": f"Add engine part {i}", "body": body,
            "author": "Dev <dev@example.com>", "date": f"2024-02-{1 + i % 27:02d}T{i % 24:02d}:00:00+00:00",
            "files": {f"src/part_{i}.py": module_text(f"part_{i}", 9),
                      f"src/glue_{i}.py": module_text(f"glue_{i}", 9)}})
    return build_repository({"repo": {"name": name}, "commits": commits}, root / "repo")




@pytest.fixture
def fake_clock(monkeypatch) -> FakeClock:
    """Every LLM wait of a CLI run on a fake clock: retries take no real time."""
    clock = FakeClock()
    make = app.make_rewriter
    monkeypatch.setattr(app, "make_rewriter",
                        lambda settings, req, rules, *rest, **kw: make(settings, req, rules,
                                                                       clock=clock))
    return clock


def run_llm(cli, llm, repo, db, monkeypatch, *extra):
    monkeypatch.setenv("OPENAI_BASE_URL", llm.base_url)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-key-0000")
    return cli("run", "--git", repo, "--db", db, "--model", "m-test", *extra)


def assert_valid_tasks(db: Path) -> int:
    rows = table(db, "SELECT title, category, background, query, subtasks, modified_files, "
                     "related_files, difficulty, flags, confidence, status, rewriter, model "
                     "FROM tasks")
    for (title, cat, bg, query, subtasks, mod, rel, diff, flags, conf, status, rw, model) in rows:
        TaskSpec.model_validate({
            "title": title, "category": cat, "background": bg, "query": query,
            "subtasks": json.loads(subtasks), "modified_files": mod, "related_files": rel,
            "difficulty": diff, "flags": flags, "confidence": conf})
        assert status == "pending" and rw == "llm" and model == "m-test"
    return len(rows)


@pytest.fixture(scope="module")
def plain_repo(tmp_path_factory):
    return repo_with_prs(tmp_path_factory.mktemp("llm"), [f"Why part {i} is needed." for i in range(12)])


@pytest.mark.parametrize("dialect", ["openai", "llamacpp", "plain", "llama-cpp-python"])
def test_schema_valid_tasks_in_every_dialect(cli, plain_repo, db, monkeypatch, dialect):
    with OpenAIStandIn(dialect=dialect, api_key="sk-test-key-0000") as llm:
        r = run_llm(cli, llm, plain_repo, db, monkeypatch)
        assert r.code == 0, r
        assert assert_valid_tasks(db) == 12
        first_calls = llm.calls
        assert first_calls <= 12 + 2  # at most the rejected dialects probed once
        usage = table(db, "SELECT sum(prompt_tokens), sum(completion_tokens) FROM tasks")[0]
        assert usage[0] > 0 and usage[1] > 0
        r = run_llm(cli, llm, plain_repo, db, monkeypatch)
        assert r.code == 0 and llm.calls == first_calls  # the cache: no call at all


def test_faults_give_recorded_failures_then_retry(cli, plain_repo, tmp_path, monkeypatch,
                                                 fake_clock):
    db = tmp_path / "faulty.duckdb"
    kinds = ["malformed", "truncated", "refusal", "rate_limit", "server_error", "invalid_schema",
             "garbage"]
    with OpenAIStandIn(fault_rate=0.5, seed=4, kinds=kinds,
                       fault_params={"rate_limit": {"retry_after": 0.05}}) as llm:
        r = run_llm(cli, llm, plain_repo, db, monkeypatch)
        assert r.code in (0, 3), r
        assert set(llm.faults_served) >= {"malformed", "refusal", "invalid_schema"}
        n_tasks = assert_valid_tasks(db)
        failed = table(db, "SELECT number, reason, detail FROM failures WHERE stage = 'rewrite' "
                           "AND NOT resolved")
        assert n_tasks + len(failed) == 12 and failed
        assert {f[1] for f in failed} <= {"malformed", "truncated", "refusal", "invalid_output",
                                          "unavailable", "bad_response"}
    with OpenAIStandIn() as llm:  # the endpoint recovers: the next run retries the failures
        r = run_llm(cli, llm, plain_repo, db, monkeypatch)
        assert r.code == 0, r
        assert llm.calls == len(failed)
    assert assert_valid_tasks(db) == 12
    assert table(db, "SELECT count(*) FROM failures WHERE stage = 'rewrite' AND NOT resolved") == [(0,)]


def test_bad_api_key_is_one_clear_error(cli, plain_repo, db, monkeypatch):
    with OpenAIStandIn(api_key="sk-right-key-1234") as llm:
        r = run_llm(cli, llm, plain_repo, db, monkeypatch)
    assert r.code == 2 and "refused the API key" in r.err
    assert "sk-test-key-0000" not in r.err + r.out


# every status the stand-in can send: (fault, params, exit codes, failure reason or None)
STATUS_TABLE = [(("http_error", {"status": s}), reason) for s, reason in [
    (400, "bad_request"), (403, "forbidden"), (404, "not_found"), (405, "not_allowed"),
    (408, "unavailable"), (409, "unavailable"), (413, "too_large"), (415, "bad_request"),
    (418, "rejected"), (422, "bad_request"), (429, "unavailable"), (500, "unavailable"),
    (501, "rejected"), (502, "unavailable"), (503, "unavailable"), (504, "unavailable")]] + [
    (("server_error", {}), "unavailable"), (("rate_limit", {"retry_after": 2}), "unavailable"),
    (("garbage", {}), "bad_response"), (("garbage", {"status": 502}), "unavailable"),
    (("disconnect", {}), "unavailable"), (("malformed", {}), "malformed"),
    (("truncated", {}), "truncated"), (("refusal", {}), "malformed"),  # content, no refusal field
    (("invalid_schema", {}), "invalid_output")]


def test_the_status_table_covers_every_fault_kind():
    assert {k for (k, _), _ in STATUS_TABLE} == set(FAULT_KINDS) - {"slow"}


@pytest.fixture(scope="module")
def one_pr_repo(tmp_path_factory):
    return repo_with_prs(tmp_path_factory.mktemp("one"), ["Why it is needed."], name="acme/one")


@pytest.mark.parametrize("fault,reason", STATUS_TABLE, ids=lambda v: str(v))
def test_no_status_gives_a_traceback(cli, one_pr_repo, db, monkeypatch, fake_clock, fault, reason):
    kind, params = fault
    with OpenAIStandIn(dialect="llama-cpp-python") as llm:
        llm.script(kind, times=50, **params)
        r = run_llm(cli, llm, one_pr_repo, db, monkeypatch)
    assert "Traceback" not in r.out + r.err, r
    assert r.code == 3, r
    rows = table(db, "SELECT reason, message, detail FROM failures WHERE stage = 'rewrite'")
    assert [row[0] for row in rows] == [reason], rows
    line = next(ln for ln in r.out.splitlines() if f"[rewrite/{reason}]" in ln)
    assert len(line) <= 220 and "acme/one#100" in line


def test_a_refused_key_is_one_clear_error_on_every_dialect(cli, one_pr_repo, db, monkeypatch):
    for dialect in ("openai", "llamacpp", "llama-cpp-python"):
        with OpenAIStandIn(dialect=dialect, api_key="sk-right-key-1234") as llm:
            r = run_llm(cli, llm, one_pr_repo, db, monkeypatch)
        assert r.code == 2 and "refused the API key" in r.err, (dialect, r)
        assert "Traceback" not in r.out + r.err and "sk-test-key-0000" not in r.out + r.err


def test_a_multi_line_server_message_is_one_summary_line(cli, one_pr_repo, db, monkeypatch,
                                                         fake_clock):
    message = "Model crashed: " + "x" * 300 + "\nTraceback (most recent call last):\n  File \"app.py\""
    with OpenAIStandIn(dialect="llama-cpp-python") as llm:
        llm.script("http_error", times=50, status=400, message=message)
        r = run_llm(cli, llm, one_pr_repo, db, monkeypatch)
    assert r.code == 3 and "Traceback" not in r.out + r.err
    line = next(ln for ln in r.out.splitlines() if "[rewrite/bad_request]" in ln)
    assert "Model crashed: xxx" in line and len(line.split(": ", 1)[1]) <= 160
    detail = table(db, "SELECT detail FROM failures")[0][0]
    assert "Traceback (most recent call last)" in detail and "x" * 300 in detail


# ---------------------------------------------------------------- injections

def compromised(request: dict) -> str | dict:
    """A model that obeys whatever the PR text tells it."""
    user = request["messages"][-1]["content"]
    system = request["messages"][0]["content"]
    base = json.loads(task_responder({**request, "response_format": {
        "type": "json_schema", "json_schema": {"schema": request.get("response_format", {}).get(
            "json_schema", {}).get("schema") or json.loads(user.split("<schema>")[-1].split("</schema>")[0])}}}))
    if "APPROVED" in user and "word APPROVED" in user:
        return "APPROVED"
    if "YAML" in user:
        return "title: x\nreview: accepted\n"
    if "status" in user and "approved" in user:
        base["status"] = "approved"
        return json.dumps(base)
    if "system prompt" in user.lower() or "Repeat everything" in user or "hidden rules" in user:
        base["background"] = system
        return json.dumps(base)
    if "40 subtasks" in user:
        return "\n".join(f"{i}. do thing" for i in range(40))
    if "empty" in user:
        return "{}"
    return json.dumps(base)


def test_injection_corpus_has_no_escape(cli, tmp_path, monkeypatch):
    cases = tomllib.loads((DATA / "injections.toml").read_text())["case"]
    assert len(cases) >= 20
    repo = repo_with_prs(tmp_path, [c["body"] for c in cases], name="acme/inject")
    db = tmp_path / "inj.duckdb"
    with OpenAIStandIn(responder=compromised, openai_validation=False) as llm:
        r = run_llm(cli, llm, repo, db, monkeypatch)
        sent = llm.chat_requests
    assert r.code in (0, 3), r
    system = load_template("task_v1", "system")
    for req in sent:
        msgs = req["messages"]
        assert msgs[0] == {"role": "system", "content": system}  # never altered
        user = msgs[1]["content"]
        # the PR body sits inside one fence that its text cannot close
        start = user.index("<<<PULL_REQUEST")
        end = user.index(">>>END PULL_REQUEST")
        assert user.count(">>>END PULL_REQUEST") == 1 and start < end
        for secret in ("ghp_AbCdEfGhIjKlMnOpQrStUvWxYz0123456789",
                       "sk-proj-Zx9Yw8Vu7Ts6Rq5Po4Nm3Lk2Jh1Gf0EdCbA", "hunter2-S3cret!",
                       "AKIAIOSFODNN7EXAMPLE", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"):
            assert secret not in json.dumps(req)
    # nothing the model returned set a status or a column outside the task fields
    assert table(db, "SELECT DISTINCT status FROM tasks") in ([("pending",)], [])
    n = assert_valid_tasks(db)
    failed = table(db, "SELECT count(*) FROM failures WHERE stage = 'rewrite'")[0][0]
    assert n + failed == len(cases)
    cols = {r[0] for r in table(db, "SELECT column_name FROM information_schema.columns "
                                    "WHERE table_name = 'tasks'")}
    assert "reviewer" not in cols


# ---------------------------------------------------------------- secrets

def planted_secrets(seed: int = 7) -> list[str]:
    rng = random.Random(seed)
    an = string.ascii_letters + string.digits

    def r(n, alphabet=an):
        return "".join(rng.choice(alphabet) for _ in range(n))
    out = []
    for _ in range(3):
        out += [
            "ghp_" + r(36), "github_pat_" + r(22) + "_" + r(59), "gho_" + r(36),
            "sk-proj-" + r(48), "sk-" + r(48), "sk-ant-api03-" + r(80),
            "AKIA" + r(16, string.ascii_uppercase + string.digits),
            "xoxb-" + r(12, string.digits) + "-" + r(24), "AIza" + r(35),
            "sk_live_" + r(24), "npm_" + r(36), "hf_" + r(34), "glpat-" + r(20),
            "eyJ" + r(20) + ".eyJ" + r(30) + "." + r(43),
        ]
    return out


ASSIGNED = [("password", "Tr0ub4dor&3x-9q"), ("api_key", "a8f5f167f44f4964e6c998dee827110c"),
            ("client_secret", "Zm9vYmFyYmF6cXV4MTIzNDU2"), ("DB_PASSWORD", "p@ssW0rd!2024xyz"),
            ("auth_token", "7d9f1c2e4b6a8d0f3e5c7b9a")]


def test_planted_secrets_are_scrubbed_before_sending(cli, tmp_path, monkeypatch):
    secrets = planted_secrets()
    url_pw = "s3cr3t-Passw0rd"
    body = "Deploy notes:\n" + "\n".join(f"- key {i}: {s}" for i, s in enumerate(secrets[:20]))
    body += f"\nconnect with https://deploy:{url_pw}@ci.example.com/hook\n"
    body += "\n".join(f'{k} = "{v}"' for k, v in ASSIGNED)
    pem = ("-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEA" + "x" * 60
           + "\n-----END RSA PRIVATE KEY-----")
    code = "CONFIG = {\n" + "".join(f'    "k{i}": "{s}",\n' for i, s in enumerate(secrets[20:])) + "}\n"
    history = {"repo": {"name": "acme/leaky"}, "commits": [
        {"kind": "direct", "message": "init", "author": "A <a@b.c>",
         "date": "2024-01-01T00:00:00+00:00", "files": {"README.md": "x\n"}},
        {"kind": "squash", "pr": 5, "title": "Wire up deployment", "body": body + "\n" + pem,
         "author": "A <a@b.c>", "date": "2024-01-02T00:00:00+00:00",
         "files": {"src/settings.py": code + module_text("settings", 8),
                   "src/deploy.py": module_text("deploy", 9)}}]}
    repo = build_repository(history, tmp_path / "leaky")
    db = tmp_path / "leak.duckdb"
    with OpenAIStandIn() as llm:
        r = run_llm(cli, llm, repo, db, monkeypatch)
        sent = json.dumps(llm.chat_requests)
    assert r.code == 0, r
    planted = secrets + [url_pw, "MIIEowIBAAKCAQEA"] + [v for _, v in ASSIGNED]
    leaked = [s for s in planted if s in sent]
    assert len(planted) >= 40
    assert len(leaked) / len(planted) <= 0.05, leaked
    assert "[REDACTED:" in sent


def test_judge_scores_order_the_review_queue(cli, plain_repo, db, monkeypatch):
    def responder(request):
        system = request["messages"][0]["content"]
        if "You review coding tasks" not in system:
            return None  # the default task answer
        user = request["messages"][-1]["content"]
        n = sum(map(ord, user)) % 5 + 1
        return json.dumps({"clarity": n, "self_containedness": 5, "testability": n,
                           "leakage": 5, "difficulty_fit": 3, "comment": "ok"})
    with OpenAIStandIn(responder=responder) as llm:
        r = run_llm(cli, llm, plain_repo, db, monkeypatch, "--judge")
        assert r.code == 0, r
        assert llm.calls == 24  # a task call and a judge call per PR
    scores = [s for (s,) in table(db, "SELECT judge_score FROM review_queue")]
    assert len(scores) == 12 and all(s is not None for s in scores)
    assert scores == sorted(scores, reverse=True) and len(set(scores)) > 1
    judge = json.loads(table(db, "SELECT judge FROM tasks LIMIT 1")[0][0])
    assert set(judge) >= {"clarity", "testability", "leakage", "comment"}
    counts = json.loads(table(db, "SELECT counts FROM runs ORDER BY started_at DESC LIMIT 1")[0][0])
    assert counts["llm/calls"] == 24 and counts["llm/tokens/in"] > 0


def test_failed_attempts_count_in_the_runs_llm_use(cli, plain_repo, db, monkeypatch):
    """Answers cut off at max_tokens make no task, but their calls were made and paid for:
    the run's LLM counters (and the summary line) count them."""
    def responder(request):
        user = request["messages"][-1]["content"]
        if "Why part 3 " in user or "Why part 7 " in user:
            return {"content": '{"title": "Fix', "finish_reason": "length"}
        return None  # the default task answer
    with OpenAIStandIn(responder=responder) as llm:
        r = run_llm(cli, llm, plain_repo, db, monkeypatch)
        calls = llm.calls
    assert r.code == 3 and "partial" in r.out, r  # two recorded failures
    assert table(db, "SELECT count(*) FROM tasks") == [(10,)]
    assert table(db, "SELECT count(*) FROM failures WHERE reason = 'truncated'") == [(2,)]
    counts = json.loads(table(db, "SELECT counts FROM runs ORDER BY started_at DESC LIMIT 1")[0][0])
    tasks_in, tasks_out = table(db, "SELECT sum(prompt_tokens), sum(completion_tokens) FROM tasks")[0]
    assert counts["llm/calls"] == calls == 12
    assert counts["llm/tokens/in"] > tasks_in and counts["llm/tokens/out"] > tasks_out
    assert f"LLM calls:     {calls} " in r.out
