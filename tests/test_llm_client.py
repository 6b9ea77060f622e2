"""The OpenAI-compatible client (synth.rewrite.llm) against the stand-in: dialect discovery as
real servers need it, what is learnt and where, every status as a failure or one clear error,
waits through the clock (no test sleeps), a stop that abandons a running request, and the
bounded schema's token budget."""

from __future__ import annotations

import json
import logging
import threading

import pytest

from standins.openai_server import OpenAIStandIn
from synth.clock import Clock, FakeClock
from synth.errors import ConfigError, RewriteError, Stopped
from synth.filtering import load_rules
from synth.models import FileChange, Failure, PullRequest, Task
from synth.rewrite.llm import LLMClient, max_json_chars, max_tokens_for
from synth.rewrite.rewriter import TASK_SCHEMA, LLMRewriter, default_max_tokens

SCHEMA = TASK_SCHEMA
MESSAGES = [{"role": "system", "content": "You write tasks. Answer with JSON only."},
            {"role": "user", "content": "Title: Fix the parser\n\nWrite the task.\n<schema>\n"
             + json.dumps(SCHEMA) + "\n</schema>"}]


def client_for(llm: OpenAIStandIn, clock=None, **kw) -> LLMClient:
    return LLMClient("m-test", base_url=llm.base_url, api_key=llm.api_key or "sk-x",
                     clock=clock or FakeClock(), **kw)


def ask(client: LLMClient):
    return client.chat_json(MESSAGES, SCHEMA, "coding_task", max_tokens=2000)


def forms(llm: OpenAIStandIn) -> list[tuple[str, int]]:
    """(response_format type, status) of every chat request."""
    return [((r["body"] or {}).get("response_format") or {}).get("type", "prompt")
            for r in llm.requests if r["path"].endswith("/chat/completions")], \
        [r["status"] for r in llm.requests if r["path"].endswith("/chat/completions")]


def test_llama_cpp_python_500_moves_to_json_object_and_is_said_once(caplog):
    caplog.set_level(logging.INFO, logger="synth.llm")
    with OpenAIStandIn(dialect="llama-cpp-python") as llm:
        client = client_for(llm)
        assert client.dialect is None
        first = ask(client)
        second = ask(client)
        sent, statuses = forms(llm)
    assert first.dialect == second.dialect == client.dialect == "json_object"
    assert sent == ["json_schema", "json_object", "json_object"]
    assert statuses == [500, 200, 200]  # the refusal was not retried
    chosen = [r.message for r in caplog.records if "structured output as" in r.message]
    assert len(chosen) == 1 and "json_object" in chosen[0] and "json_schema refused" in chosen[0]
    assert "\n" not in chosen[0]  # the server's multi-line text is cut to its first line


def test_what_is_learnt_belongs_to_the_client_not_the_module():
    with OpenAIStandIn(dialect="llama-cpp-python") as llm:
        ask(client_for(llm))
        ask(client_for(llm))  # a second client learns for itself
        sent, _ = forms(llm)
    assert sent == ["json_schema", "json_object", "json_schema", "json_object"]


