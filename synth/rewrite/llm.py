"""The OpenAI-compatible client: the only module that imports openai.

Structured output comes in three forms, tried in this order while an endpoint's dialect is
unknown (``structured_output = "auto"``):

    json_schema  response_format {"type": "json_schema", "json_schema": {..., "strict": true}}
    json_object  response_format {"type": "json_object", "schema": {...}}   (llama.cpp-style)
    prompt       no response_format; the schema is in the prompt, JSON is extracted

Discovery. Any refusal of a form moves to the next one: a 4xx (but 401, a refused key, which
ends the run, and 408/409/429, which are retried), a 5xx whose body names ``response_format``,
``json_schema`` or a validation error (llama-cpp-python wraps its validation errors in a 500),
or the same error on every retry of a form. The first form that is answered is remembered by
this client (not by the module: two clients learn apart) and stated once in the log. While the
dialect is unknown one call probes and the others wait for it. A refusal of the ``prompt``
form, which sends no response_format, is the request's own error, not a dialect's.

Errors. 429, 5xx, timeouts, dropped connections and 200 answers that are not completions are
retried (Retry-After honoured, else exponential backoff with jitter); every wait goes through
the run's clock, so a stop ends it at once. Each request runs in a daemon thread that the
caller waits for through the clock: a request still running when a run is stopped is
abandoned, not waited for. What is left after retries becomes a ``RewriteError`` with a
stable reason, the first line of the server's message and its full text (``raw``). Nothing
here raises an openai exception to the caller.
"""

from __future__ import annotations

import json
import logging
import math
import re
import threading
from dataclasses import dataclass
from ipaddress import ip_address
from urllib.parse import urlsplit

import openai
from tenacity import (RetryCallState, Retrying, retry_if_exception, stop_after_attempt,
                      wait_exponential, wait_random)

from ..clock import Clock
from ..errors import ConfigError, RewriteError, Stopped

log = logging.getLogger("synth.llm")

FORMS = ("json_schema", "json_object", "prompt")
LOCAL_TIMEOUT = 1800.0  # seconds: 4,096 tokens at 2.5 tokens/s, a CPU-only server (README table)
STRUCTURED_OUTPUT = ("auto", *FORMS)
DIALECTS = FORMS  # the older name

# a 5xx body that says the request's format was refused, not that the server is unwell
_FORMAT_WORDS = re.compile(r"response_format|json_schema|json_object|validation error|"
                           r"validationerror|unprocessable|extra inputs are not permitted",
                           re.I)
# statuses retried as transient; every other status is an answer about the request
_TRANSIENT_STATUS = frozenset({408, 409, 425, 429, 500, 502, 503, 504, 520, 522, 524, 529})
# a non-transient status -> the failure reason recorded for it
_STATUS_REASON = {400: "bad_request", 403: "forbidden", 404: "not_found", 405: "not_allowed",
                  413: "too_large", 415: "bad_request", 422: "bad_request"}


@dataclass(frozen=True)
class Completion:
    text: str
    prompt_tokens: int
    completion_tokens: int
    finish_reason: str | None
    refusal: str | None
    dialect: str


class BadResponse(Exception):
    """The endpoint answered 200 with something that is not a chat completion."""


class _Refused(Exception):
    """A structured-output form was refused (during discovery only)."""

    def __init__(self, form: str, cause: BaseException):
        super().__init__(form)
        self.form = form
        self.cause = cause


def is_local(base_url: str | None) -> bool:
    """True for an endpoint on this machine (loopback address or ``localhost``)."""
    host = urlsplit(base_url or "").hostname or ""
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ip_address(host).is_loopback
    except ValueError:
        return False


def _status(exc: BaseException | None) -> int | None:
    return getattr(exc, "status_code", None) if isinstance(exc, openai.APIStatusError) else None


def _transient(exc: BaseException) -> bool:
    if isinstance(exc, (openai.APITimeoutError, openai.APIConnectionError, BadResponse)):
        return True
    return _status(exc) in _TRANSIENT_STATUS


