"""The OpenAI-compatible client: the only module that imports openai.

Structured output is tried in order, and the dialect that worked is remembered per endpoint:

    json_schema  response_format {"type": "json_schema", "json_schema": {..., "strict": true}}
    json_object  response_format {"type": "json_object", "schema": {...}}   (llama.cpp-style)
    prompt       no response_format; the schema is in the prompt, JSON is extracted

Retries (tenacity) on 429, 5xx, timeouts and dropped connections honour Retry-After.
"""

from __future__ import annotations

import json
import logging
import re
import threading
from dataclasses import dataclass

import openai
from tenacity import (RetryCallState, retry, retry_if_exception, stop_after_attempt,
                      wait_exponential, wait_random)

from ..errors import ConfigError, RewriteError

log = logging.getLogger("synth.llm")

DIALECTS = ("json_schema", "json_object", "prompt")
_REMEMBERED: dict[str, str] = {}  # endpoint -> dialect that worked
_LOCK = threading.Lock()
_PROBES: dict[str, threading.Lock] = {}


def _probe_lock(endpoint: str) -> threading.Lock:
    with _LOCK:
        return _PROBES.setdefault(endpoint, threading.Lock())


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


def _transient(exc: BaseException) -> bool:
    return isinstance(exc, (openai.RateLimitError, openai.InternalServerError,
                            openai.APITimeoutError, openai.APIConnectionError, BadResponse)) or (
        isinstance(exc, openai.APIStatusError) and exc.status_code in (408, 409, 429, 500, 502, 503, 504))


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
            return min(asked, self.max_wait)
        return self.fallback(state)


class LLMClient:
    def __init__(self, model: str, base_url: str | None = None, api_key: str | None = None,
                 timeout: float = 120.0, max_attempts: int = 5, max_wait: float = 120.0,
                 concurrency: int = 8):
        if not model:
            raise ConfigError("the LLM rewriter needs a model: --model NAME or [rewrite] model")
        self.model = model
        self.endpoint = (base_url or "https://api.openai.com/v1").rstrip("/")
        self._client = openai.OpenAI(base_url=self.endpoint, api_key=api_key or "not-needed",
                                     timeout=timeout, max_retries=0)
        self._max_attempts = max_attempts
        self._wait = _WaitRetryAfter(max_wait)
        self.calls = 0

    @property
    def dialect(self) -> str | None:
        return _REMEMBERED.get(self.endpoint)

    def close(self) -> None:
        self._client.close()

    def chat_json(self, messages: list[dict], schema: dict, name: str,
                  max_tokens: int = 4096) -> Completion:
        """One structured completion, falling back across dialects on the first call.

        While an endpoint's dialect is unknown, one call probes and the others wait for it,
        so concurrent first calls do not all pay for the rejected dialects."""
        if self.endpoint in _REMEMBERED:
            return self._chat_json(messages, schema, name, max_tokens)
        with _probe_lock(self.endpoint):
            return self._chat_json(messages, schema, name, max_tokens)

    def _chat_json(self, messages, schema, name, max_tokens) -> Completion:
        known = _REMEMBERED.get(self.endpoint)
        order = [known] if known else list(DIALECTS)
        last: Exception | None = None
        for dialect in order:
            try:
                result = self._call(dialect, messages, schema, name, max_tokens)
            except openai.BadRequestError as exc:
                if known is None and _is_format_rejection(exc):
                    log.info("endpoint %s rejected %s output (%s); trying the next dialect",
                             self.endpoint, dialect, _short(exc))
                    last = exc
                    continue
                raise RewriteError(f"the endpoint rejected the request: {_short(exc)}",
                                   reason="bad_request") from None
            except openai.AuthenticationError:
                raise ConfigError("the LLM endpoint refused the API key (OPENAI_API_KEY)") from None
            except openai.NotFoundError as exc:
                raise ConfigError(f"the LLM endpoint does not know model {self.model!r}: "
                                  f"{_short(exc)}") from None
            with _LOCK:
                _REMEMBERED.setdefault(self.endpoint, dialect)
            return result
        raise RewriteError(f"the endpoint accepts no structured-output dialect: {_short(last)}",
                           reason="no_dialect")

    def _call(self, dialect: str, messages: list[dict], schema: dict, name: str,
              max_tokens: int) -> Completion:
        kwargs: dict = {"model": self.model, "messages": messages, "temperature": 0.2,
                        "max_tokens": max_tokens}
        # response_format goes in extra_body: sent as is, and the SDK does not walk the whole
        # schema on every call (and keeps the llama.cpp-style "schema" key it would not know)
        if dialect == "json_schema":
            kwargs["extra_body"] = {"response_format": {"type": "json_schema", "json_schema": {
                "name": name, "schema": schema, "strict": True}}}
        elif dialect == "json_object":
            kwargs["extra_body"] = {"response_format": {"type": "json_object", "schema": schema}}

        @retry(retry=retry_if_exception(_transient), wait=self._wait,
               stop=stop_after_attempt(self._max_attempts), reraise=True)
        def attempt():
            self.calls += 1
            resp = self._client.chat.completions.create(**kwargs)
            if isinstance(resp, str) or not getattr(resp, "choices", None):
                raise BadResponse("the endpoint answered with something that is not a chat "
                                  "completion")
            return resp

        try:
            resp = attempt()
        except BadResponse as exc:
            raise RewriteError(str(exc), reason="bad_response") from None
        except (openai.RateLimitError, openai.InternalServerError, openai.APITimeoutError,
                openai.APIConnectionError, openai.APIStatusError) as exc:
            if isinstance(exc, openai.APIStatusError) and not _transient(exc):
                raise
            raise RewriteError(f"the endpoint kept failing ({_short(exc)})",
                               reason="unavailable") from None
        choice = resp.choices[0]
        msg = choice.message
        usage = resp.usage
        return Completion(
            text=msg.content or "", refusal=getattr(msg, "refusal", None),
            finish_reason=choice.finish_reason, dialect=dialect,
            prompt_tokens=getattr(usage, "prompt_tokens", 0) or 0,
            completion_tokens=getattr(usage, "completion_tokens", 0) or 0)


def _is_format_rejection(exc: openai.BadRequestError) -> bool:
    text = str(exc).lower()
    return any(w in text for w in ("response_format", "json_schema", "json_object", "schema",
                                   "grammar", "unsupported"))


def _short(exc: BaseException | None) -> str:
    if exc is None:
        return "no answer"
    body = getattr(exc, "body", None)
    if isinstance(body, dict):
        err = body.get("error", body)
        msg = err.get("message") if isinstance(err, dict) else None
        if msg:
            return f"{getattr(exc, 'status_code', '')} {msg}".strip()[:300]
    return f"{type(exc).__name__}: {exc}"[:300]


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
