"""A real HTTP stand-in for GitHub's REST v3 and GraphQL v4 APIs, served from fixtures.

Usage::

    with GitHubStandIn(make_fixtures(), tokens={"tok-a": 5000}) as gh:
        httpx.get(f"{gh.url}/repos/acme/httpkit", headers={"Authorization": "token tok-a"})
        httpx.post(gh.graphql_url, json={"query": "{ viewer { login } }"}, headers=...)

It listens on 127.0.0.1 (free port) with HTTP/1.1 keep-alive, answers with GitHub's headers
(``x-ratelimit-*``, ``ETag``, ``Link`` with absolute URLs to itself), GitHub's error bodies,
per-token rate limits (core, search, graphql), conditional requests (a 304 costs nothing when
authenticated), and scripted faults (:meth:`GitHubStandIn.fault`, :meth:`set_fault_rate`).
Requests are counted (:attr:`counts`) and logged (:attr:`requests`) without ever storing a
token: requests are attributed to ``token#<index>``, ``anonymous`` or ``invalid:<sha256 prefix>``.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import random
import re
import socket
import traceback
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, quote, urlencode, urlsplit

import pytest

from .github_fixtures import PR, Fixtures, Repo, SearchQueryError, make_fixtures
from .github_graphql import GraphQLEngine, QueryPlan, RequestContext, iso_epoch

__all__ = [
    "DEFAULT_TOKENS",
    "FAULT_KINDS",
    "Fault",
    "GitHubStandIn",
    "RateSnapshot",
    "RequestRecord",
    "github_standin",
    "github_standin_factory",
]

DEFAULT_TOKENS: dict[str, int] = {"tok-a": 5000, "tok-b": 5000}
FAULT_KINDS = (
    "secondary", "secondary_no_retry_after", "429", "502", "503", "504", "html",
    "graphql_rate_limited", "graphql_timeout", "exhausted", "disconnect",
)
_GRAPHQL_ONLY = {"graphql_rate_limited", "graphql_timeout"}
_DEFAULT_RANDOM_KINDS = ("secondary", "429", "502", "503", "504", "html")

_JSON = "application/json; charset=utf-8"
_HTML = "text/html; charset=utf-8"
_DOCS = "https://docs.github.com/rest"
_RATE_DOCS = "https://docs.github.com/rest/overview/rate-limits-for-the-rest-api"
_SECONDARY_DOCS = ("https://docs.github.com/free-pro-team@latest/rest/overview/"
                   "rate-limits-for-the-rest-api#about-secondary-rate-limits")
_LOGGED_HEADERS = ("accept", "if-none-match", "if-modified-since", "user-agent", "content-type",
                   "x-github-api-version")
_SEARCH_CAP = 1000
_MAX_FILES = 3000

_UNICORN = """<!DOCTYPE html>
<html>
  <head>
    <meta http-equiv="Content-Type" content="text/html; charset=utf-8">
    <meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'">
    <title>Unicorn! &middot; GitHub</title>
    <style type="text/css" media="screen">body { background-color: #f1f1f1; margin: 0; }</style>
  </head>
  <body>
    <div class="container">
      <p><strong>{headline}</strong></p>
      <p>{detail}</p>
      <div id="suggestions">
        <a href="https://githubstatus.com">GitHub Status</a> &mdash;
        <a href="https://twitter.com/githubstatus">@githubstatus</a>
      </div>
    </div>
  </body>
</html>
"""
_HTML_PAGE = """<!DOCTYPE html>
<html lang="en" data-color-mode="auto">
  <head><meta charset="utf-8"><title>Sign in to GitHub &middot; GitHub</title></head>
  <body class="logged-out env-production page-responsive session-authentication">
    <div class="auth-form px-3" id="login"><h1>Sign in to GitHub</h1></div>
  </body>
</html>
"""


# ------------------------------------------------------------------------ records


def _request_key(record: "RequestRecord") -> str:
    """What identifies a request whatever its arrival order (not its token)."""
    return json.dumps([record.method, record.path, sorted(record.query.items()), record.graphql],
                      sort_keys=True, default=str)


@dataclass
class RequestRecord:
    """One logged request. ``token`` is a reference (``token#0``), never the secret."""

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    token: str
    kind: str
    timestamp: float
    status: int = 0
    fault: str | None = None
    graphql: dict[str, Any] | None = None
    cost: int = 0


@dataclass(frozen=True)
class RateSnapshot:
    """A rate-limit bucket as GitHub reports it."""

    resource: str
    limit: int
    used: int
    remaining: int
    reset: int


@dataclass
class Fault:
    """A scripted fault for the next ``times`` matching requests.

    ``match``: None (any request), ``"rest"``, ``"graphql"``, ``"search"``, a path prefix
    starting with ``/``, or a predicate over :class:`RequestRecord`.
    """

    kind: str
    times: int = 1
    match: str | Callable[[RequestRecord], bool] | None = None
    retry_after: int | None = None
    reset_in: float | None = None
    applied: int = 0

    def matches(self, record: RequestRecord) -> bool:
        is_graphql = record.kind == "graphql"
        if self.kind in _GRAPHQL_ONLY and not is_graphql:
            return False
        m = self.match
        if m is None:
            return True
        if callable(m):
            return bool(m(record))
        if m == "graphql":
            return is_graphql
        if m == "rest":
            return not is_graphql
        if m == "search":
            return record.kind == "search"
        return record.path.startswith(m)


@dataclass
class _Bucket:
    limit: int
    window: float
    used: int = 0
    reset_at: float = 0.0

    def refresh(self, now: float) -> None:
        if now >= self.reset_at:
            self.used = 0
            self.reset_at = now + self.window

    @property
    def remaining(self) -> int:
        return max(0, self.limit - self.used)


@dataclass
class _Identity:
    token: str | None  # the secret itself: used for lookups only, never logged
    ref: str
    user_id: int
    valid: bool = True

    @property
    def authenticated(self) -> bool:
        return self.token is not None and self.valid


@dataclass
class _Response:
    status: int
    body: bytes = b""
    content_type: str | None = _JSON
    headers: dict[str, str] = field(default_factory=dict)
    etag: bool = False
    close: bool = False  # drop the connection without answering


def _json_response(status: int, payload: Any, **kw: Any) -> _Response:
    return _Response(status, json.dumps(payload, separators=(",", ":")).encode(), **kw)


def _error(status: int, message: str, documentation_url: str = _DOCS, **extra: Any) -> _Response:
    return _json_response(status, {"message": message, **extra, "documentation_url": documentation_url,
                                   "status": str(status)})


def _not_found(documentation_url: str = _DOCS) -> _Response:
    return _error(404, "Not Found", documentation_url)


# --------------------------------------------------------------------- the server


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], standin: GitHubStandIn) -> None:
        super().__init__(address, _Handler)
        self.standin = standin
        self.open_sockets: set[socket.socket] = set()
        self.sockets_lock = threading.Lock()

    def process_request(self, request: Any, client_address: Any) -> None:
        with self.sockets_lock:
            self.open_sockets.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self.sockets_lock:
            self.open_sockets.discard(request)
        super().shutdown_request(request)

    def drop_connections(self) -> None:
        with self.sockets_lock:
            sockets = list(self.open_sockets)
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "GitHub.com"
    sys_version = ""
    timeout = 30
    wbufsize = -1  # buffer headers and body into one send (no Nagle/delayed-ACK stalls)
    server: _Server

    def setup(self) -> None:
        super().setup()
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def _dispatch(self) -> None:
        self.server.standin._handle(self)  # noqa: SLF001

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = _dispatch  # noqa: N815

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        pass

    def version_string(self) -> str:
        return self.server_version