def test_concurrent_first_calls_probe_once():
    with OpenAIStandIn(dialect="llama-cpp-python") as llm:
        client = client_for(llm)
        threads = [threading.Thread(target=ask, args=(client,)) for _ in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        sent, _ = forms(llm)
    assert sent.count("json_schema") == 1 and sent.count("json_object") == 6


@pytest.mark.parametrize("forced,dialect", [("json_object", "openai"), ("prompt", "openai"),
                                            ("json_schema", "openai")])
def test_a_forced_form_is_the_only_one_sent(forced, dialect):
    with OpenAIStandIn(dialect=dialect) as llm:
        client = client_for(llm, structured_output=forced)
        assert client.dialect == forced
        assert ask(client).dialect == forced
        sent, _ = forms(llm)
    assert sent == [forced]


def test_a_forced_form_that_is_refused_is_a_failure_not_a_move():
    with OpenAIStandIn(dialect="llama-cpp-python") as llm:
        client = client_for(llm, structured_output="json_schema")
        with pytest.raises(RewriteError) as info:
            ask(client)
        sent, _ = forms(llm)
    assert set(sent) == {"json_schema"} and client.dialect == "json_schema"
    assert info.value.reason == "unavailable" and "\n" not in str(info.value)
    assert "Traceback" not in str(info.value) and "POST /v1/chat" in info.value.raw


def test_an_unknown_structured_output_setting_is_a_config_error():
    with pytest.raises(ConfigError, match="structured_output"):
        LLMClient("m", base_url="http://127.0.0.1:9/v1", structured_output="xml")


def test_the_same_error_on_every_retry_moves_to_the_next_form():
    def responder(request):
        if (request.get("response_format") or {}).get("type") == "json_schema":
            return {"status": 503, "body": {"error": {"message": "upstream busy"}}}
        return None
    clock = FakeClock()
    with OpenAIStandIn(responder=responder) as llm:
        comp = ask(client_for(llm, clock=clock))
        sent, statuses = forms(llm)
    assert comp.dialect == "json_object"
    assert sent == ["json_schema"] * 5 + ["json_object"] and statuses[:5] == [503] * 5
    assert len(clock.slept) == 4  # backoff between the five tries, on the fake clock


def test_any_4xx_refusal_moves_on_while_the_dialect_is_unknown():
    def responder(request):
        kind = (request.get("response_format") or {}).get("type")
        if kind == "json_schema":
            return {"status": 422, "body": {"detail": [{"msg": "unsupported"}]}}
        if kind == "json_object":
            return {"status": 400, "body": {"error": {"message": "no json mode"}}}
        return None
    with OpenAIStandIn(responder=responder) as llm:
        comp = ask(client_for(llm))
    assert comp.dialect == "prompt" and json.loads(comp.text.split("```json")[1].split("```")[0])


@pytest.mark.parametrize("status,reason", [(400, "bad_request"), (403, "forbidden"),
                                           (404, "not_found"), (405, "not_allowed"),
                                           (413, "too_large"), (422, "bad_request"),
                                           (418, "rejected")])
def test_a_refused_request_is_a_failure_with_a_reason(status, reason):
    with OpenAIStandIn() as llm:
        llm.script("http_error", times=10, status=status, message="first line\nsecond line")
        with pytest.raises(RewriteError) as info:
            ask(client_for(llm))
        sent, _ = forms(llm)
    assert sent == ["json_schema", "json_object", "prompt"]  # every form refused, no retries
    assert info.value.reason == reason
    assert str(info.value).count("\n") == 0 and "first line" in str(info.value)
    assert "second line" in info.value.raw


@pytest.mark.parametrize("status", [429, 500, 502, 503, 504])
def test_transient_statuses_are_retried_then_unavailable(status):
    clock = FakeClock()
    with OpenAIStandIn() as llm:
        llm.script("http_error", times=100, status=status, message="busy")
        with pytest.raises(RewriteError) as info:
            ask(client_for(llm, clock=clock, structured_output="json_schema"))
    assert info.value.reason == "unavailable" and llm.calls == 5 and len(clock.slept) == 4


def test_a_refused_key_is_one_config_error_without_the_key():
    with OpenAIStandIn(dialect="llama-cpp-python", api_key="sk-right") as llm:
        client = LLMClient("m", base_url=llm.base_url, api_key="sk-wrong-123456",
                           clock=FakeClock())
        with pytest.raises(ConfigError) as info:
            ask(client)
    assert "refused the API key" in str(info.value) and "sk-wrong" not in str(info.value)


def test_retry_after_is_waited_on_the_clock():
    clock = FakeClock()
    with OpenAIStandIn() as llm:
        llm.script("rate_limit", retry_after=7)
        assert ask(client_for(llm, clock=clock)).dialect == "json_schema"
    assert clock.slept == [7.0]


def test_a_stop_ends_a_retry_wait():
    clock = FakeClock()
    clock.stop_at = clock.now + 0.1  # during the first backoff
    with OpenAIStandIn() as llm:
        llm.script("server_error", times=5)
        with pytest.raises(Stopped):
            ask(client_for(llm, clock=clock))
    assert llm.calls == 1


def test_a_stop_abandons_a_running_request():
    clock = Clock()
    with OpenAIStandIn() as llm:
        llm.script("slow", delay=120)
        client = client_for(llm, clock=clock)
        box: dict = {}

        def call():
            try:
                ask(client)
            except BaseException as exc:  # noqa: BLE001 - handed to the test
                box["exc"] = exc
        worker = threading.Thread(target=call)
        worker.start()
        while llm.in_flight == 0:  # the request is at the server
            threading.Event().wait(0.01)
        clock.stop("test")
        worker.join(timeout=30)
        assert not worker.is_alive()  # not waiting out the 120 s answer
    assert isinstance(box.get("exc"), Stopped)


# ---------------------------------------------------------------- the rewriter

def pr(number: int, title: str = "Add the parser") -> PullRequest:
    patch = "@@ -0,0 +1,12 @@\n" + "".join(f"+value_{i} = compute({i}, {number})\n"
                                            for i in range(12))
    return PullRequest(repo="acme/x", number=number, title=f"{title} {number}",
                       body="Why it is needed.", author="dev", merged_at=None,
                       base_sha="a" * 40, merge_sha="b" * 40,
                       url=f"https://github.com/acme/x/pull/{number}",
                       files=(FileChange(f"src/p{number}.py", "added", 12, 0, patch=patch),
                              FileChange(f"src/q{number}.py", "added", 12, 0, patch=patch)))


def test_a_truncated_answer_is_recorded_without_a_repair_turn():
    def responder(request):
        return {"content": '{"title": "Fix', "finish_reason": "length"}
    with OpenAIStandIn(responder=responder) as llm:
        rw = LLMRewriter(client_for(llm), load_rules(), concurrency=1)
        result = rw.rewrite_one(pr(1))
    assert isinstance(result, Failure) and result.reason == "truncated"
    assert llm.calls == 1 and "finish_reason=length" in result.message


def test_max_tokens_follows_the_schema_and_can_be_set():
    assert default_max_tokens(SCHEMA) == min(max_tokens_for(SCHEMA), 4096)
    with OpenAIStandIn() as llm:
        LLMRewriter(client_for(llm), load_rules()).rewrite_one(pr(1))
        LLMRewriter(client_for(llm), load_rules(), max_tokens=300).rewrite_one(pr(2))
        asked = [r["max_tokens"] for r in llm.chat_requests]
    assert asked[0] == default_max_tokens(SCHEMA) and asked[-1] == 300


def test_every_list_and_string_of_the_task_schema_is_bounded():
    assert max_json_chars(SCHEMA) > 0  # raises on anything unbounded

    def walk(node):
        if isinstance(node, dict):
            if node.get("type") == "string" and "enum" not in node:
                assert 1 <= node["maxLength"] <= 1000  # llama.cpp's grammar fails past ~1000
            if node.get("type") == "array":
                assert node["maxItems"] <= 60
            for v in node.values():
                walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)
    walk(SCHEMA)
    subtask = SCHEMA["$defs"]["Subtask"]["properties"]
    assert SCHEMA["properties"]["subtasks"]["minItems"] == 2
    assert SCHEMA["properties"]["subtasks"]["maxItems"] == 6
    assert all(subtask[k]["maxItems"] == 8
               for k in ("constraints", "deliverables", "acceptance_criteria"))


def test_stopped_goes_up_out_of_rewrite_one():
    clock = FakeClock()
    clock.stop("test")
    with OpenAIStandIn() as llm:
        with pytest.raises(Stopped):
            LLMRewriter(client_for(llm, clock=clock), load_rules()).rewrite_one(pr(1))


def test_faults_depend_on_the_request_not_on_arrival_order():
    """Concurrent PRs, seeded faults: the same outcome per PR on every run."""
    kinds = ["malformed", "refusal", "server_error", "invalid_schema", "rate_limit"]

    def outcomes():
        with OpenAIStandIn(fault_rate=0.5, seed=5, kinds=kinds,
                           fault_params={"rate_limit": {"retry_after": 1}}) as llm:
            rw = LLMRewriter(client_for(llm), load_rules(), concurrency=8)
            results = rw.rewrite_many([pr(n) for n in range(1, 17)], {})
        return [(r.provenance.pr_number, "task") if isinstance(r, Task)
                else (r.number, r.reason) for r in results]
    first = outcomes()
    assert first == outcomes()
    assert {o for _, o in first} - {"task"}  # some PRs failed, some did not
    assert "task" in {o for _, o in first}
