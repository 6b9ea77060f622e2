"""The OpenAI-compatible stand-in server, exercised through the real ``openai`` SDK."""

from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor
from enum import Enum
from typing import Any, Literal

import httpx
import openai
import pytest
from openai.lib._pydantic import to_strict_json_schema
from pydantic import BaseModel, Field, ValidationError

try:  # tests/ on sys.path (pytest's default rootdir-less import mode)
    from standins.json_example import example_from_schema
    from standins.openai_server import (
        LLAMACPP_RESPONSE_FORMAT_ERROR,
        LLAMA_CPP_PYTHON_VALIDATION_ERROR,
        REFUSAL_TEXT,
        OpenAIStandIn,
        openai_standin,  # noqa: F401 - the fixture, used by name
        task_responder,
    )
except ModuleNotFoundError:  # tests/ is a package
    from tests.standins.json_example import example_from_schema
    from tests.standins.openai_server import (
        LLAMACPP_RESPONSE_FORMAT_ERROR,
        LLAMA_CPP_PYTHON_VALIDATION_ERROR,
        REFUSAL_TEXT,
        OpenAIStandIn,
        openai_standin,  # noqa: F401 - the fixture, used by name
        task_responder,
    )

KEY = "sk-standin-test-0123456789abcdef"
MODEL = "gpt-4o-mini"


class Difficulty(str, Enum):
    easy = "easy"
    medium = "medium"
    hard = "hard"


class FileChange(BaseModel):
    path: str
    change: Literal["add", "modify", "delete"]
    lines_changed: int = Field(ge=1, le=2000)


class Milestone(BaseModel):
    name: str
    acceptance_criteria: list[str] = Field(min_length=2, max_length=4)
    files: list[FileChange] = Field(min_length=1)


class TaskSpec(BaseModel):
    title: str
    summary: str = Field(min_length=10)
    difficulty: Difficulty
    confidence: float = Field(ge=0.0, le=1.0)
    milestones: list[Milestone] = Field(min_length=3, max_length=6)
    labels: list[str] = Field(default_factory=list, max_length=3)
    notes: str | None = None


SCHEMA = TaskSpec.model_json_schema()


def messages(title: str = "Fix the flaky queue test", extra: str = "") -> list[dict[str, str]]:
    return [
        {"role": "system", "content": "You turn pull requests into tasks. Answer in JSON."},
        {"role": "user", "content": f"Title: {title}\nRepository: acme/widgets\n{extra}"},
    ]


def json_schema_format(schema: dict[str, Any] = SCHEMA, strict: bool = False) -> dict[str, Any]:
    return {"type": "json_schema", "json_schema": {"name": "TaskSpec", "schema": schema, "strict": strict}}


def ask(client: openai.OpenAI, **kwargs: Any) -> Any:
    kwargs.setdefault("model", MODEL)
    kwargs.setdefault("messages", messages())
    kwargs.setdefault("response_format", json_schema_format())
    return client.chat.completions.create(**kwargs)


@pytest.fixture
def llm() -> Any:
    with OpenAIStandIn(api_key=KEY, models=[MODEL, "gpt-4o"]) as server:
        yield server


@pytest.fixture
def client(llm: OpenAIStandIn) -> openai.OpenAI:
    return openai.OpenAI(base_url=llm.base_url, api_key=KEY, max_retries=0, timeout=10)


# -- dialects ------------------------------------------------------------------