class GitHubStandIn:
    """GitHub REST + GraphQL stand-in on ``127.0.0.1:<free port>``.

    :param fixtures: the data (default: ``make_fixtures()``).
    :param tokens: valid tokens and their REST ``core`` budget (a mapping), or an iterable of
        tokens that all get ``core_limit``. Token ``i`` is user ID ``i + 1``.
    :param graphql_limit: GraphQL points per token and window.
    :param search_limit: search requests per token per ``search_reset_seconds`` (GitHub: 30/min).
    :param anon_limit: REST budget without a token (GitHub: 60/h); ``anon_search_limit`` likewise.
    :param reset_seconds: the core/graphql window. ``retry_after``: default ``Retry-After`` of
        secondary-limit faults; ``reset_in``: default reset delay of ``exhausted`` faults.
    :param fault_rate, fault_seed, fault_kinds: a seeded random fault rate (see
        :meth:`set_fault_rate`).
    :param max_diff_files, max_diff_lines: above these the diff media type answers 406 (GitHub:
        300 files, 20,000 lines).
    :param schema_path: the GraphQL SDL (default ``../shared/github/schema.graphql``).
    :param clock: time source in epoch seconds (tests may inject one).
    """

    def __init__(
        self,
        fixtures: Fixtures | None = None,
        tokens: Mapping[str, int] | Iterable[str] | None = None,
        *,
        core_limit: int = 5000,
        graphql_limit: int = 5000,
        search_limit: int = 30,
        anon_limit: int = 60,
        anon_search_limit: int = 10,
        reset_seconds: float = 3600,
        search_reset_seconds: float = 60,
        retry_after: int = 1,
        reset_in: float = 2.0,
        fault_rate: float = 0.0,
        fault_seed: int = 0,
        fault_kinds: Iterable[str] | None = None,
        max_diff_files: int = 300,
        max_diff_lines: int = 20_000,
        schema_path: Path | None = None,
        clock: Callable[[], float] = time.time,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        self.fixtures = fixtures if fixtures is not None else make_fixtures()
        tokens = DEFAULT_TOKENS if tokens is None else tokens
        budgets = dict(tokens) if isinstance(tokens, Mapping) else {t: core_limit for t in tokens}
        self._tokens: dict[str, tuple[int, int]] = {t: (i, b) for i, (t, b) in enumerate(budgets.items())}
        self.graphql_limit, self.search_limit = graphql_limit, search_limit
        self.anon_limit, self.anon_search_limit = anon_limit, anon_search_limit
        self.reset_seconds, self.search_reset_seconds = reset_seconds, search_reset_seconds
        self.retry_after, self.reset_in = retry_after, reset_in
        self.max_diff_files, self.max_diff_lines = max_diff_files, max_diff_lines
        self.clock = clock
        self.engine = GraphQLEngine(self.fixtures, schema_path)
        self._lock = threading.RLock()
        self._buckets: dict[tuple[str, str], _Bucket] = {}
        self._faults: list[Fault] = []
        self._random: tuple[float, int, tuple[str, ...], Any] | None = None
        self._attempts: Counter[str] = Counter()  # request key -> times seen (fault draws)
        self._counts: Counter[str] = Counter()
        self._log: list[RequestRecord] = []
        self._request_seq = 0
        self.set_fault_rate(fault_rate, seed=fault_seed, kinds=fault_kinds)
        self._host, self._port = host, port
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle
    def start(self) -> GitHubStandIn:
        if self._server is None:
            self._server = _Server((self._host, self._port), self)
            self._thread = threading.Thread(target=self._server.serve_forever, name="github-standin",
                                            kwargs={"poll_interval": 0.05}, daemon=True)
            self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving, drop keep-alive connections and join the worker threads."""
        server, self._server = self._server, None
        if server is None:
            return
        server.shutdown()
        server.drop_connections()
        server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> GitHubStandIn:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("the stand-in is not running; call start() or use it as a context manager")
        return self._server.server_address[1]

    @property
    def url(self) -> str:
        """REST base URL, e.g. ``http://127.0.0.1:54321`` (like ``https://api.github.com``)."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def graphql_url(self) -> str:
        return f"{self.url}/graphql"

    # -- test controls
    def fault(self, kind: str, *, times: int = 1, match: str | Callable[[RequestRecord], bool] | None = None,
              retry_after: int | None = None, reset_in: float | None = None) -> Fault:
        """Queue a fault for the next ``times`` matching requests (FIFO among matching faults)."""
        if kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault kind {kind!r}; known: {FAULT_KINDS}")
        f = Fault(kind, times, match, retry_after, reset_in)
        with self._lock:
            self._faults.append(f)
        return f

    def set_fault_rate(self, rate: float, *, seed: int = 0, kinds: Iterable[str] | None = None,
                       match: str | Callable[[RequestRecord], bool] | None = None) -> None:
        """Fault a fraction ``rate`` of matching requests.

        Whether a request is faulted, and how, is drawn from ``seed``, the request itself
        (method, path, query, GraphQL query and variables) and how many times that same
        request was made before: never from arrival order, so concurrent clients see the
        same faults on every run. Each faulted request gets one of ``kinds`` (default:
        secondary, 429, 502, 503, 504, html) that applies to it (GraphQL-only kinds are skipped
        for REST requests). ``rate=0`` disables.
        """
        chosen = tuple(kinds or _DEFAULT_RANDOM_KINDS)
        unknown = set(chosen) - set(FAULT_KINDS)
        if unknown:
            raise ValueError(f"unknown fault kinds {sorted(unknown)}")
        with self._lock:
            self._random = (rate, seed, chosen, match) if rate > 0 else None
            self._attempts.clear()

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()
            self._random = None

    @property
    def pending_faults(self) -> list[Fault]:
        with self._lock:
            return list(self._faults)

    @property
    def counts(self) -> Counter[str]:
        """A snapshot of request counters (missing keys read as 0). Keys: ``total``, ``rest``,
        ``graphql``, ``search``, ``rest:<route template>``, status codes (``"200"``, ``"304"``...),
        ``faults``, ``fault:<kind>``, ``graphql:points``."""
        with self._lock:
            return Counter(self._counts)

    @property
    def requests(self) -> list[RequestRecord]:
        with self._lock:
            return list(self._log)

    def reset_counts(self) -> None:
        """Clear counters and the request log (rate limits are untouched)."""
        with self._lock:
            self._counts.clear()
            self._log.clear()

    def token_ref(self, token: str) -> str:
        """How the log refers to ``token`` (``token#<index>``)."""
        return f"token#{self._tokens[token][0]}"

    def rate_limit(self, token: str | None = None, resource: str = "core") -> RateSnapshot:
        """The current ``core``/``search``/``graphql`` bucket of ``token`` (None: anonymous)."""
        with self._lock:
            bucket = self._bucket(self._known(token), resource)
            return RateSnapshot(resource, bucket.limit, bucket.used, bucket.remaining, math.ceil(bucket.reset_at))

    def set_remaining(self, token: str | None, remaining: int, *, resource: str = "core",
                      reset_in: float | None = None) -> None:
        """Force a bucket's remaining budget (and optionally its reset time)."""
        with self._lock:
            bucket = self._bucket(self._known(token), resource)
            bucket.used = max(0, bucket.limit - remaining)
            if reset_in is not None:
                bucket.reset_at = self.clock() + reset_in

    def exhaust(self, token: str | None, *, resource: str = "core", reset_in: float | None = None) -> None:
        """Set a bucket's remaining to 0, resetting ``reset_in`` seconds from now."""
        self.set_remaining(token, 0, resource=resource, reset_in=self.reset_in if reset_in is None else reset_in)

    def add_pr(self, full_name: str, pr: PR | None = None, **fields: Any) -> PR:
        """:meth:`Fixtures.add_pr` (a PR newer than all others), visible to the next request."""
        return self.fixtures.add_pr(full_name, pr, **fields)

    @property
    def internal_errors(self) -> list[str]:
        """Tracebacks of stand-in bugs hit while executing GraphQL (should stay empty)."""
        return list(self.engine.internal_errors)

    @property
    def schema_validation(self) -> bool:
        """Whether GraphQL queries are validated against GitHub's published schema."""
        return self.engine.validating

    # -- internals: identity and rate limits
    def _known(self, token: str | None) -> _Identity:
        if token is not None and token not in self._tokens:
            raise KeyError("unknown token (not one the stand-in was constructed with)")
        return self._identify(f"token {token}" if token else None)

    def _identify(self, authorization: str | None) -> _Identity:
        if not authorization:
            return _Identity(None, "anonymous", 0)
        scheme, _, credential = authorization.strip().partition(" ")
        credential = credential.strip()
        if scheme.lower() in ("token", "bearer") and credential in self._tokens:
            index = self._tokens[credential][0]
            return _Identity(credential, f"token#{index}", index + 1)
        digest = hashlib.sha256(authorization.encode()).hexdigest()[:12]
        return _Identity(credential or None, f"invalid:{digest}", 0, valid=False)

    def _bucket(self, ident: _Identity, resource: str) -> _Bucket:
        key = (ident.token or "", resource)
        bucket = self._buckets.get(key)
        if bucket is None:
            if resource == "search":
                limit = self.search_limit if ident.token else self.anon_search_limit
                window = self.search_reset_seconds
            elif resource == "graphql":
                limit, window = (self.graphql_limit if ident.token else 0), self.reset_seconds
            else:
                limit = self._tokens[ident.token][1] if ident.token else self.anon_limit
                window = self.reset_seconds
            bucket = self._buckets[key] = _Bucket(limit, window)
        bucket.refresh(self.clock())
        return bucket

    def _rate_headers(self, ident: _Identity, resource: str) -> dict[str, str]:
        bucket = self._bucket(ident, resource)
        return {
            "x-ratelimit-limit": str(bucket.limit),
            "x-ratelimit-remaining": str(bucket.remaining),
            "x-ratelimit-reset": str(math.ceil(bucket.reset_at)),
            "x-ratelimit-used": str(bucket.used),
            "x-ratelimit-resource": resource,
        }

    def _primary_limited(self, ident: _Identity) -> _Response:
        stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(self.clock()))
        support = (f" If you reach out to GitHub Support for help, please include the request ID "
                   f"{self._request_id()} and timestamp {stamp} UTC.")
        if ident.token:
            return _error(403, f"API rate limit exceeded for user ID {ident.user_id}.{support}", _RATE_DOCS)
        return _error(403, "API rate limit exceeded for 127.0.0.1. (But here's the good news: Authenticated "
                           "requests get a higher rate limit. Check out the documentation for more details.)"
                           + support, _RATE_DOCS)

    def _request_id(self) -> str:
        with self._lock:
            self._request_seq += 1
            seq = self._request_seq
        return f"C0DE:{seq:05X}:{seq * 7919 % 0xFFFFFF:06X}:5EED"

    # -- internals: request handling
    def _handle(self, handler: _Handler) -> None:
        method = handler.command
        split = urlsplit(handler.path)
        path = split.path.rstrip("/") or "/"
        pairs = parse_qsl(split.query, keep_blank_values=True)
        query = {k: ("***" if k.lower() in ("access_token", "client_secret") else v) for k, v in pairs}
        length = int(handler.headers.get("Content-Length") or 0)
        raw = handler.rfile.read(length) if length > 0 else b""
        ident = self._identify(handler.headers.get("Authorization"))
        is_graphql = path == "/graphql" and method == "POST"
        route = None if is_graphql else _match_route(method, path)
        kind = "graphql" if is_graphql else ("search" if route and route[0] == "/search/repositories" else "rest")
        record = RequestRecord(
            method=method, path=path, query=dict(query),
            headers={k: v for k, v in ((h, handler.headers.get(h)) for h in _LOGGED_HEADERS) if v is not None},
            token=ident.ref, kind=kind, timestamp=self.clock(),
        )
        payload = _json_object(raw) if is_graphql else None
        if payload is not None:  # logged before faults, so fault predicates can look at the query
            record.graphql = {k: payload.get(k) for k in ("query", "variables", "operationName")}
        with self._lock:
            self._log.append(record)
            self._counts["total"] += 1
            self._counts[kind] += 1
            if kind != "graphql":
                self._counts["rest"] += kind == "search"  # search requests are REST requests too
                self._counts[f"rest:{route[0] if route else 'unknown'}"] += 1
        try:
            resp = self._respond(handler, record, ident, route, query, raw)
        except Exception as exc:  # a stand-in bug: answer 500 and keep the trace for the test
            self.engine.internal_errors.append("".join(traceback.format_exception(exc)))
            resp = _error(500, "Server Error")
        record.status = resp.status
        if not resp.close:
            with self._lock:
                self._counts[str(resp.status)] += 1
        try:
            self._write(handler, resp, method)
        except (BrokenPipeError, ConnectionResetError):
            handler.close_connection = True

    def _respond(self, handler: _Handler, record: RequestRecord, ident: _Identity,
                 route: tuple[str, Callable[..., _Response], dict[str, str]] | None,
                 query: dict[str, str], raw: bytes) -> _Response:
        if not ident.valid:
            return _error(401, "Bad credentials")
        resource = "graphql" if record.kind == "graphql" else ("search" if record.kind == "search" else "core")
        fault = self._take_fault(record)
        if fault is not None:
            record.fault = fault.kind
            return self._fault_response(fault, ident, resource)
        if record.kind == "graphql":
            return self._graphql(record, ident, _json_object(raw))
        if route is None:
            resp = _not_found()
            with self._lock:
                resp.headers.update(self._rate_headers(ident, "core"))
            return resp
        template, fn, params = route
        charged = template != "/rate_limit"
        with self._lock:
            if charged:
                bucket = self._bucket(ident, resource)
                if bucket.remaining <= 0:
                    resp = self._primary_limited(ident)
                    resp.headers.update(self._rate_headers(ident, resource))
                    return resp
                bucket.used += 1
        resp = fn(self, ident=ident, query=query, accept=handler.headers.get("Accept") or "", **params)
        if resp.etag and resp.status == 200:
            tag = 'W/"' + hashlib.sha256(resp.body).hexdigest()[:40] + '"'
            resp.headers["ETag"] = tag
            if _etag_matches(handler.headers.get("If-None-Match"), tag):
                resp = _Response(304, b"", None, {"ETag": tag, **{k: v for k, v in resp.headers.items()
                                                                  if k == "Link"}})
                if charged and ident.authenticated:  # conditional hits are free when authenticated
                    with self._lock:
                        self._bucket(ident, resource).used -= 1
        with self._lock:
            resp.headers.update(self._rate_headers(ident, "core" if not charged else resource))
        return resp

    def _take_fault(self, record: RequestRecord) -> Fault | None:
        with self._lock:
            for f in self._faults:
                if f.matches(record):
                    f.times -= 1
                    f.applied += 1
                    if f.times <= 0:
                        self._faults.remove(f)
                    break
            else:
                f = None
                if self._random is not None:
                    rate, seed, kinds, match = self._random
                    key = _request_key(record)
                    self._attempts[key] += 1
                    rng = random.Random(f"{seed}|{key}|{self._attempts[key]}")
                    if Fault("probe", match=match).matches(record) and rng.random() < rate:
                        usable = [k for k in kinds if Fault(k).matches(record)]
                        if usable:
                            f = Fault(rng.choice(usable), match=match)
            if f is not None:
                self._counts["faults"] += 1
                self._counts[f"fault:{f.kind}"] += 1
            return f

    def _fault_response(self, fault: Fault, ident: _Identity, resource: str) -> _Response:
        kind = fault.kind
        retry_after = str(self.retry_after if fault.retry_after is None else fault.retry_after)
        if kind == "disconnect":
            return _Response(0, close=True)
        if kind == "exhausted":
            with self._lock:
                bucket = self._bucket(ident, resource)
                bucket.used = bucket.limit
                bucket.reset_at = self.clock() + (self.reset_in if fault.reset_in is None else fault.reset_in)
                headers = self._rate_headers(ident, resource)
            resp = self._graphql_limited(ident) if resource == "graphql" else self._primary_limited(ident)
            resp.headers.update(headers)
            return resp
        with self._lock:
            headers = self._rate_headers(ident, resource) if ident.token or resource != "graphql" else {}
        if kind in ("secondary", "secondary_no_retry_after", "429"):
            resp = _error(
                429 if kind == "429" else 403,
                "You have exceeded a secondary rate limit. Please wait a few minutes before you try again. "
                f"If you reach out to GitHub Support for help, please include the request ID {self._request_id()}.",
                _SECONDARY_DOCS)
            if kind != "secondary_no_retry_after":
                resp.headers["Retry-After"] = retry_after
        elif kind in ("502", "503", "504"):
            headline, detail = {
                "502": ("Server Error", "Sorry, this page is taking way too long to load."),
                "503": ("No server is currently available to service your request.",
                        "Sorry about that. Please try refreshing and contact us if the problem persists."),
                "504": ("We couldn't respond to your request in time.",
                        "Sorry about that. Please try resubmitting your request and contact us if the "
                        "problem persists."),
            }[kind]
            html = _UNICORN.replace("{headline}", headline).replace("{detail}", detail)
            resp = _Response(int(kind), html.encode(), _HTML)
        elif kind == "html":
            resp = _Response(200, _HTML_PAGE.encode(), _HTML)
        elif kind == "graphql_timeout":
            resp = _json_response(502, {"data": None, "errors": [{"message": (
                "Something went wrong while executing your query. This may be the result of a timeout, or "
                f"it could be a GitHub bug. Please include `{self._request_id()}` when reporting this issue.")}]})
        else:  # graphql_rate_limited: a one-off answer; the real budget is untouched
            resp = self._graphql_limited(ident)
            reset = math.ceil(self.clock() + (self.reset_in if fault.reset_in is None else fault.reset_in))
            headers = {**headers, "x-ratelimit-remaining": "0", "x-ratelimit-reset": str(reset)}
        resp.headers.update(headers)
        return resp

    def _graphql_limited(self, ident: _Identity) -> _Response:
        return _json_response(200, {"data": None, "errors": [
            {"type": "RATE_LIMITED", "message": f"API rate limit exceeded for user ID {ident.user_id}."}]})

    def _graphql(self, record: RequestRecord, ident: _Identity, payload: dict[str, Any] | None) -> _Response:
        if not ident.authenticated:
            return _error(401, "This endpoint requires you to be authenticated.",
                          "https://docs.github.com/graphql/guides/forming-calls-with-graphql#authenticating-with-graphql")
        if payload is None:
            resp = _error(400, "Problems parsing JSON", "https://docs.github.com/graphql")
            with self._lock:
                resp.headers.update(self._rate_headers(ident, "graphql"))
            return resp
        with self._lock:
            bucket = self._bucket(ident, "graphql")
            exhausted = bucket.remaining <= 0
        prepared = None if exhausted else self.engine.prepare(
            payload.get("query"), payload.get("variables"), payload.get("operationName"))
        with self._lock:
            bucket = self._bucket(ident, "graphql")
            if isinstance(prepared, QueryPlan):
                cost = 0 if prepared.dry_run else prepared.cost
                if cost > bucket.remaining:
                    prepared, exhausted = None, True
                else:
                    bucket.used += cost
                    record.cost = cost
                    self._counts["graphql:points"] += cost
            headers = self._rate_headers(ident, "graphql")
            rate = {"cost": prepared.cost if isinstance(prepared, QueryPlan) else 0, "limit": bucket.limit,
                    "remaining": bucket.remaining, "used": bucket.used, "resetAt": iso_epoch(bucket.reset_at),
                    "nodeCount": prepared.node_count if isinstance(prepared, QueryPlan) else 0}
        if exhausted:
            resp = self._graphql_limited(ident)
        elif isinstance(prepared, list):
            resp = _json_response(200, {"errors": prepared})
        else:
            assert prepared is not None
            ctx = RequestContext(self.fixtures, ident.token, f"standin-user-{ident.user_id}", ident.user_id, rate)
            resp = _json_response(200, self.engine.execute(prepared, ctx))
        resp.headers.update(headers)
        return resp

    def _write(self, handler: _Handler, resp: _Response, method: str) -> None:
        if resp.close:
            handler.close_connection = True
            return
        handler.send_response(resp.status)
        headers = {
            "X-GitHub-Media-Type": "github.v3; format=json",
            "X-GitHub-Api-Version-Selected": "2022-11-28",
            "X-GitHub-Request-Id": self._request_id(),
            "Vary": "Accept, Authorization, Cookie, X-GitHub-OTP",
            "Cache-Control": "private, max-age=60, s-maxage=60",
            "Access-Control-Expose-Headers": (
                "ETag, Link, Location, Retry-After, X-GitHub-OTP, X-RateLimit-Limit, X-RateLimit-Remaining, "
                "X-RateLimit-Used, X-RateLimit-Resource, X-RateLimit-Reset, X-OAuth-Scopes, "
                "X-Accepted-OAuth-Scopes, X-Poll-Interval, X-GitHub-Media-Type, X-GitHub-SSO, "
                "X-GitHub-Request-Id, Deprecation, Sunset"),
            **resp.headers,
        }
        if resp.content_type and resp.status != 304:
            headers["Content-Type"] = resp.content_type
        for name, value in headers.items():
            handler.send_header(name, value)
        if resp.status != 304:
            handler.send_header("Content-Length", str(len(resp.body)))
        handler.end_headers()
        if resp.status != 304 and method != "HEAD":
            handler.wfile.write(resp.body)
        handler.wfile.flush()

    # -- REST resources
    def _repo_for(self, owner: str, repo: str, ident: _Identity) -> Repo | None:
        found = self.fixtures.get_repo(f"{owner}/{repo}")
        return found if found is not None and found.visible(ident.token) else None

    def _user_json(self, login: str, kind: str = "User") -> dict[str, Any]:
        uid = int(hashlib.sha1(login.encode()).hexdigest()[:7], 16)
        html = f"https://github.com/apps/{login.removesuffix('[bot]')}" if kind == "Bot" else f"https://github.com/{login}"
        api = f"{self.url}/users/{quote(login)}"
        return {
            "login": login, "id": uid, "node_id": ("BOT_" if kind == "Bot" else "MDQ6VXNlcj") + str(uid),
            "avatar_url": f"https://avatars.githubusercontent.com/u/{uid}?v=4", "gravatar_id": "",
            "url": api, "html_url": html, "followers_url": f"{api}/followers",
            "repos_url": f"{api}/repos", "events_url": f"{api}/events{{/privacy}}", "type": kind,
            "user_view_type": "public", "site_admin": False,
        }

    def _repo_json(self, repo: Repo, *, full: bool = False, authenticated: bool = False) -> dict[str, Any]:
        api = f"{self.url}/repos/{repo.full_name}"
        lic = repo.license_info
        open_prs = sum(p.state == "OPEN" for p in repo.prs)
        data: dict[str, Any] = {
            "id": repo.id, "node_id": repo.node_id, "name": repo.name, "full_name": repo.full_name,
            "private": repo.private, "owner": self._user_json(repo.owner, repo.owner_type),
            "html_url": f"https://github.com/{repo.full_name}", "description": repo.description,
            "fork": repo.fork, "url": api, "pulls_url": f"{api}/pulls{{/number}}",
            "issues_url": f"{api}/issues{{/number}}", "commits_url": f"{api}/commits{{/sha}}",
            "contents_url": f"{api}/contents/{{+path}}", "languages_url": f"{api}/languages",
            "created_at": repo.created_at, "updated_at": repo.pushed_at, "pushed_at": repo.pushed_at,
            "git_url": f"git://github.com/{repo.full_name}.git", "ssh_url": f"git@github.com:{repo.full_name}.git",
            "clone_url": f"https://github.com/{repo.full_name}.git", "svn_url": f"https://github.com/{repo.full_name}",
            "homepage": None, "size": 1000 + 37 * len(repo.prs), "stargazers_count": repo.stars,
            "watchers_count": repo.stars, "language": repo.language, "has_issues": True,
            "has_projects": True, "has_downloads": True, "has_wiki": False, "has_pages": False,
            "has_discussions": False, "forks_count": repo.forks, "mirror_url": None,
            "archived": repo.archived, "disabled": False, "open_issues_count": open_prs,
            "license": None if lic is None else {
                "key": lic[1], "name": lic[2], "spdx_id": lic[0],
                "url": None if lic[1] == "other" else f"{self.url}/licenses/{lic[1]}",
                "node_id": "MDc6TGljZW5zZT" + hashlib.md5(lic[1].encode()).hexdigest()[:4]},
            "allow_forking": True, "is_template": False, "web_commit_signoff_required": False,
            "topics": list(repo.topics), "visibility": "private" if repo.private else "public",
            "forks": repo.forks, "open_issues": open_prs, "watchers": repo.stars,
            "default_branch": repo.default_branch,
        }
        if authenticated:
            data["permissions"] = {"admin": False, "maintain": False, "push": False, "triage": False, "pull": True}
        if full:
            data.update(network_count=repo.forks, subscribers_count=max(1, repo.stars // 30))
        return data

    def _pr_json(self, repo: Repo, pr: PR, *, full: bool) -> dict[str, Any]:
        api = f"{self.url}/repos/{repo.full_name}"
        html = f"https://github.com/{repo.full_name}/pull/{pr.number}"
        author = self._user_json(pr.author, "Bot" if pr.is_bot else "User")
        repo_json = self._repo_json(repo)

        def ref(name: str, sha: str) -> dict[str, Any]:
            return {"label": f"{repo.owner}:{name}", "ref": name, "sha": sha,
                    "user": self._user_json(repo.owner, repo.owner_type), "repo": repo_json}

        data: dict[str, Any] = {
            "url": f"{api}/pulls/{pr.number}", "id": pr.database_id, "node_id": pr.node_id,
            "html_url": html, "diff_url": f"{html}.diff", "patch_url": f"{html}.patch",
            "issue_url": f"{api}/issues/{pr.number}", "number": pr.number,
            "state": "open" if pr.state == "OPEN" else "closed", "locked": False, "title": pr.title,
            "user": author, "body": pr.body,
            "labels": [{"id": int(hashlib.sha1(n.encode()).hexdigest()[:8], 16), "node_id": "LA_" + n,
                        "url": f"{api}/labels/{quote(n)}", "name": n, "color": "ededed", "default": False,
                        "description": None} for n in pr.labels],
            "milestone": None, "active_lock_reason": None, "created_at": pr.created_at,
            "updated_at": pr.updated_at, "closed_at": pr.closed_at, "merged_at": pr.merged_at,
            "merge_commit_sha": pr.merge_commit_oid, "assignee": None, "assignees": [],
            "requested_reviewers": [], "requested_teams": [],
            "commits_url": f"{api}/pulls/{pr.number}/commits",
            "review_comments_url": f"{api}/pulls/{pr.number}/comments",
            "comments_url": f"{api}/issues/{pr.number}/comments",
            "statuses_url": f"{api}/statuses/{pr.head_oid}",
            "head": ref(pr.head_ref, pr.head_oid), "base": ref(pr.base_ref, pr.base_oid),
            "_links": {"self": {"href": f"{api}/pulls/{pr.number}"}, "html": {"href": html},
                       "issue": {"href": f"{api}/issues/{pr.number}"}},
            "author_association": pr.author_association, "auto_merge": None, "draft": pr.draft,
        }
        if full:
            data.update(
                merged=pr.merged, mergeable=None if pr.state != "OPEN" else True, rebaseable=None,
                mergeable_state="unknown" if pr.state != "OPEN" else "clean",
                merged_by=self._user_json(pr.merged_by) if pr.merged_by else None, comments=0,
                review_comments=0, maintainer_can_modify=False, commits=1 + len(pr.files) // 8,
                additions=pr.additions, deletions=pr.deletions, changed_files=pr.changed_files,
            )
        return data

    def _file_json(self, repo: Repo, pr: PR, f: Any) -> dict[str, Any]:
        path = quote(f.path)
        data: dict[str, Any] = {
            "sha": f.old_blob if f.change_type == "DELETED" else f.new_blob, "filename": f.path,
            "status": f.status, "additions": f.additions, "deletions": f.deletions, "changes": f.changes,
            "blob_url": f"https://github.com/{repo.full_name}/blob/{pr.head_oid}/{path}",
            "raw_url": f"https://github.com/{repo.full_name}/raw/{pr.head_oid}/{path}",
            "contents_url": f"{self.url}/repos/{repo.full_name}/contents/{path}?ref={pr.head_oid}",
        }
        if f.patch is not None:
            data["patch"] = f.patch
        if f.previous_path:
            data["previous_filename"] = f.previous_path
        return data

    def _paged(self, items: list[Any], query: dict[str, str], link_base: str, *,
               last_item: int | None = None) -> tuple[list[Any], dict[str, str]]:
        """Slice ``items`` by page/per_page and build GitHub's Link header."""
        per_page, page = _page_params(query)
        reachable = len(items) if last_item is None else min(len(items), last_item)
        start = (page - 1) * per_page
        chunk = items[start:min(start + per_page, reachable)]
        last = max(1, math.ceil(reachable / per_page))
        links = []

        def url(p: int) -> str:
            params = {k: v for k, v in query.items() if k != "page"}
            params["page"] = str(p)
            return f"{link_base}?{urlencode(params)}"

        if page > 1:
            links.append(f'<{url(min(page - 1, last))}>; rel="prev"')
        if page < last:
            links.append(f'<{url(page + 1)}>; rel="next"')
            links.append(f'<{url(last)}>; rel="last"')
        if page > 1:
            links.append(f'<{url(1)}>; rel="first"')
        return chunk, ({"Link": ", ".join(links)} if links else {})

    def r_rate_limit(self, *, ident: _Identity, **_: Any) -> _Response:
        with self._lock:
            resources = {}
            for name in ("core", "search", "graphql"):
                b = self._bucket(ident, name)
                resources[name] = {"limit": b.limit, "used": b.used, "remaining": b.remaining,
                                   "reset": math.ceil(b.reset_at)}
        for name, limit in (("integration_manifest", 5000), ("code_search", 10), ("source_import", 100)):
            resources[name] = {"limit": limit, "used": 0, "remaining": limit,
                               "reset": math.ceil(self.clock() + 3600)}
        return _json_response(200, {"resources": resources, "rate": resources["core"]})

    def r_user(self, *, ident: _Identity, **_: Any) -> _Response:
        if not ident.authenticated:
            return _error(401, "Requires authentication",
                          "https://docs.github.com/rest/users/users#get-the-authenticated-user")
        user = self._user_json(f"standin-user-{ident.user_id}")
        user["id"] = ident.user_id
        return _json_response(200, user, etag=True)

    def r_repo(self, *, ident: _Identity, owner: str, repo: str, **_: Any) -> _Response:
        found = self._repo_for(owner, repo, ident)
        if found is None:
            return _not_found("https://docs.github.com/rest/repos/repos#get-a-repository")
        return _json_response(200, self._repo_json(found, full=True, authenticated=ident.authenticated), etag=True)

    def r_search(self, *, ident: _Identity, query: dict[str, str], **_: Any) -> _Response:
        docs = "https://docs.github.com/v3/search"
        q = query.get("q", "").strip()
        if not q:
            return _error(422, "Validation Failed", "https://docs.github.com/v3/search",
                          errors=[{"resource": "Search", "field": "q", "code": "missing"}])
        per_page, page = _page_params(query)
        if (page - 1) * per_page >= _SEARCH_CAP:
            return _error(422, "Only the first 1000 search results are available", docs)
        sort = query.get("sort") if query.get("sort") in ("stars", "forks", "updated") else None
        try:
            hits = self.fixtures.search(q, token=ident.token, sort=sort, order=query.get("order", "desc"))
        except SearchQueryError as exc:
            return _error(422, "Validation Failed", docs, errors=[
                {"message": str(exc), "resource": "Search", "field": "q", "code": "invalid"}])
        chunk, headers = self._paged(hits, query, f"{self.url}/search/repositories", last_item=_SEARCH_CAP)
        items = [{**self._repo_json(r, authenticated=ident.authenticated), "score": 1.0} for r in chunk]
        return _json_response(200, {"total_count": len(hits), "incomplete_results": False, "items": items},
                              headers=headers, etag=True)

    def r_pulls(self, *, ident: _Identity, query: dict[str, str], owner: str, repo: str, **_: Any) -> _Response:
        found = self._repo_for(owner, repo, ident)
        if found is None:
            return _not_found("https://docs.github.com/rest/pulls/pulls#list-pull-requests")
        state = query.get("state", "open")
        prs = [p for p in found.prs if state == "all" or (p.state == "OPEN") == (state == "open")]
        if "base" in query:
            prs = [p for p in prs if p.base_ref == query["base"]]
        if "head" in query:
            prs = [p for p in prs if f"{found.owner}:{p.head_ref}" == query["head"]]
        sort = query.get("sort", "created")
        direction = query.get("direction", "desc" if sort == "created" else "asc")
        key: Callable[[PR], Any] = {
            "updated": lambda p: (p.updated_at, p.number), "popularity": lambda p: (p.changed_files, p.number),
            "long-running": lambda p: (p.created_at, p.number),
        }.get(sort, lambda p: (p.created_at, p.number))
        prs = sorted(prs, key=key, reverse=direction == "desc")
        chunk, headers = self._paged(prs, query, f"{self.url}/repositories/{found.id}/pulls")
        return _json_response(200, [self._pr_json(found, p, full=False) for p in chunk], headers=headers, etag=True)

    def r_pull(self, *, ident: _Identity, accept: str, owner: str, repo: str, number: str, **_: Any) -> _Response:
        found = self._repo_for(owner, repo, ident)
        pr = found.pr(int(number)) if found else None
        if found is None or pr is None:
            return _not_found("https://docs.github.com/rest/pulls/pulls#get-a-pull-request")
        media = re.search(r"application/vnd\.github(?:\.v3)?\.(diff|patch)", accept)
        if not media:
            return _json_response(200, self._pr_json(found, pr, full=True), etag=True)
        diff = pr.diff()
        lines = diff.count("\n")
        if len(pr.files) > self.max_diff_files or lines > self.max_diff_lines:
            what = (f"files ({self.max_diff_files})" if len(pr.files) > self.max_diff_files
                    else f"lines ({self.max_diff_lines})")
            return _error(406, f"Sorry, the diff exceeded the maximum number of {what}. Consider using "
                               "'List pull requests files' API or locally cloning the repository instead.",
                          "https://docs.github.com/rest/pulls/pulls#list-pull-requests-files",
                          errors=[{"resource": "PullRequest", "field": "diff", "code": "too_large"}])
        if media.group(1) == "patch":
            diff = (f"From {pr.head_oid} Mon Sep 17 00:00:00 2001\nFrom: {pr.author} "
                    f"<{pr.author}@users.noreply.github.com>\nDate: {pr.created_at}\n"
                    f"Subject: [PATCH] {pr.title}\n\n---\n{diff}--\n2.43.0\n")
        return _Response(200, diff.encode(), f"{media.group(0)}; charset=utf-8",
                         {"X-GitHub-Media-Type": f"github.v3; param={media.group(1)}"}, etag=True)

    def r_pull_files(self, *, ident: _Identity, query: dict[str, str], owner: str, repo: str, number: str,
                     **_: Any) -> _Response:
        found = self._repo_for(owner, repo, ident)
        pr = found.pr(int(number)) if found else None
        if found is None or pr is None:
            return _not_found("https://docs.github.com/rest/pulls/pulls#list-pull-requests-files")
        files = pr.files[:_MAX_FILES]
        chunk, headers = self._paged(files, query, f"{self.url}/repositories/{found.id}/pulls/{pr.number}/files")
        return _json_response(200, [self._file_json(found, pr, f) for f in chunk], headers=headers, etag=True)

    def r_by_id(self, *, ident: _Identity, repo_id: str, rest: str, **kw: Any) -> _Response:
        found = self.fixtures.repo_by_id(int(repo_id))
        if found is None or not found.visible(ident.token):
            return _not_found()
        inner = _match_route("GET", f"/repos/{found.owner}/{found.name}{rest}")
        if inner is None:
            return _not_found()
        return inner[1](self, ident=ident, **kw, **inner[2])


_ROUTES: list[tuple[str, re.Pattern[str], Callable[..., _Response]]] = [
    ("/rate_limit", re.compile(r"^/rate_limit$"), GitHubStandIn.r_rate_limit),
    ("/user", re.compile(r"^/user$"), GitHubStandIn.r_user),
    ("/search/repositories", re.compile(r"^/search/repositories$"), GitHubStandIn.r_search),
    ("/repos/{o}/{r}", re.compile(r"^/repos/(?P<owner>[^/]+)/(?P<repo>[^/]+)$"), GitHubStandIn.r_repo),
    ("/repos/{o}/{r}/pulls", re.compile(r"^/repos/(?P<owner>[^/]+)/(?P<repo>[^/]+)/pulls$"),
     GitHubStandIn.r_pulls),
    ("/repos/{o}/{r}/pulls/{n}", re.compile(r"^/repos/(?P<owner>[^/]+)/(?P<repo>[^/]+)/pulls/(?P<number>\d+)$"),
     GitHubStandIn.r_pull),
    ("/repos/{o}/{r}/pulls/{n}/files",
     re.compile(r"^/repos/(?P<owner>[^/]+)/(?P<repo>[^/]+)/pulls/(?P<number>\d+)/files$"),
     GitHubStandIn.r_pull_files),
    ("/repositories/{id}/...", re.compile(r"^/repositories/(?P<repo_id>\d+)(?P<rest>(?:/.*)?)$"),
     GitHubStandIn.r_by_id),
]


def _match_route(method: str, path: str) -> tuple[str, Callable[..., _Response], dict[str, str]] | None:
    if method not in ("GET", "HEAD"):
        return None
    for template, pattern, fn in _ROUTES:
        m = pattern.match(path)
        if m:
            if template == "/repositories/{id}/...":
                template = "/repos/{o}/{r}" + re.sub(r"/\d+", "/{n}", m.group("rest"))
            return template, fn, m.groupdict()
    return None


def _json_object(raw: bytes) -> dict[str, Any] | None:
    """The request body as a JSON object, or None if it is not one."""
    try:
        payload = json.loads(raw or b"null")
    except ValueError:
        return None
    return payload if isinstance(payload, dict) else None


def _page_params(query: Mapping[str, str]) -> tuple[int, int]:
    def as_int(value: str | None, default: int) -> int:
        try:
            return int(value) if value not in (None, "") else default  # type: ignore[arg-type]
        except ValueError:
            return default

    per_page = min(100, max(1, as_int(query.get("per_page"), 30)))
    page = max(1, as_int(query.get("page"), 1))
    return per_page, page


def _etag_matches(header: str | None, tag: str) -> bool:
    if not header:
        return False
    bare = tag.removeprefix("W/")
    return header.strip() == "*" or any(t.strip().removeprefix("W/") == bare for t in header.split(","))


# ------------------------------------------------------------------ pytest fixtures


@pytest.fixture
def github_standin() -> Iterator[GitHubStandIn]:
    """A running stand-in over ``make_fixtures()`` with tokens ``tok-a`` and ``tok-b``."""
    with GitHubStandIn(make_fixtures(), tokens=DEFAULT_TOKENS) as gh:
        yield gh


@pytest.fixture
def github_standin_factory() -> Iterator[Callable[..., GitHubStandIn]]:
    """Start stand-ins with custom arguments; all are stopped at teardown."""
    started: list[GitHubStandIn] = []

    def factory(fixtures: Fixtures | None = None, **kwargs: Any) -> GitHubStandIn:
        gh = GitHubStandIn(fixtures if fixtures is not None else make_fixtures(), **kwargs).start()
        started.append(gh)
        return gh

    yield factory
    for gh in started:
        gh.stop()