def server_message(exc: BaseException | None) -> str:
    """The full text the server said (its error message, else the body), or the error."""
    if exc is None:
        return "no answer"
    if isinstance(exc, (openai.APITimeoutError, openai.APIConnectionError)):
        return f"{type(exc).__name__}: {exc}"
    if isinstance(exc, BadResponse):
        return str(exc)
    body = getattr(exc, "body", None)
    if isinstance(body, dict):
        err = body.get("error", body)
        if isinstance(err, dict) and err.get("message"):
            return str(err["message"])
        if isinstance(err, str) and err:
            return err
        if "detail" in body:  # FastAPI's 422
            return json.dumps(body["detail"])[:20000]
        return json.dumps(body)[:20000]
    if isinstance(body, str) and body.strip():
        return body
    resp = getattr(exc, "response", None)
    text = getattr(resp, "text", "") if resp is not None else ""
    return text or str(exc)


def first_line(text: str, limit: int = 160) -> str:
    """The first non-empty line of ``text``, cut to ``limit`` characters."""
    for line in (text or "").splitlines():
        line = line.strip()
        if line:
            return line if len(line) <= limit else line[:limit - 1] + "…"
    return ""


def _short(exc: BaseException | None, limit: int = 160) -> str:
    status = _status(exc)
    line = first_line(server_message(exc), limit)
    return f"HTTP {status}: {line}" if status else line


def _same_error(errors: list[BaseException]) -> bool:
    """Every attempt ended with the same HTTP status and message."""
    keys = {(_status(e), server_message(e)) for e in errors}
    return len(keys) == 1 and next(iter(keys))[0] is not None


def _is_format_refusal(exc: BaseException) -> bool:
    """An answer that refuses the request's structured-output form (during discovery)."""
    status = _status(exc)
    if status is None:
        return False
    if 400 <= status < 500:
        return status not in (401, 408, 409, 425, 429)
    return bool(_FORMAT_WORDS.search(server_message(exc)))


def _retry_after(exc: BaseException | None) -> float | None:
    resp = getattr(exc, "response", None)
    if resp is None:
        return None
    headers = resp.headers
    ms = headers.get("retry-after-ms")
    if ms:
        try:
            return float(ms) / 1000
        except ValueError:
            pass
    value = headers.get("retry-after")
    if value:
        try:
            return float(value)
        except ValueError:
            return None
    return None


