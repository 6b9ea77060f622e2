"""GitHub's limits, in one policy: tokens, budgets, waits and retries.

Every GitHub request goes through ``Policy.call``. It picks the token with the most budget
left for the resource (core, graphql, search), bounds requests in flight, counts them
against ``max_requests``, and classifies each answer:

    primary limit      x-ratelimit-remaining 0 (403/429, or RATE_LIMITED in a GraphQL 200):
                       that token rests until x-ratelimit-reset; another token is used, or
                       the call waits for the earliest reset (never longer than max_wait)
    secondary limit    403/429 with Retry-After: wait that long; without it, at least
                       ``secondary_min_wait`` seconds, doubling on each repeat
    transient          502/503/504, HTML where JSON was expected, dropped connections:
                       exponential backoff
    401                the token is bad: it leaves the pool (the next one is tried)
    anything else      terminal: raised to the caller

Retries are driven by tenacity. Tokens never appear in messages.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Callable, TypeVar

from tenacity import (RetryCallState, Retrying, retry_if_exception_type, stop_after_attempt)

from ..errors import AuthError, SourceError, Transient

log = logging.getLogger("synth.github")
T = TypeVar("T")


class BudgetExhausted(Transient, SourceError):
    """--max-requests reached: the run stops cleanly; the next one resumes."""


class RateLimitWaitTooLong(Transient, SourceError):
    """Every token is out of budget until a reset further away than max_wait."""


@dataclass
class Answer:
    """What a transport got back, for the policy to judge."""

    status: int
    headers: dict[str, str]
    data: object = None
    html: bool = False  # an HTML page where JSON was expected
    graphql_rate_limited: bool = False


class _Retry(Exception):
    """Internal: try again after ``wait`` seconds."""

    def __init__(self, reason: str, wait: float):
        super().__init__(reason)
        self.reason = reason
        self.wait = wait


@dataclass
class _Token:
    value: str
    index: int
    remaining: dict[str, int] = field(default_factory=dict)
    reset: dict[str, float] = field(default_factory=dict)
    bad: bool = False

    def available(self, resource: str, now: float) -> bool:
        if self.bad:
            return False
        if self.remaining.get(resource, 1) > 0:
            return True
        return self.reset.get(resource, 0) <= now


class Policy:
    def __init__(self, tokens: list[str], *, concurrency: int = 4, max_requests: int = 0,
                 max_wait: float = 3600.0, secondary_min_wait: float = 60.0,
                 max_attempts: int = 8, backoff: float = 1.0, clock=time.time,
                 sleep=time.sleep):
        self.tokens = [_Token(t, i) for i, t in enumerate(tokens)] or [_Token("", 0)]
        self.anonymous = not tokens
        self.max_requests = max_requests
        self.max_wait = max_wait
        self.secondary_min_wait = secondary_min_wait
        self.max_attempts = max_attempts
        self.backoff = backoff
        self.clock = clock
        self.sleep = sleep
        self.counts: Counter = Counter()
        self.longest_wait = 0.0
        self._slots = threading.BoundedSemaphore(concurrency)
        self._lock = threading.Lock()
        self._secondary_streak = 0

    # -- tokens

    def _pick(self, resource: str) -> _Token:
        """The token with the most budget left; waits for a reset when all are spent."""
        while True:
            with self._lock:
                now = self.clock()
                live = [t for t in self.tokens if not t.bad]
                if not live:
                    raise AuthError("every GitHub token was refused (401 Bad credentials); "
                                    "check GITHUB_TOKEN / GITHUB_TOKENS")
                ready = [t for t in live if t.available(resource, now)]
                if ready:
                    return max(ready, key=lambda t: t.remaining.get(resource, 10**9))
                wake = min(t.reset.get(resource, now) for t in live)
            wait = max(0.0, wake - now) + 0.05
            if wait > self.max_wait:
                raise RateLimitWaitTooLong(
                    f"every token is out of {resource} budget for {wait:.0f} s more "
                    f"(longer than max_wait {self.max_wait:.0f} s); the next run resumes")
            log.warning("GitHub %s rate limit reached on every token; waiting %.1f s for the "
                        "reset", resource, wait)
            self._wait(wait, "primary")

    def observe(self, token: _Token, resource: str, headers: dict[str, str]) -> None:
        h = {k.lower(): v for k, v in headers.items()}
        res = h.get("x-ratelimit-resource", resource)
        with self._lock:
            if "x-ratelimit-remaining" in h:
                try:
                    token.remaining[res] = int(h["x-ratelimit-remaining"])
                except ValueError:
                    pass
            if "x-ratelimit-reset" in h:
                try:
                    token.reset[res] = float(h["x-ratelimit-reset"])
                except ValueError:
                    pass

    def _wait(self, seconds: float, kind: str) -> None:
        self.counts[f"github/wait/{kind}"] += 1
        self.longest_wait = max(self.longest_wait, seconds)
        self.sleep(seconds)

    # -- the call

    def call(self, resource: str, kind: str, do: Callable[[str], Answer]) -> Answer:
        """Run ``do(token)`` under the policy and return a good Answer (status < 400 or
        404/422 for the caller to interpret)."""
        tries = [0]

        def attempt() -> Answer:
            tries[0] += 1
            token = self._pick(resource)
            with self._lock:
                if self.max_requests and self.counts["github/requests"] >= self.max_requests:
                    raise BudgetExhausted(
                        f"the run's GitHub request budget (max_requests={self.max_requests}) "
                        "is spent; the next run resumes where this one stopped")
                self.counts["github/requests"] += 1
                self.counts[f"github/requests/{kind}"] += 1
            with self._slots:
                try:
                    ans = do(token.value)
                except (ConnectionError, TimeoutError, OSError) as exc:
                    self.counts["github/retry/connection"] += 1
                    raise _Retry(f"connection failed: {type(exc).__name__}", self._backoff(tries[0]))
            self.observe(token, resource, ans.headers)
            return self._judge(token, resource, ans, tries[0])

        retrying = Retrying(retry=retry_if_exception_type(_Retry), wait=self._wait_for,
                            stop=stop_after_attempt(self.max_attempts), reraise=True,
                            sleep=lambda s: self._wait(s, "retry") if s else None)
        try:
            return retrying(attempt)
        except _Retry as exc:
            raise _GiveUp(f"GitHub kept failing ({exc.reason}) after {self.max_attempts} "
                          "attempts") from None

    def _wait_for(self, state: RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        return exc.wait if isinstance(exc, _Retry) else 0.0

    def _backoff(self, attempt: int) -> float:
        """Exponential in this call's attempts: backoff, 2x, 4x ... at most 60 s."""
        return min(self.backoff * (2 ** min(attempt - 1, 6)), 60.0)

    def _judge(self, token: _Token, resource: str, ans: Answer, attempt: int) -> Answer:
        h = {k.lower(): v for k, v in ans.headers.items()}
        status = ans.status
        if status == 401:
            with self._lock:
                token.bad = True
            self.counts["github/bad_token"] += 1
            log.error("a GitHub token (#%d) was refused: Bad credentials", token.index + 1)
            raise _Retry("bad credentials", 0.0)
        limited = ans.graphql_rate_limited or (
            status in (403, 429) and h.get("x-ratelimit-remaining") == "0")
        if limited:
            self.counts[f"github/retry/primary/{resource}"] += 1
            with self._lock:
                token.remaining[resource] = 0
                try:
                    token.reset[resource] = float(h.get("x-ratelimit-reset", self.clock() + 60))
                except ValueError:
                    token.reset[resource] = self.clock() + 60
            raise _Retry("primary rate limit", 0.0)  # _pick waits for the reset
        if status in (403, 429) and ("retry-after" in h or _secondary(ans.data) or status == 429):
            with self._lock:
                self._secondary_streak += 1
                streak = self._secondary_streak
            if "retry-after" in h:
                try:
                    wait = float(h["retry-after"])
                except ValueError:
                    wait = self.secondary_min_wait
            else:
                wait = self.secondary_min_wait * (2 ** min(streak - 1, 4))
            self.counts[f"github/retry/secondary/{status}"] += 1
            if wait > self.max_wait:
                raise RateLimitWaitTooLong(f"GitHub asked to wait {wait:.0f} s (secondary "
                                           "limit); the next run resumes")
            raise _Retry("secondary rate limit", wait)
        if status in (500, 502, 503, 504) or ans.html:
            self.counts[f"github/retry/{'html' if ans.html and status < 400 else status}"] += 1
            raise _Retry(f"HTTP {status}" + (" (HTML page)" if ans.html else ""),
                         self._backoff(attempt))
        with self._lock:
            self._secondary_streak = 0
        return ans


class _GiveUp(Transient, SourceError):
    pass


def _secondary(data: object) -> bool:
    if isinstance(data, dict):
        msg = str(data.get("message", "")).lower()
        return "secondary rate limit" in msg or "abuse" in msg
    return False