def test_openai_accepts_json_schema_and_answers_a_valid_instance(llm: OpenAIStandIn, client: openai.OpenAI) -> None:
    completion = ask(client, temperature=0, seed=7, max_completion_tokens=4000)
    assert completion.object == "chat.completion"
    assert completion.model == MODEL and completion.system_fingerprint
    choice = completion.choices[0]
    assert choice.finish_reason == "stop" and choice.message.role == "assistant"
    assert choice.message.refusal is None
    task = TaskSpec.model_validate_json(choice.message.content)
    assert task.title == "Fix the flaky queue test"
    assert len(task.milestones) == 3 and all(len(m.acceptance_criteria) >= 2 for m in task.milestones)
    prompt_chars = sum(len(m["content"]) for m in messages())
    assert completion.usage.prompt_tokens == -(-prompt_chars // 4)
    assert completion.usage.completion_tokens == -(-len(choice.message.content) // 4)
    assert completion.usage.total_tokens == completion.usage.prompt_tokens + completion.usage.completion_tokens


def test_openai_headers_and_sdk_parse_helper(client: openai.OpenAI) -> None:
    raw = client.chat.completions.with_raw_response.create(
        model=MODEL, messages=messages(), response_format=json_schema_format())
    assert raw.headers["x-request-id"].startswith("req_")
    assert int(raw.headers["openai-processing-ms"]) >= 0
    assert int(raw.headers["x-ratelimit-remaining-requests"]) > 0
    # The SDK's structured-output helper sends a strict schema; the stand-in accepts it.
    parsed = client.chat.completions.parse(model=MODEL, messages=messages(), response_format=TaskSpec)
    assert isinstance(parsed.choices[0].message.parsed, TaskSpec)


def test_openai_rejects_non_strict_schema_sent_as_strict(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        ask(client, response_format=json_schema_format(strict=True))
    error = info.value.body
    assert error["param"] == "response_format" and error["code"] is None
    assert error["message"].startswith("Invalid schema for response_format 'TaskSpec': In context=(")
    assert "'additionalProperties' is required to be supplied and to be false" in error["message"]
    strict = to_strict_json_schema(TaskSpec)
    TaskSpec.model_validate_json(ask(client, response_format=json_schema_format(strict, strict=True))
                                 .choices[0].message.content)


def test_openai_json_object_needs_the_word_json(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError, match="must contain the word 'json'"):
        ask(client, messages=[{"role": "user", "content": "hello"}], response_format={"type": "json_object"})
    completion = ask(client, response_format={"type": "json_object"})
    assert json.loads(completion.choices[0].message.content) == {"answer": "Fix the flaky queue test"}


def test_llamacpp_rejects_json_schema_with_its_own_error_body() -> None:
    with OpenAIStandIn(dialect="llamacpp") as llm:
        client = llm.client(max_retries=0)
        with pytest.raises(openai.BadRequestError) as info:
            ask(client)
        assert info.value.status_code == 400
        assert info.value.response.json() == {"error": {
            "code": 400,
            "message": LLAMACPP_RESPONSE_FORMAT_ERROR.format("json_schema"),
            "type": "invalid_request_error",
        }}
        assert info.value.response.headers["server"] == "llama.cpp"
        assert llm.calls == 1 and llm.requests[0]["status"] == 400


def test_llamacpp_accepts_json_object_with_schema_and_plain_requests() -> None:
    with OpenAIStandIn(dialect="llamacpp") as llm:
        client = llm.client(max_retries=0)
        completion = ask(client, response_format={"type": "json_object", "schema": SCHEMA})
        TaskSpec.model_validate_json(completion.choices[0].message.content)
        plain = ask(client, response_format=None, messages=[{"role": "user", "content": "Say hi"}])
        assert plain.choices[0].message.content == "Sure. Here is my answer."
        # llama.cpp also serves the unprefixed path and /health.
        assert httpx.get(f"{llm.url}/health").json() == {"status": "ok"}


def test_llama_cpp_python_wraps_its_validation_error_in_a_500() -> None:
    """As the real server (llama-cpp-python 0.3.36) answers: a 500, not a 400."""
    with OpenAIStandIn(dialect="llama-cpp-python", api_key=KEY) as llm:
        client = llm.client(max_retries=0)
        with pytest.raises(openai.InternalServerError) as info:
            ask(client)
        body = info.value.response.json()
        assert body == {"error": {"message": LLAMA_CPP_PYTHON_VALIDATION_ERROR.format("json_schema"),
                                  "type": "internal_server_error", "param": None, "code": None}}
        assert body["error"]["message"].startswith("1 validation error:\n")
        completion = ask(client, model="whatever", response_format={"type": "json_object", "schema": SCHEMA})
        TaskSpec.model_validate_json(completion.choices[0].message.content)
        assert "x-ratelimit-limit-requests" not in llm.requests[-1]["headers"]
        wrong = httpx.post(f"{llm.base_url}/chat/completions", json={"messages": messages()},
                           headers={"Authorization": "Bearer nope"})
        assert (wrong.status_code, wrong.json()) == (401, {"detail": "Invalid API key"})
        broken = httpx.post(f"{llm.base_url}/chat/completions", content=b"{not json",
                            headers={"Authorization": f"Bearer {KEY}",
                                     "Content-Type": "application/json"})
        assert (broken.status_code, broken.text) == (500, "Internal Server Error")


def test_http_error_fault_sends_any_status_in_the_dialects_body() -> None:
    for dialect, status in (("openai", 403), ("llamacpp", 422), ("llama-cpp-python", 404)):
        with OpenAIStandIn(dialect=dialect) as llm:
            llm.script("http_error", status=status, message="nope")
            reply = httpx.post(f"{llm.base_url}/chat/completions",
                               json={"model": MODEL, "messages": messages()})
            assert reply.status_code == status and reply.json()["error"]["message"] == "nope"


def test_scripted_faults_can_match_a_request() -> None:
    with OpenAIStandIn() as llm:
        client = llm.client(max_retries=0)
        llm.script("refusal", match="Title: Second")
        assert ask(client, messages=messages("First")).choices[0].message.refusal is None
        assert ask(client, messages=messages("Second")).choices[0].message.refusal == REFUSAL_TEXT


def test_drawn_faults_depend_on_the_request_not_the_order() -> None:
    def served(titles: list[str]) -> dict[str, str | None]:
        with OpenAIStandIn(fault_rate=0.5, seed=9, kinds=["malformed", "refusal"]) as llm:
            client = llm.client(max_retries=0)
            for t in titles:
                ask(client, messages=messages(t))
            return {r["body"]["messages"][1]["content"]: r["fault"] for r in llm.requests}
    titles = [f"Change {i}" for i in range(12)]
    assert served(titles) == served(list(reversed(titles)))


@pytest.mark.parametrize("response_format", [{"type": "json_object"}, json_schema_format()])
def test_plain_rejects_structured_response_formats(response_format: dict[str, Any]) -> None:
    with OpenAIStandIn(dialect="plain") as llm:
        with pytest.raises(openai.BadRequestError) as info:
            ask(llm.client(max_retries=0), response_format=response_format)
        assert info.value.body["param"] == "response_format"
        assert info.value.body["type"] == "invalid_request_error"


def test_plain_answers_prose_wrapped_json_for_a_schema_in_the_prompt() -> None:
    prompt = f"Reply with JSON matching this schema.\n<schema>\n{json.dumps(SCHEMA)}\n</schema>"
    with OpenAIStandIn(dialect="plain") as llm:
        client = llm.client(max_retries=0)
        content = ask(client, messages=messages(extra=prompt), response_format={"type": "text"}) \
            .choices[0].message.content
        with pytest.raises(json.JSONDecodeError):
            json.loads(content)
        assert content.startswith("Here is") and "```json\n" in content
        body = content.split("```json\n", 1)[1].split("```", 1)[0]
        assert TaskSpec.model_validate_json(body).title == "Fix the flaky queue test"


@pytest.mark.parametrize("openai_standin", [{"dialect": "llamacpp", "models": ["qwen"]}], indirect=True)
def test_fixture_is_parametrizable(openai_standin: OpenAIStandIn) -> None:
    models = openai_standin.client(max_retries=0).models.list()
    assert [m.id for m in models.data] == ["qwen"]
    with pytest.raises(openai.NotFoundError):
        ask(openai_standin.client(max_retries=0), model="llama", response_format=None)


# -- default responder -------------------------------------------------------------


def test_task_responder_is_deterministic_and_varies_with_the_request() -> None:
    request = {"model": MODEL, "messages": messages("Add retries"), "response_format": json_schema_format()}
    first, second = task_responder(request), task_responder(json.loads(json.dumps(request)))
    assert first == second
    other = task_responder({**request, "messages": messages("Drop Python 3.8")})
    assert other != first and TaskSpec.model_validate_json(other).title == "Drop Python 3.8"


def test_example_generator_covers_refs_unions_and_bounds() -> None:
    class Node(BaseModel):
        name: str
        children: list[Node] = []
        parent: Node | None = None

    class Everything(BaseModel):
        tree: Node
        choice: int | str
        maybe: list[int] | None
        pair: tuple[int, Literal["x"]]
        score: int = Field(gt=3, le=10, multiple_of=5)
        ratio: float = Field(gt=0, lt=0.1)
        sha: str = Field(pattern=r"^[0-9a-f]{7,40}$")
        code: str = Field(min_length=5, max_length=5)
        homepage: str
        mapping: dict[str, FileChange]

    instance = example_from_schema(Everything.model_json_schema(), {"title": "T"})
    parsed = Everything.model_validate(instance)
    assert parsed.tree.children == [] and parsed.score == 5 and len(parsed.code) == 5
    assert 0 < parsed.ratio < 0.1 and parsed.homepage.startswith("https://")


# -- faults -----------------------------------------------------------------------


def test_malformed_answers_are_not_json(llm: OpenAIStandIn, client: openai.OpenAI) -> None:
    llm.script("malformed").script("malformed", style="prose")
    for _ in range(2):
        content = ask(client).choices[0].message.content
        with pytest.raises(json.JSONDecodeError):
            json.loads(content)
    assert TaskSpec.model_validate_json(ask(client).choices[0].message.content)
    assert llm.faults_served == ["malformed", "malformed"]


def test_truncated_answer_finishes_with_length(llm: OpenAIStandIn, client: openai.OpenAI) -> None:
    full = ask(client).choices[0].message.content
    llm.script("truncated", at=0.3)
    choice = ask(client).choices[0]
    assert choice.finish_reason == "length"
    assert full.startswith(choice.message.content) and len(choice.message.content) < len(full)
    # A small max_tokens cuts the answer the same way.
    capped = ask(client, max_tokens=10).choices[0]
    assert capped.finish_reason == "length" and len(capped.message.content) == 40


def test_refusal_sets_message_refusal(llm: OpenAIStandIn, client: openai.OpenAI) -> None:
    llm.script("refusal")
    choice = ask(client).choices[0]
    assert choice.message.content is None
    assert choice.message.refusal == REFUSAL_TEXT and choice.finish_reason == "stop"


def test_rate_limit_is_a_429_with_retry_after(llm: OpenAIStandIn, client: openai.OpenAI) -> None:
    llm.script("rate_limit", retry_after=2)
    with pytest.raises(openai.RateLimitError) as info:
        ask(client)
    assert info.value.status_code == 429
    assert info.value.response.headers["retry-after"] == "2"
    assert info.value.body["code"] == "rate_limit_exceeded" and info.value.body["type"] == "requests"
    assert info.value.body["message"].startswith(f"Rate limit reached for {MODEL}")


def test_sdk_retries_honour_retry_after(llm: OpenAIStandIn) -> None:
    llm.script("server_error", status=503).script("rate_limit", retry_after=0.05)
    client = openai.OpenAI(base_url=llm.base_url, api_key=KEY, max_retries=2)
    TaskSpec.model_validate_json(ask(client).choices[0].message.content)
    assert llm.calls == 3 and [r["status"] for r in llm.requests] == [503, 429, 200]


def test_server_error_is_a_500_with_an_error_body(llm: OpenAIStandIn, client: openai.OpenAI) -> None:
    llm.script("server_error")
    with pytest.raises(openai.InternalServerError) as info:
        ask(client)
    assert info.value.status_code == 500
    assert info.value.body["type"] == "server_error" and info.value.body["message"]


def test_slow_answers_late_and_trips_client_timeouts(llm: OpenAIStandIn, client: openai.OpenAI) -> None:
    llm.script("slow", times=2, delay=0.3)
    started = time.monotonic()
    TaskSpec.model_validate_json(ask(client).choices[0].message.content)
    assert time.monotonic() - started >= 0.3
    with pytest.raises(openai.APITimeoutError):
        ask(client.with_options(timeout=0.1))


def test_invalid_schema_is_json_missing_a_required_field(llm: OpenAIStandIn, client: openai.OpenAI) -> None:
    llm.script("invalid_schema")
    content = ask(client).choices[0].message.content
    data = json.loads(content)
    assert "title" not in data and "milestones" in data
    with pytest.raises(ValidationError):
        TaskSpec.model_validate(data)


def test_garbage_is_a_200_html_page(llm: OpenAIStandIn, client: openai.OpenAI) -> None:
    llm.script("garbage", times=2)
    raw = client.chat.completions.with_raw_response.create(model=MODEL, messages=messages())
    assert raw.http_response.status_code == 200
    assert raw.headers["content-type"].startswith("text/html")
    assert "<html>" in raw.http_response.text
    assert isinstance(ask(client), str)  # the SDK hands back the text it could not parse


def test_disconnect_is_a_connection_error(llm: OpenAIStandIn, client: openai.OpenAI) -> None:
    llm.script("disconnect")
    with pytest.raises(openai.APIConnectionError):
        ask(client)
    assert ask(client).choices[0].finish_reason == "stop"


def test_faults_skip_rejected_requests() -> None:
    with OpenAIStandIn(dialect="llamacpp") as llm:
        client = llm.client(max_retries=0)
        llm.script("refusal")
        with pytest.raises(openai.BadRequestError):
            ask(client)  # capability probe, rejected: the fault stays queued
        assert [f.kind for f in llm.pending_faults] == ["refusal"]
        assert ask(client, response_format={"type": "json_object", "schema": SCHEMA}) \
            .choices[0].message.content == "I'm sorry, I can't help with that."


def test_random_faults_are_seeded() -> None:
    def run(llm: OpenAIStandIn) -> list[str | None]:
        client = llm.client(max_retries=0)
        for _ in range(30):
            try:
                ask(client)
            except openai.APIError:
                pass
        return [r["fault"] for r in llm.requests]

    kinds = ["malformed", "refusal", "server_error"]
    with OpenAIStandIn(fault_rate=0.5, seed=3, kinds=kinds) as llm:
        first = run(llm)
        llm.reset()
        assert run(llm) == first
    assert set(first) == {None, *kinds}


def test_responder_overrides(llm: OpenAIStandIn, client: openai.OpenAI) -> None:
    answers: list[Any] = ["hello", {"content": "cut", "finish_reason": "length"},
                          {"status": 503, "body": {"error": {"message": "overloaded", "type": "server_error"}}}]
    llm.responder = lambda request: answers.pop(0)
    assert ask(client).choices[0].message.content == "hello"
    assert ask(client).choices[0].finish_reason == "length"
    with pytest.raises(openai.InternalServerError, match="overloaded"):
        ask(client)


def test_unknown_fault_kind_is_refused(llm: OpenAIStandIn) -> None:
    with pytest.raises(ValueError):
        llm.script("explode")
    with pytest.raises(ValueError):
        llm.script("slow", dealy=1)


# -- latency, concurrency, auth, recording -------------------------------------------------


def test_latency_with_concurrent_requests_overlaps() -> None:
    with OpenAIStandIn(latency=0.2) as llm:
        client = llm.client(max_retries=0)
        with ThreadPoolExecutor(max_workers=10) as pool:
            results = list(pool.map(lambda i: ask(client, messages=messages(f"Task {i}")), range(10)))
        assert [TaskSpec.model_validate_json(r.choices[0].message.content).title for r in results] == \
            [f"Task {i}" for i in range(10)]
        assert llm.calls == 10
        assert llm.max_concurrency >= 5  # they were in flight together, not queued


def test_wrong_or_missing_key_is_a_401_that_never_echoes_the_key(llm: OpenAIStandIn) -> None:
    wrong = "sk-wrong-key-that-must-not-leak-42"
    bad = openai.OpenAI(base_url=llm.base_url, api_key=wrong, max_retries=0)
    with pytest.raises(openai.AuthenticationError) as info:
        ask(bad)
    body = info.value.response.json()["error"]
    assert body["code"] == "invalid_api_key" and body["type"] == "invalid_request_error" and body["param"] is None
    assert body["message"].startswith("Incorrect API key provided: sk-")
    assert wrong not in info.value.response.text and wrong[-4:] in body["message"]
    missing = httpx.post(f"{llm.base_url}/chat/completions", json={"model": MODEL, "messages": messages()})
    assert missing.status_code == 401 and missing.json()["error"]["code"] == "invalid_api_key"


def test_unknown_model_is_a_404(client: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as info:
        ask(client, model="gpt-9")
    assert info.value.body == {"message": "The model `gpt-9` does not exist or you do not have access to it.",
                               "type": "invalid_request_error", "param": None, "code": "model_not_found"}
    assert [m.id for m in client.models.list().data] == [MODEL, "gpt-4o"]


def test_requests_are_recorded_with_the_key_redacted(llm: OpenAIStandIn, client: openai.OpenAI) -> None:
    ask(client, temperature=0.2, seed=1)
    client.models.list()
    assert llm.calls == 1 and len(llm.requests) == 2
    record = llm.requests[0]
    assert record["path"] == "/v1/chat/completions" and record["status"] == 200
    assert record["headers"]["authorization"] == "<redacted>"
    assert record["body"]["temperature"] == 0.2 and record["body"]["seed"] == 1
    assert llm.chat_requests == [record["body"]]
    assert KEY not in repr(llm.requests)
    llm.reset()
    assert llm.requests == [] and llm.calls == 0
