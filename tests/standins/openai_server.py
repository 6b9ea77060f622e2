"""A local stand-in for OpenAI-compatible chat completion endpoints.

:class:`OpenAIStandIn` is a real HTTP/1.1 server (``http.server``, one thread
per connection, keep-alive, exact ``Content-Length``) on 127.0.0.1 that the
official ``openai`` SDK can talk to::

    with OpenAIStandIn(dialect="llamacpp", api_key="sk-test") as llm:
        client = OpenAI(base_url=llm.base_url, api_key="sk-test", max_retries=0)
        llm.script("rate_limit", retry_after=1)
        ...

Endpoints: ``POST /v1/chat/completions``, ``GET /v1/models``,
``GET /v1/models/{id}`` (and, for the llama.cpp dialect, ``/chat/completions``,
``/models`` and ``/health`` without the prefix).

Dialects decide what ``response_format`` is accepted and what errors look like:

``"openai"``
    ``text``, ``json_object`` and ``json_schema`` (``{name, schema, strict}``).
    With ``openai_validation`` (default on) it also enforces two real API
    rules: ``json_object`` needs the word "json" in the messages, and a
    ``strict`` schema needs ``additionalProperties: false`` and every property
    listed in ``required`` on every object. Errors use OpenAI's body
    ``{"error": {"message", "type", "param", "code"}}``.
``"llamacpp"``
    Like a llama.cpp server that predates ``json_schema`` support: that type is
    rejected with llama.cpp's own 400 body ``{"error": {"code", "message",
    "type"}}``; ``{"type": "json_object", "schema": {...}}`` is accepted.
    ``/v1/models`` needs no key, as in llama.cpp.
``"plain"``
    Any ``response_format`` other than ``text`` gets a 400: the client must put
    the schema in the prompt (between ``<schema>`` and ``</schema>``) and dig
    the JSON out of a prose answer.
``"llama-cpp-python"``
    Like llama-cpp-python's ``python -m llama_cpp.server`` (0.3.x), as measured
    against the real server: a ``response_format`` type other than ``text`` or
    ``json_object`` fails its request validation, which that server wraps as an
    HTTP **500** whose message is the multi-line validation error and a
    traceback line (:data:`LLAMA_CPP_PYTHON_VALIDATION_ERROR`);
    ``{"type": "json_object", "schema": {...}}`` is accepted; a wrong key is a
    401 ``{"detail": "Invalid API key"}``; any model name is served; a body that
    is not JSON is a plain-text 500; answers carry no rate-limit headers and no
    ``refusal``.

Answers come from a *responder* ``(request_body) -> str | dict | None``; the
default :func:`task_responder` returns an example instance of the requested
schema. Faults are scripted with :meth:`OpenAIStandIn.script` (FIFO, or only
for requests whose text holds ``match``) or drawn at a seeded rate
(``fault_rate``, ``seed``, ``kinds``); see :data:`FAULT_KINDS`. A drawn fault
depends only on the seed, the request's key (its ``Title:`` line, system prompt
and number of messages) and how many requests with that key came before, never
on the order in which concurrent requests arrive.
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
import random
import re
import secrets
import threading
import time
import traceback
from collections import Counter, deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import urlsplit

import pytest

from .json_example import example_from_schema, resolve_ref, violate_schema

if TYPE_CHECKING:
    from openai import OpenAI

__all__ = [
    "DIALECTS",
    "FAULT_KINDS",
    "LLAMACPP_RESPONSE_FORMAT_ERROR",
    "LLAMA_CPP_PYTHON_VALIDATION_ERROR",
    "REFUSAL_TEXT",
    "Fault",
    "OpenAIStandIn",
    "find_schema",
    "openai_standin",
    "request_context",
    "request_key",
    "task_responder",
]

Dialect = Literal["openai", "llamacpp", "plain", "llama-cpp-python"]
Responder = Callable[[dict[str, Any]], "str | dict[str, Any] | None"]

DIALECTS: tuple[str, ...] = ("openai", "llamacpp", "plain", "llama-cpp-python")

#: Every fault kind and the parameters it takes (all optional).
FAULT_KINDS: dict[str, tuple[str, ...]] = {
    "malformed": ("style", "content"),  # style: "broken" (default) | "prose"
    "truncated": ("at",),  # fraction of the answer kept, default 0.5
    "refusal": ("message",),
    "rate_limit": ("retry_after", "scope"),  # seconds (default 1); "requests" | "tokens"
    "server_error": ("status", "message"),  # default 500
    "slow": ("delay",),  # seconds (default 1.0), then a normal answer
    "invalid_schema": ("drop",),  # name of the field to drop
    "garbage": ("body", "content_type", "status"),  # default: nginx HTML page, 200
    "disconnect": (),  # close the connection without answering
    "http_error": ("status", "message", "retry_after"),  # any status, the dialect's error body
}

REFUSAL_TEXT = "I'm sorry, I can't help with that."
DEFAULT_MODELS: tuple[str, ...] = ("gpt-4o-mini",)
GARBAGE_HTML = (
    "<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n"
    "<center><h1>502 Bad Gateway</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n"
)
LLAMACPP_RESPONSE_FORMAT_ERROR = 'response_format type must be one of "text" or "json_object", but got: {}'
#: What llama-cpp-python 0.3.36's server answers (HTTP 500) for ``response_format``
#: ``{"type": "json_schema", ...}``, copied from the real server (its path shortened).
LLAMA_CPP_PYTHON_VALIDATION_ERROR = (
    "1 validation error:\n  {{'type': 'literal_error', 'loc': ('body', 'response_format', 'type'), "
    "'msg': \"Input should be 'text' or 'json_object'\", 'input': '{}', "
    "'ctx': {{'expected': \"'text' or 'json_object'\"}}}}\n\n"
    "  File \"/usr/lib/python3/site-packages/llama_cpp/server/app.py\", line 376, in "
    "create_chat_completion\n    POST /v1/chat/completions")
_RATE_LIMIT_REQUESTS = 10_000
_RATE_LIMIT_TOKENS = 2_000_000
_SCHEMA_MARKERS = re.compile(r"<schema>\s*(.*?)\s*</schema>", re.DOTALL | re.IGNORECASE)
_FENCE = re.compile(r"```(?:json)?\s*(.*?)```", re.DOTALL)
_CONTEXT_LINE = re.compile(r"^\s*([A-Za-z][A-Za-z0-9 _-]{0,40}):[ \t]+(\S.*?)\s*$", re.MULTILINE)
_REDACTED_HEADERS = frozenset({"authorization", "api-key", "x-api-key", "proxy-authorization"})


# ---------------------------------------------------------------------------
# Request helpers and the default responder
# ---------------------------------------------------------------------------


def _message_text(message: Mapping[str, Any]) -> str:
    """The text of a chat message (string content or a list of text parts)."""
    content = message.get("content")
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(
            part.get("text", "") if isinstance(part, Mapping) else str(part) for part in content
        )
    return ""


def estimate_tokens(text: str) -> int:
    """OpenAI-ish token estimate: ``ceil(chars / 4)``."""
    return math.ceil(len(text) / 4)


def find_schema(request: Mapping[str, Any]) -> dict[str, Any] | None:
    """The JSON schema a request asks for, if any.

    Looks at ``response_format.json_schema.schema``, then
    ``response_format.schema`` (llama.cpp's ``json_object`` form), then the
    last message containing ``<schema>...</schema>`` (optionally fenced).
    """
    fmt = request.get("response_format")
    if isinstance(fmt, Mapping):
        wrapper = fmt.get("json_schema")
        if isinstance(wrapper, Mapping) and isinstance(wrapper.get("schema"), Mapping):
            return dict(wrapper["schema"])
        if isinstance(fmt.get("schema"), Mapping):
            return dict(fmt["schema"])
    for message in reversed(request.get("messages") or []):
        if not isinstance(message, Mapping):
            continue
        for match in reversed(_SCHEMA_MARKERS.findall(_message_text(message))):
            fenced = _FENCE.search(match)
            try:
                schema = json.loads(fenced.group(1) if fenced else match)
            except json.JSONDecodeError:
                continue
            if isinstance(schema, dict):
                return schema
    return None


def request_context(request: Mapping[str, Any]) -> dict[str, str]:
    """``Key: value`` lines of the last user message (first occurrence wins).

    ``Title: Fix the flaky queue test`` becomes ``{"title": "Fix the flaky
    queue test"}``; :func:`task_responder` uses these to vary its answers.
    """
    users = [m for m in request.get("messages") or [] if isinstance(m, Mapping) and m.get("role") == "user"]
    if not users:
        return {}
    context: dict[str, str] = {}
    for key, value in _CONTEXT_LINE.findall(_message_text(users[-1])):
        context.setdefault(re.sub(r"[^a-z0-9]+", "_", key.lower()).strip("_"), value)
    return context


def request_key(request: Mapping[str, Any]) -> str:
    """What identifies a request across retries: the ``Title:`` line of its first user
    message (else that message's start), its system prompt and its number of messages. (The
    first user message holds the PR; a repair turn's last message is the same for every PR.)"""
    messages = [m for m in request.get("messages") or [] if isinstance(m, Mapping)]
    users = [m for m in messages if m.get("role") == "user"]
    system = next((_message_text(m) for m in messages if m.get("role") == "system"), "")
    first = {"messages": users[:1]}
    basis = request_context(first).get("title") or (_message_text(users[0])[:500] if users else "")
    digest = hashlib.sha256(f"{system}\x00{basis}\x00{len(messages)}".encode()).hexdigest()
    return digest[:16]


def _response_type(request: Mapping[str, Any]) -> str:
    fmt = request.get("response_format")
    if isinstance(fmt, Mapping):
        return str(fmt.get("type") or "text")
    return "text"


def _wrap_in_prose(json_text: str) -> str:
    """What a chatty model does without JSON mode: prose around a fence."""
    return f"Here is the result you asked for.\n\n```json\n{json_text}\n```\n\nLet me know if anything should change."


def _extract_json(text: str) -> Any:
    """Best-effort JSON out of an answer (bare, fenced or embedded); None if none."""
    candidates = [text, *_FENCE.findall(text)]
    start, end = text.find("{"), text.rfind("}")
    if 0 <= start < end:
        candidates.append(text[start : end + 1])
    for candidate in candidates:
        try:
            return json.loads(candidate)
        except json.JSONDecodeError:
            continue
    return None


def task_responder(request: dict[str, Any]) -> str:
    """Default responder: a deterministic JSON instance of the requested schema.

    With JSON mode (``json_object``/``json_schema``) the answer is bare JSON;
    in text mode (no ``response_format``) it is wrapped in prose and a
    ```` ```json ```` fence, like a chat model would. String fields named like
    a ``Key: value`` line of the last user message take that value, and a
    ``Title:`` line is woven into the other strings. Without any schema the
    answer is ``{"answer": ...}`` in JSON mode and a sentence in text mode.
    """
    schema = find_schema(request)
    context = request_context(request)
    json_mode = _response_type(request) in ("json_object", "json_schema")
    if schema is not None:
        instance: Any = example_from_schema(schema, context)
    elif json_mode:
        instance = {"answer": context.get("title", "ok")}
    else:
        title = context.get("title")
        return f"Sure. Here is my answer about {title}." if title else "Sure. Here is my answer."
    text = json.dumps(instance, indent=2, ensure_ascii=False)
    return text if json_mode else _wrap_in_prose(text)


# ---------------------------------------------------------------------------
# Faults, replies and error bodies
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Fault:
    """One scripted misbehaviour; ``params`` as listed in :data:`FAULT_KINDS`."""

    kind: str
    params: Mapping[str, Any] = field(default_factory=dict)
    match: str | None = None  # only for requests whose message text holds this


@dataclass
class _Reply:
    status: int
    body: bytes
    content_type: str = "application/json"
    headers: dict[str, str] = field(default_factory=dict)
    disconnect: bool = False

    @classmethod
    def of_json(cls, status: int, payload: Any, headers: Mapping[str, str] | None = None) -> _Reply:
        return cls(status, json.dumps(payload).encode(), "application/json", dict(headers or {}))


class _PlainReply(Exception):
    """Raised while handling a request to answer with this exact reply."""

    def __init__(self, reply: _Reply) -> None:
        super().__init__(reply.status)
        self.reply = reply


class _HTTPError(Exception):
    """Raised while handling a request to answer with an error body."""

    def __init__(self, status: int, message: str, *, type: str | None = None,
                 param: str | None = None, code: str | None = None,
                 headers: Mapping[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.message = status, message
        self.type, self.param, self.code = type, param, code
        self.headers = dict(headers or {})


_LLAMACPP_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    501: "not_supported_error",
    503: "unavailable_error",
}


def _mask_key(key: str) -> str:
    """Mask an API key the way OpenAI's 401 message does, never echoing it whole."""
    if len(key) <= 8:
        return "*" * len(key)
    return key[:3] + "*" * (len(key) - 7) + key[-4:]


# ---------------------------------------------------------------------------
# The server
# ---------------------------------------------------------------------------


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    request_queue_size = 256
    standin: OpenAIStandIn


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body go out at once: no 40 ms delayed-ACK stalls
    server: _Server

    def do_GET(self) -> None:  # noqa: N802 - http.server naming
        self._dispatch("GET")

    def do_POST(self) -> None:  # noqa: N802
        self._dispatch("POST")

    def do_DELETE(self) -> None:  # noqa: N802
        self._dispatch("DELETE")

    def _dispatch(self, method: str) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length > 0 else b""
        standin = self.server.standin
        try:
            reply = standin._route(method, self.path, self.headers, raw)
        except Exception:  # a bug here or in a responder: make it visible
            standin.errors.append(traceback.format_exc())
            reply = _Reply.of_json(500, {"error": {"message": "stand-in failure:\n" + traceback.format_exc(),
                                                "type": "server_error", "param": None, "code": None}})
        if reply.disconnect:
            self.close_connection = True
            return
        self.send_response(reply.status)
        for name, value in reply.headers.items():
            self.send_header(name, value)
        self.send_header("Content-Type", reply.content_type)
        self.send_header("Content-Length", str(len(reply.body)))
        self.end_headers()
        self.wfile.write(reply.body)

    def version_string(self) -> str:
        return self.server.standin.server_header

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - keep the test output quiet
        pass


class OpenAIStandIn:
    """An OpenAI-compatible chat completions server on 127.0.0.1 (see module doc).

    Args:
        dialect: ``"openai"``, ``"llamacpp"`` or ``"plain"``.
        responder: ``(request_body) -> str | dict | None``. A ``str`` is the
            assistant content. A ``dict`` overrides the answer: keys
            ``content``, ``refusal``, ``finish_reason``, ``usage``, ``model``
            patch the completion; with ``status`` or ``body`` (plus optional
            ``headers``, ``content_type``) it is sent as the raw HTTP reply
            (``body`` a dict is JSON-encoded). ``None`` falls back to
            :func:`task_responder` (the default).
        latency: seconds every chat completion answer is delayed by.
        api_key: if set, ``Authorization: Bearer <api_key>`` is required.
        models: model ids served; others get 404 ``model_not_found``. ``None``
            accepts any model (and lists ``gpt-4o-mini``).
        fault_rate: probability that a valid request gets a random fault.
        seed: seed of the random fault draw.
        kinds: fault kinds drawn at random (default: every kind but ``slow``
            and ``disconnect``).
        fault_params: per-kind parameters for random faults.
        openai_validation: enforce OpenAI's json-word and strict-schema rules
            in the ``openai`` dialect.
    """

    def __init__(
        self,
        dialect: Dialect = "openai",
        responder: Responder | None = None,
        latency: float = 0.0,
        api_key: str | None = None,
        models: Sequence[str] | None = None,
        *,
        fault_rate: float = 0.0,
        seed: int = 0,
        kinds: Iterable[str] | None = None,
        fault_params: Mapping[str, Mapping[str, Any]] | None = None,
        openai_validation: bool = True,
    ) -> None:
        if dialect not in DIALECTS:
            raise ValueError(f"dialect must be one of {DIALECTS}, got {dialect!r}")
        kinds = tuple(kinds) if kinds is not None else tuple(
            k for k in FAULT_KINDS if k not in ("slow", "disconnect", "http_error")
        )
        for kind in (*kinds, *(fault_params or {})):
            if kind not in FAULT_KINDS:
                raise ValueError(f"unknown fault kind {kind!r}; known: {sorted(FAULT_KINDS)}")
        if not 0.0 <= fault_rate <= 1.0:
            raise ValueError("fault_rate must be within [0, 1]")
        self.dialect: str = dialect
        self.responder: Responder = responder or task_responder
        self.latency = float(latency)
        self.api_key = api_key
        self.models: tuple[str, ...] | None = tuple(models) if models is not None else None
        self.fault_rate = fault_rate
        self.seed = seed
        self.kinds = kinds
        self.fault_params = {k: dict(v) for k, v in (fault_params or {}).items()}
        self.openai_validation = openai_validation
        self.server_header = {"llamacpp": "llama.cpp", "llama-cpp-python": "uvicorn"}.get(
            dialect, "openai-standin/1.0")

        #: Every request: ``{"method", "path", "headers", "body", "status", "fault"}``;
        #: ``body`` is the parsed JSON (or ``None``), credentials are redacted.
        self.requests: list[dict[str, Any]] = []
        #: Number of ``POST .../chat/completions`` requests received.
        self.calls = 0
        #: Kinds of the faults served so far, in order.
        self.faults_served: list[str] = []
        #: Tracebacks of exceptions raised while answering (e.g. by a responder).
        self.errors: list[str] = []
        #: Chat completions being answered right now / the most at once.
        self.in_flight = 0
        self.max_concurrency = 0

        self._lock = threading.Lock()
        self._queue: deque[Fault] = deque()
        self._attempts: Counter[str] = Counter()  # request key -> requests seen
        self._stopping = threading.Event()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle -----------------------------------------------------------
    def start(self) -> OpenAIStandIn:
        """Bind a free port on 127.0.0.1 and serve from a background thread."""
        if self._server is not None:
            return self
        self._stopping.clear()
        server = _Server(("127.0.0.1", 0), _Handler)
        server.standin = self
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                                        name=f"openai-standin-{self.port}", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving; pending sleeps (latency, ``slow``) are cut short."""
        if self._server is None:
            return
        self._stopping.set()
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._server = self._thread = None

    def __enter__(self) -> OpenAIStandIn:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("stand-in is not running")
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        """``http://127.0.0.1:PORT`` (no ``/v1``)."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:PORT/v1``, what ``OpenAI(base_url=...)`` wants."""
        return f"{self.url}/v1"

    def client(self, **kwargs: Any) -> OpenAI:
        """An ``openai.OpenAI`` client for this server (``api_key`` defaults to ours)."""
        from openai import OpenAI

        kwargs.setdefault("api_key", self.api_key or "sk-standin")
        return OpenAI(base_url=self.base_url, **kwargs)

    # -- scripting and recording -----------------------------------------------
    def script(self, kind: str, times: int = 1, match: str | None = None,
               **params: Any) -> OpenAIStandIn:
        """Queue ``times`` faults of ``kind`` (FIFO) for the next valid chat requests.

        A scripted fault is consumed by the next chat completion request that
        passes authentication and validation, so capability probes rejected
        with 4xx never eat one. With ``match``, only a request whose message
        text contains ``match`` consumes it (deterministic under concurrency).
        Returns ``self`` for chaining.
        """
        if kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault kind {kind!r}; known: {sorted(FAULT_KINDS)}")
        unknown = set(params) - set(FAULT_KINDS[kind])
        if unknown:
            raise ValueError(f"fault {kind!r} takes {FAULT_KINDS[kind] or 'no parameters'}, got {sorted(unknown)}")
        with self._lock:
            self._queue.extend(Fault(kind, dict(params), match) for _ in range(times))
        return self

    @property
    def pending_faults(self) -> list[Fault]:
        with self._lock:
            return list(self._queue)

    @property
    def chat_requests(self) -> list[dict[str, Any]]:
        """Recorded chat completion request bodies (parsed), in arrival order."""
        with self._lock:
            return [r["body"] for r in self.requests if r["path"].endswith("/chat/completions")]

    def reset(self) -> None:
        """Forget recorded requests, counters, queued faults; reseed the fault draw."""
        with self._lock:
            self.requests.clear()
            self.faults_served.clear()
            self.errors.clear()
            self._queue.clear()
            self.calls = 0
            self.max_concurrency = self.in_flight
            self._attempts.clear()

    def _next_fault(self, body: Mapping[str, Any]) -> Fault | None:
        """The fault for this request: a scripted one it matches, else a draw that
        depends only on the seed, the request's key and its attempt number."""
        text = "\n".join(_message_text(m) for m in body.get("messages") or [] if isinstance(m, Mapping))
        key = request_key(body)
        with self._lock:
            attempt = self._attempts[key]
            self._attempts[key] += 1
            for i, fault in enumerate(self._queue):
                if fault.match is None or fault.match in text:
                    del self._queue[i]
                    return fault
        if self.fault_rate:
            rng = random.Random(f"{self.seed}|{key}|{attempt}")
            if rng.random() < self.fault_rate:
                kind = rng.choice(self.kinds)
                return Fault(kind, self.fault_params.get(kind, {}))
        return None

    def _sleep(self, seconds: float) -> None:
        if seconds > 0:
            self._stopping.wait(seconds)

    # -- routing -------------------------------------------------------------
    def _route(self, method: str, target: str, headers: Message, raw: bytes) -> _Reply:
        path = urlsplit(target).path.rstrip("/") or "/"
        record: dict[str, Any] = {
            "method": method,
            "path": path,
            "headers": {k.lower(): ("<redacted>" if k.lower() in _REDACTED_HEADERS else v)
                        for k, v in headers.items()},
            "body": None,
            "status": None,
            "fault": None,
        }
        if raw:
            try:
                record["body"] = json.loads(raw)
            except ValueError:
                record["raw_body"] = raw.decode("utf-8", "replace")
        is_chat = method == "POST" and path in self._paths("/chat/completions")
        with self._lock:
            self.requests.append(record)
            if is_chat:
                self.calls += 1
                self.in_flight += 1
                self.max_concurrency = max(self.max_concurrency, self.in_flight)
        started = time.monotonic()
        try:
            if is_chat:
                self._sleep(self.latency)
                reply = self._chat(headers, raw, record)
            elif method == "GET" and path in self._paths("/models"):
                self._check_auth(headers, public=self.dialect == "llamacpp")
                cards = [self._model_card(m) for m in self._listed_models()]
                reply = _Reply.of_json(200, {"object": "list", "data": cards})
            elif method == "GET" and path.startswith(self._paths("/models/")):
                self._check_auth(headers)
                model = path.split("/models/", 1)[1]
                self._check_model(model)
                reply = _Reply.of_json(200, self._model_card(model))
            elif method == "GET" and self.dialect == "llamacpp" and path in ("/health", "/v1/health"):
                reply = _Reply.of_json(200, {"status": "ok"})
            else:
                raise _HTTPError(404, f"Invalid URL ({method} {path})")
        except _HTTPError as err:
            reply = self._error_reply(err)
        except _PlainReply as plain:
            reply = plain.reply
        finally:
            if is_chat:
                with self._lock:
                    self.in_flight -= 1
        if not self.dialect in ("llamacpp", "llama-cpp-python") and not reply.disconnect:
            reply.headers.setdefault("x-request-id", "req_" + secrets.token_hex(16))
            reply.headers.setdefault("openai-processing-ms", str(int((time.monotonic() - started) * 1000)))
            reply.headers.setdefault("openai-version", "2020-10-01")
        record["status"] = None if reply.disconnect else reply.status
        return reply

    def _paths(self, suffix: str) -> tuple[str, ...]:
        return ("/v1" + suffix, suffix) if self.dialect == "llamacpp" else ("/v1" + suffix,)

    def _listed_models(self) -> tuple[str, ...]:
        return self.models if self.models is not None else DEFAULT_MODELS

    def _model_card(self, model: str) -> dict[str, Any]:
        owner = {"llamacpp": "llamacpp", "llama-cpp-python": "me"}.get(self.dialect, "system")
        return {"id": model, "object": "model", "created": 1_700_000_000, "owned_by": owner}

    def _error_reply(self, err: _HTTPError) -> _Reply:
        if self.dialect == "llama-cpp-python" and err.status == 401:
            return _Reply.of_json(401, {"detail": err.message}, err.headers)
        if self.dialect == "llamacpp":
            kind = err.type or _LLAMACPP_ERROR_TYPES.get(err.status, "server_error")
            body: dict[str, Any] = {"error": {"code": err.status, "message": err.message, "type": kind}}
        else:
            body = {"error": {"message": err.message, "type": err.type or "invalid_request_error",
                              "param": err.param, "code": err.code}}
        return _Reply.of_json(err.status, body, err.headers)

    # -- validation ----------------------------------------------------------
    def _check_auth(self, headers: Message, public: bool = False) -> None:
        if self.api_key is None or public:
            return
        auth = headers.get("Authorization") or ""
        scheme, _, token = auth.partition(" ")
        token = token.strip()
        if scheme.lower() == "bearer" and secrets.compare_digest(token.encode(), self.api_key.encode()):
            return
        if self.dialect == "llamacpp":
            raise _HTTPError(401, "Invalid API Key", type="authentication_error")
        if self.dialect == "llama-cpp-python":
            raise _HTTPError(401, "Invalid API key")
        if not token:
            message = ("You didn't provide an API key. You need to provide your API key in an Authorization "
                       "header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY), or as the password "
                       "field (with blank username) if you're accessing the API from your browser and are "
                       "prompted for a username. You can obtain an API key from "
                       "https://platform.openai.com/account/api-keys.")
        else:
            message = (f"Incorrect API key provided: {_mask_key(token)}. You can find your API key at "
                       "https://platform.openai.com/account/api-keys.")
        raise _HTTPError(401, message, type="invalid_request_error", code="invalid_api_key")

    def _check_model(self, model: str) -> None:
        if self.dialect == "llama-cpp-python":
            return  # that server answers with its one model whatever the name
        if self.models is not None and model not in self.models:
            raise _HTTPError(404, f"The model `{model}` does not exist or you do not have access to it.",
                             code="model_not_found")

    def _parse_chat(self, headers: Message, raw: bytes) -> dict[str, Any]:
        """Authenticate and validate a chat request; return its body."""
        self._check_auth(headers)
        try:
            body = json.loads(raw or b"null")
        except ValueError:
            body = None
        if not isinstance(body, dict) and self.dialect == "llama-cpp-python":
            raise _PlainReply(_Reply(500, b"Internal Server Error", "text/plain; charset=utf-8"))
        if not isinstance(body, dict):
            raise _HTTPError(400, "We could not parse the JSON body of your request. (HINT: This likely means "
                             "you aren't using your HTTP library correctly. The OpenAI API expects a JSON "
                             "payload, but what was sent was not valid JSON.)")
        if self.dialect in ("openai", "plain") and not body.get("model"):
            raise _HTTPError(400, "you must provide a model parameter")
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            if self.dialect == "llamacpp":
                raise _HTTPError(400, "'messages' is required")
            raise _HTTPError(400, "Missing required parameter: 'messages'.", param="messages",
                             code="missing_required_parameter")
        if body.get("stream"):
            raise _HTTPError(400, "The stand-in does not implement streaming.", param="stream",
                             code="unsupported_value")
        self._check_model(str(body.get("model", "")))
        n = body.get("n") or 1
        if self.dialect == "llamacpp" and n != 1:
            raise _HTTPError(400, "Only one completion choice is allowed")
        temperature = body.get("temperature")
        if self.dialect == "openai" and isinstance(temperature, (int, float)) and temperature > 2:
            raise _HTTPError(400, f"Invalid 'temperature': decimal above maximum value. Expected a value <= 2,"
                             f" but got {temperature} instead.", param="temperature", code="decimal_above_max_value")
        self._check_response_format(body)
        return body

    def _check_response_format(self, body: Mapping[str, Any]) -> None:
        fmt = body.get("response_format")
        if fmt is None:
            return
        kind = fmt.get("type", "") if isinstance(fmt, Mapping) else None
        if self.dialect == "llamacpp":
            if kind not in ("", "text", "json_object"):
                raise _HTTPError(400, LLAMACPP_RESPONSE_FORMAT_ERROR.format(kind), type="invalid_request_error")
            return
        if self.dialect == "llama-cpp-python":
            if kind not in ("text", "json_object"):
                raise _HTTPError(500, LLAMA_CPP_PYTHON_VALIDATION_ERROR.format(kind),
                                 type="internal_server_error")
            return
        if self.dialect == "plain":
            if kind != "text":
                raise _HTTPError(400, f"response_format type {kind!r} is not supported by this server; "
                                 "only 'text' is allowed.", param="response_format", code="unsupported_value")
            return
        # openai
        if not isinstance(fmt, Mapping) or not kind:
            raise _HTTPError(400, "Missing required parameter: 'response_format.type'.",
                             param="response_format.type", code="missing_required_parameter")
        if kind == "text":
            return
        if kind == "json_object":
            text = " ".join(_message_text(m) for m in body["messages"] if isinstance(m, Mapping))
            if self.openai_validation and "json" not in text.lower():
                raise _HTTPError(400, "'messages' must contain the word 'json' in some form, to use "
                                 "'response_format' of type 'json_object'.", param="messages")
            return
        if kind != "json_schema":
            raise _HTTPError(400, f"Invalid value: '{kind}'. Supported values are: 'json_object', "
                             "'json_schema', and 'text'.", param="response_format.type", code="invalid_value")
        wrapper = fmt.get("json_schema")
        if not isinstance(wrapper, Mapping):
            raise _HTTPError(400, "Missing required parameter: 'response_format.json_schema'.",
                             param="response_format.json_schema", code="missing_required_parameter")
        name = wrapper.get("name")
        if not name:
            raise _HTTPError(400, "Missing required parameter: 'response_format.json_schema.name'.",
                             param="response_format.json_schema.name", code="missing_required_parameter")
        schema = wrapper.get("schema")
        if self.openai_validation and wrapper.get("strict") and isinstance(schema, Mapping):
            problem = _strict_schema_problem(schema)
            if problem:
                raise _HTTPError(400, f"Invalid schema for response_format '{name}': {problem}",
                                 param="response_format")

    # -- chat completions ----------------------------------------------------
    def _chat(self, headers: Message, raw: bytes, record: dict[str, Any]) -> _Reply:
        body = self._parse_chat(headers, raw)
        fault = self._next_fault(body)
        if fault is not None:
            record["fault"] = fault.kind
            with self._lock:
                self.faults_served.append(fault.kind)
        params = dict(fault.params) if fault else {}
        kind = fault.kind if fault else None
        model = str(body.get("model") or (self.models or ("llama",))[0])

        if kind == "disconnect":
            return _Reply(0, b"", disconnect=True)
        if kind == "rate_limit":
            retry_after = float(params.get("retry_after", 1))
            scope = params.get("scope", "requests")
            limit = _RATE_LIMIT_REQUESTS if scope == "requests" else _RATE_LIMIT_TOKENS
            unit = "requests per min (RPM)" if scope == "requests" else "tokens per min (TPM)"
            retry_text = f"{retry_after * 1000:.0f}ms" if retry_after < 1 else f"{retry_after:g}s"
            raise _HTTPError(
                429,
                f"Rate limit reached for {model} in organization org-standin on {unit}: Limit {limit}, "
                f"Used {limit}, Requested 1. Please try again in {retry_text}. Visit "
                "https://platform.openai.com/account/rate-limits to learn more.",
                type=scope, code="rate_limit_exceeded",
                headers={"retry-after": str(math.ceil(retry_after)),
                         "retry-after-ms": str(int(retry_after * 1000)),
                         f"x-ratelimit-limit-{scope}": str(limit),
                         f"x-ratelimit-remaining-{scope}": "0",
                         f"x-ratelimit-reset-{scope}": retry_text},
            )
        if kind == "server_error":
            raise _HTTPError(int(params.get("status", 500)),
                             params.get("message", "The server had an error while processing your request. "
                                                   "Sorry about that!"),
                             type="server_error")
        if kind == "http_error":
            status = int(params.get("status", 400))
            headers = {"retry-after": str(params["retry_after"])} if "retry_after" in params else None
            raise _HTTPError(status, params.get("message", f"The stand-in answers {status}."),
                             headers=headers)
        if kind == "garbage":
            text = params.get("body", GARBAGE_HTML)
            return _Reply(int(params.get("status", 200)), text.encode() if isinstance(text, str) else bytes(text),
                          params.get("content_type", "text/html; charset=utf-8"))
        if kind == "slow":
            self._sleep(float(params.get("delay", 1.0)))

        answer = self.responder(copy.deepcopy(body))
        if answer is None:
            answer = task_responder(copy.deepcopy(body))
        override: dict[str, Any] = {"content": answer} if isinstance(answer, str) else dict(answer)
        if "status" in override or "body" in override:
            return self._raw_override(override)
        content: str | None = override.get("content")
        refusal: str | None = override.get("refusal")
        finish_reason: str = override.get("finish_reason", "stop")

        if kind == "malformed":
            content = params.get("content") or _malform(content or "", params.get("style", "broken"), body)
        elif kind == "truncated" and content:
            content = content[: max(1, int(len(content) * float(params.get("at", 0.5))))]
            finish_reason = "length"
        elif kind == "refusal":
            content, refusal = None, params.get("message", REFUSAL_TEXT)
        elif kind == "invalid_schema":
            instance = _extract_json(content or "")
            broken = violate_schema(instance, find_schema(body) or {}, params.get("drop"))
            content = json.dumps(broken, indent=2)

        limit = body.get("max_completion_tokens") or body.get("max_tokens")
        if isinstance(limit, int) and content and estimate_tokens(content) > limit:
            content, finish_reason = content[: limit * 4], "length"

        completion_text = content if content is not None else (refusal or "")
        prompt_tokens = estimate_tokens("".join(_message_text(m) for m in body["messages"] if isinstance(m, Mapping)))
        completion_tokens = estimate_tokens(completion_text)
        usage = override.get("usage") or {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        }
        if not self.dialect in ("llamacpp", "llama-cpp-python") and "usage" not in override:
            usage["prompt_tokens_details"] = {"cached_tokens": 0, "audio_tokens": 0}
            usage["completion_tokens_details"] = {"reasoning_tokens": 0, "audio_tokens": 0,
                                                  "accepted_prediction_tokens": 0,
                                                  "rejected_prediction_tokens": 0}
        message: dict[str, Any] = {"role": "assistant", "content": content}
        if not self.dialect in ("llamacpp", "llama-cpp-python"):
            message["refusal"] = refusal
            message["annotations"] = []
        elif refusal is not None:
            message["content"] = refusal
        n = int(body.get("n") or 1)
        payload = {
            "id": "chatcmpl-" + secrets.token_urlsafe(21).replace("-", "x").replace("_", "y"),
            "object": "chat.completion",
            "created": int(time.time()),
            "model": override.get("model", model),
            "choices": [
                {"index": i, "message": copy.deepcopy(message), "logprobs": None, "finish_reason": finish_reason}
                for i in range(n)
            ],
            "usage": usage,
            "system_fingerprint": "b4000-standin" if self.dialect == "llamacpp" else None if self.dialect == "llama-cpp-python" else "fp_standin",
        }
        if not self.dialect in ("llamacpp", "llama-cpp-python"):
            payload["service_tier"] = "default"
        return _Reply.of_json(200, payload, self._rate_limit_headers(prompt_tokens + completion_tokens))

    def _rate_limit_headers(self, tokens: int) -> dict[str, str]:
        if self.dialect in ("llamacpp", "llama-cpp-python"):
            return {}
        with self._lock:
            calls = self.calls
        return {
            "x-ratelimit-limit-requests": str(_RATE_LIMIT_REQUESTS),
            "x-ratelimit-remaining-requests": str(max(0, _RATE_LIMIT_REQUESTS - calls)),
            "x-ratelimit-reset-requests": "6ms",
            "x-ratelimit-limit-tokens": str(_RATE_LIMIT_TOKENS),
            "x-ratelimit-remaining-tokens": str(max(0, _RATE_LIMIT_TOKENS - tokens)),
            "x-ratelimit-reset-tokens": "0s",
        }

    @staticmethod
    def _raw_override(override: Mapping[str, Any]) -> _Reply:
        body = override.get("body", b"")
        content_type = override.get("content_type", "application/json")
        if isinstance(body, (dict, list)):
            data = json.dumps(body).encode()
        else:
            data = body.encode() if isinstance(body, str) else bytes(body)
        return _Reply(int(override.get("status", 200)), data, content_type, dict(override.get("headers") or {}))


def _malform(content: str, style: str, body: Mapping[str, Any]) -> str:
    """Content that fails ``json.loads``: cut-off-and-comma JSON, or prose."""
    if style == "prose":
        title = request_context(body).get("title", "this change")
        return f"I looked at {title} and I think it is a good candidate, but I could not format it as requested."
    end = content.rfind("}")
    if end < 0:
        return content + ' {"unterminated": '
    return content[:end].rstrip() + ",\n" + content[end + 1 :]


def _strict_schema_problem(schema: Mapping[str, Any]) -> str | None:
    """OpenAI's strict structured-output rules that most often bite, or None."""
    root: Any = schema
    if isinstance(root.get("$ref"), str):  # pydantic's root for self-referencing models
        try:
            root = resolve_ref(schema, root["$ref"])
        except ValueError:
            pass
    if root.get("type") != "object":
        return f"schema must be a JSON Schema of 'type: \"object\"', got 'type: \"{schema.get('type')}\"'."

    def walk(node: Any, context: tuple[str, ...]) -> str | None:
        if not isinstance(node, Mapping):
            return None
        if node.get("type") == "object" or "properties" in node:
            if node.get("additionalProperties") is not False:
                return f"In context={context!r}, 'additionalProperties' is required to be supplied and to be false."
            missing = [key for key in node.get("properties") or {} if key not in (node.get("required") or ())]
            if missing:
                return (f"In context={context!r}, 'required' is required to be supplied and to be an array "
                        f"including every key in properties. Missing '{missing[0]}'.")
        children: list[tuple[Any, tuple[str, ...]]] = []
        for key in ("properties", "$defs", "definitions"):
            for name, sub in (node.get(key) or {}).items():
                children.append((sub, (*context, key, name)))
        if isinstance(node.get("items"), Mapping):
            children.append((node["items"], (*context, "items")))
        for key in ("anyOf", "allOf", "prefixItems"):
            for i, sub in enumerate(node.get(key) or ()):
                children.append((sub, (*context, key, str(i))))
        for sub, ctx in children:
            problem = walk(sub, ctx)
            if problem:
                return problem
        return None

    return walk(schema, ())


@pytest.fixture
def openai_standin(request: pytest.FixtureRequest) -> Iterator[OpenAIStandIn]:
    """A running :class:`OpenAIStandIn`; parametrize indirectly with constructor kwargs.

    ``@pytest.mark.parametrize("openai_standin", [{"dialect": "llamacpp"}], indirect=True)``
    """
    kwargs: dict[str, Any] = dict(getattr(request, "param", None) or {})
    with OpenAIStandIn(**kwargs) as llm:
        yield llm