class _WaitRetryAfter:
    """Wait what the server asks (Retry-After), else exponential backoff with jitter."""

    def __init__(self, max_wait: float):
        self.max_wait = max_wait
        self.fallback = wait_exponential(multiplier=0.5, max=min(30.0, max_wait)) + wait_random(0, 0.5)

    def __call__(self, state: RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        asked = _retry_after(exc)
        if asked is not None:
            return min(max(asked, 0.0), self.max_wait)
        return self.fallback(state)


class LLMClient:
    """One OpenAI-compatible endpoint and model.

    ``timeout`` is per request (seconds until the whole answer is in); ``clock`` is the run's
    clock (every retry wait and every wait for an answer goes through it); ``structured_output``
    forces a form instead of discovering one.
    """

    def __init__(self, model: str, base_url: str | None = None, api_key: str | None = None,
                 timeout: float = 120.0, max_attempts: int = 5, max_wait: float = 120.0,
                 concurrency: int = 8, *, structured_output: str = "auto",
                 clock: Clock | None = None):
        if not model:
            raise ConfigError("the LLM rewriter needs a model: --model NAME or [rewrite] model")
        if structured_output not in STRUCTURED_OUTPUT:
            raise ConfigError(f"[rewrite] structured_output must be one of "
                              f"{', '.join(STRUCTURED_OUTPUT)}; got {structured_output!r}")
        self.model = model
        self.endpoint = (base_url or "https://api.openai.com/v1").rstrip("/")
        self.timeout = timeout
        self.concurrency = concurrency
        self.clock = clock or Clock()
        self.forced = None if structured_output == "auto" else structured_output
        self._client = openai.OpenAI(base_url=self.endpoint, api_key=api_key or "not-needed",
                                     timeout=timeout, max_retries=0)
        self._max_attempts = max(1, max_attempts)
        self._wait = _WaitRetryAfter(max_wait)
        self._dialect: str | None = self.forced
        self._probe = threading.Lock()  # one discovery at a time

    @property
    def dialect(self) -> str | None:
        """The structured-output form in use: forced, learnt, or None while unknown."""
        return self._dialect

    def close(self) -> None:
        self._client.close()

    # -- one structured completion

    def chat_json(self, messages: list[dict], schema: dict, name: str,
                  max_tokens: int = 4096) -> Completion:
        """One structured completion. Raises RewriteError (a failure to record),
        ConfigError (the key was refused) or Stopped."""
        if self._dialect is None:
            self._lock_probe()
            try:
                if self._dialect is None:
                    return self._discover(messages, schema, name, max_tokens)
            finally:
                self._probe.release()
        return self._send(self._dialect, messages, schema, name, max_tokens, discovering=False)

    def _lock_probe(self) -> None:
        """Wait for a discovery running in another thread, through the clock."""
        while not self._probe.acquire(timeout=0.05):
            self.clock.check()

    def _discover(self, messages, schema, name, max_tokens) -> Completion:
        refused: list[tuple[str, BaseException]] = []
        for form in FORMS:
            try:
                comp = self._send(form, messages, schema, name, max_tokens, discovering=True)
            except _Refused as r:
                refused.append((form, r.cause))
                log.info("LLM endpoint %s refused %s output (%s); trying %s", self.endpoint,
                         form, _short(r.cause), FORMS[FORMS.index(form) + 1])  # never the last
                continue
            self._dialect = form
            why = "; ".join(f"{f} refused: {_short(e, 120)}" for f, e in refused)
            log.info("LLM endpoint %s (model %s): structured output as %s%s", self.endpoint,
                     self.model, form, f" ({why})" if why else "")
            return comp
        raise AssertionError("the prompt form is never refused, only failed")  # pragma: no cover

    def _send(self, form, messages, schema, name, max_tokens, *, discovering: bool) -> Completion:
        kwargs: dict = {"model": self.model, "messages": messages, "temperature": 0.2,
                        "max_tokens": max_tokens}
        # response_format goes in extra_body: sent as is, and the SDK does not walk the whole
        # schema on every call (and keeps the llama.cpp-style "schema" key it would not know)
        if form == "json_schema":
            kwargs["extra_body"] = {"response_format": {"type": "json_schema", "json_schema": {
                "name": name, "schema": schema, "strict": True}}}
        elif form == "json_object":
            kwargs["extra_body"] = {"response_format": {"type": "json_object", "schema": schema}}
        probing_form = discovering and form != FORMS[-1]
        errors: list[BaseException] = []

        def retry_this(exc: BaseException) -> bool:
            if isinstance(exc, (Stopped, ConfigError)):
                return False
            if probing_form and _is_format_refusal(exc):
                return False  # a refusal: the next form, not the same request again
            return _transient(exc)

        def attempt():
            try:
                return self._request(kwargs)
            except Stopped:
                raise
            except Exception as exc:
                errors.append(exc)
                raise

        retrying = Retrying(retry=retry_if_exception(retry_this), wait=self._wait,
                            stop=stop_after_attempt(self._max_attempts), sleep=self.clock.sleep,
                            reraise=True)
        try:
            resp = retrying(attempt)
        except (Stopped, ConfigError):
            raise
        except Exception as exc:
            if _status(exc) == 401:
                raise ConfigError("the LLM endpoint refused the API key (OPENAI_API_KEY): "
                                  + _short(exc)) from None
            if probing_form and (_is_format_refusal(exc) or (
                    len(errors) >= self._max_attempts and _same_error(errors))):
                raise _Refused(form, exc) from None
            # the form without response_format failed: the request's own error, not a dialect's
            raise self._error(exc) from None
        choice = resp.choices[0]
        msg = choice.message
        usage = resp.usage
        return Completion(
            text=msg.content or "", refusal=getattr(msg, "refusal", None),
            finish_reason=choice.finish_reason, dialect=form,
            prompt_tokens=getattr(usage, "prompt_tokens", 0) or 0,
            completion_tokens=getattr(usage, "completion_tokens", 0) or 0)

    def _request(self, kwargs: dict):
        """One HTTP request, run in a daemon thread and waited for through the clock: when
        the run is stopped the wait raises Stopped and the request is abandoned."""
        box: dict = {}
        done = threading.Event()

        def work():
            try:
                box["resp"] = self._client.chat.completions.create(**kwargs)
            except BaseException as exc:  # handed to the waiting thread
                box["exc"] = exc
            finally:
                done.set()

        self.clock.check()
        threading.Thread(target=work, name="synth-llm-request", daemon=True).start()
        self.clock.wait(done)
        if "exc" in box:
            raise box["exc"]
        resp = box["resp"]
        if isinstance(resp, str) or not getattr(resp, "choices", None):
            raise BadResponse("the endpoint answered with something that is not a chat "
                              "completion")
        return resp

    def _error(self, exc: BaseException) -> RewriteError:
        """What is left after retries, as a failure to record."""
        full = server_message(exc)
        status = _status(exc)
        if isinstance(exc, BadResponse):
            return RewriteError(str(exc), reason="bad_response", raw=full)
        if _transient(exc):
            return RewriteError(f"the endpoint kept failing ({_short(exc)})",
                                reason="unavailable", raw=full)
        if status is not None:
            reason = _STATUS_REASON.get(status, "rejected")
            return RewriteError(f"the endpoint rejected the request ({_short(exc)})",
                                reason=reason, raw=full)
        return RewriteError(f"the endpoint call failed ({_short(exc)})", reason="unavailable",
                            raw=full)


# ---------------------------------------------------------------- schema-derived budget

CHARS_PER_TOKEN = 3.0  # conservative for JSON holding English prose and file paths


def max_json_chars(schema: dict, node: dict | None = None, _depth: int = 0) -> int:
    """The length of the longest JSON text a schema allows (compact separators, each
    character of a string counted once), or a ValueError when something is unbounded."""
    node = schema if node is None else node
    if _depth > 20:
        raise ValueError("schema nests too deeply")
    if "$ref" in node:
        ref = node["$ref"].split("/")[-1]
        return max_json_chars(schema, schema.get("$defs", {})[ref], _depth + 1)
    for key in ("anyOf", "oneOf"):
        if key in node:
            return max(max_json_chars(schema, n, _depth + 1) for n in node[key])
    if "enum" in node:
        return max(len(json.dumps(v)) for v in node["enum"])
    if "const" in node:
        return len(json.dumps(node["const"]))
    kind = node.get("type")
    if kind == "object":
        props = node.get("properties", {})
        inner = sum(len(json.dumps(k)) + 1 + max_json_chars(schema, v, _depth + 1)
                    for k, v in props.items())
        return 2 + inner + max(0, len(props) - 1)
    if kind == "array":
        if "maxItems" not in node:
            raise ValueError("an array without maxItems")
        n = node["maxItems"]
        return 2 + n * max_json_chars(schema, node.get("items", {}), _depth + 1) + max(0, n - 1)
    if kind == "string":
        if "maxLength" not in node:
            raise ValueError("a string without maxLength")
        return 2 + node["maxLength"]
    if kind in ("number", "integer"):
        return 24
    if kind == "boolean":
        return 5
    if kind == "null":
        return 4
    raise ValueError(f"cannot bound {node!r}")


def max_tokens_for(schema: dict, margin: int = 64) -> int:
    """``max_tokens`` that the longest answer the schema allows fits in."""
    return math.ceil(max_json_chars(schema) / CHARS_PER_TOKEN) + margin


_FENCE = re.compile(r"```(?:json)?\s*(\{.*?\})\s*```", re.S)


def extract_json(text: str) -> dict:
    """The JSON object in a model's answer: bare, fenced in ```json, or wrapped in prose."""
    text = (text or "").strip()
    candidates = [text]
    candidates += _FENCE.findall(text)
    start, end = text.find("{"), text.rfind("}")
    if start != -1 and end > start:
        candidates.append(text[start:end + 1])
    for c in candidates:
        try:
            value = json.loads(c)
        except (ValueError, RecursionError):
            continue
        if isinstance(value, dict):
            return value
    raise ValueError("the answer holds no JSON object")
