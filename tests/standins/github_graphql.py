"""GraphQL v4 half of the GitHub stand-in: schema loading, static checks, cost, resolvers.

Queries are parsed, validated against GitHub's published schema (``/work/shared/github/
schema.graphql``, or ``$SYNTH_GITHUB_SCHEMA``), checked for GitHub's pagination rules
(``first``/``last`` required when nodes are selected, at most 100, at most 500,000 nodes),
costed like GitHub (connection requests / 100, minimum 1) and executed with graphql-core
against resolver objects over :mod:`github_fixtures`, so answers are shaped like GitHub's.

When the schema file is absent a small built-in SDL (:data:`MINI_SDL`) covering the supported
fields is used for execution only, validation is skipped and a :class:`UserWarning` says so.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
import re
import threading
import traceback
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from graphql import (
    DocumentNode,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLError,
    GraphQLSchema,
    InlineFragmentNode,
    OperationDefinitionNode,
    SelectionSetNode,
    build_schema,
    execute_sync,
    get_named_type,
    parse,
    validate,
)
from graphql.pyutils import Undefined
from graphql.utilities import get_operation_ast, value_from_ast_untyped

from .github_fixtures import PR, Fixtures, IssueRef, Repo, SearchQueryError, format_iso

__all__ = [
    "MINI_SDL",
    "SCHEMA_ENV",
    "GraphQLEngine",
    "QueryPlan",
    "RequestContext",
    "default_schema_path",
    "format_error",
    "iso_epoch",
    "load_schema",
]

SCHEMA_ENV = "SYNTH_GITHUB_SCHEMA"
MAX_PAGE = 100
MAX_NODES = 500_000
SEARCH_CAP = 1000
HTML = "https://github.com"


def default_schema_path() -> Path:
    """``$SYNTH_GITHUB_SCHEMA`` or ``<repo root>/../shared/github/schema.graphql``."""
    env = os.environ.get(SCHEMA_ENV)
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[3] / "shared" / "github" / "schema.graphql"


_SCHEMAS: dict[str, tuple[GraphQLSchema, bool]] = {}
_SCHEMA_LOCK = threading.Lock()


def load_schema(path: Path | None = None) -> tuple[GraphQLSchema, bool]:
    """Build (once per process and path) the schema; returns ``(schema, validating)``.

    ``validating`` is False when the published schema is missing and the built-in
    :data:`MINI_SDL` is used instead (a warning gives the reason).
    """
    path = path or default_schema_path()
    key = str(path)
    with _SCHEMA_LOCK:
        if key not in _SCHEMAS:
            if path.is_file():
                schema = build_schema(path.read_text(encoding="utf-8"), assume_valid_sdl=True)
                # The published SDL repeats a few fields and trips graphql-core's strict
                # interface checks; treat it as already validated.
                schema._validation_errors = []  # noqa: SLF001
                _SCHEMAS[key] = (schema, True)
            else:
                warnings.warn(
                    f"GitHub GraphQL schema not found at {path} (set ${SCHEMA_ENV} to override): "
                    "queries are NOT validated against GitHub's schema, only executed against the "
                    "stand-in's built-in subset", UserWarning, stacklevel=2)
                _SCHEMAS[key] = (build_schema(MINI_SDL), False)
        return _SCHEMAS[key]


# ----------------------------------------------------------------------- static checks


@dataclass
class QueryPlan:
    """A parsed, validated query with its GitHub-style cost."""

    document: DocumentNode
    operation_name: str | None
    variables: dict[str, Any]
    requests: int = 0
    node_count: int = 0
    dry_run: bool = False

    @property
    def cost(self) -> int:
        """GitHub's formula: connection requests divided by 100, rounded, at least 1."""
        return max(1, round(self.requests / 100))


def _gh_error(message: str, type_: str | None = None, *, path: Sequence[str | int] | None = None,
              node: Any = None) -> dict[str, Any]:
    err: dict[str, Any] = {}
    if type_:
        err["type"] = type_
    if path:
        err["path"] = list(path)
    if node is not None and node.loc is not None:
        loc = node.loc.source.get_location(node.loc.start)
        err["locations"] = [{"line": loc.line, "column": loc.column}]
    err["message"] = message
    return err


def format_error(err: GraphQLError) -> dict[str, Any]:
    """A graphql-core error in GitHub's JSON shape (``type`` at top level)."""
    out: dict[str, Any] = {}
    ext = dict(err.extensions or {})
    if "type" in ext:
        out["type"] = ext.pop("type")
    if err.path:
        out["path"] = list(err.path)
    if err.locations:
        out["locations"] = [{"line": loc.line, "column": loc.column} for loc in err.locations]
    out["message"] = err.message
    if ext:
        out["extensions"] = ext
    return out


class _Analyser:
    """Walks the operation to count connection requests and enforce pagination rules."""

    def __init__(self, schema: GraphQLSchema, document: DocumentNode, variables: dict[str, Any]) -> None:
        self.schema = schema
        self.variables = variables
        self.fragments = {d.name.value: d for d in document.definitions
                          if isinstance(d, FragmentDefinitionNode)}
        self.errors: list[dict[str, Any]] = []
        self.requests = 0
        self.nodes = 0
        self.dry_run = False

    def value(self, node: Any) -> Any:
        value = value_from_ast_untyped(node, self.variables)
        return None if value is Undefined else value

    def run(self, op: OperationDefinitionNode) -> None:
        for definition in op.variable_definitions or ():
            name = definition.variable.name.value
            if self.variables.get(name) is None and definition.default_value is not None:
                self.variables = {**self.variables, name: value_from_ast_untyped(definition.default_value)}
        root = self.schema.get_root_type(op.operation)
        if root is not None:
            self.walk(op.selection_set, root, 1, [op.operation.value], 0)

    def _selects_nodes(self, sel_set: SelectionSetNode | None, depth: int = 0) -> bool:
        if sel_set is None or depth > 20:
            return False
        for sel in sel_set.selections:
            if isinstance(sel, FieldNode) and sel.name.value in ("nodes", "edges"):
                return True
            if isinstance(sel, InlineFragmentNode) and self._selects_nodes(sel.selection_set, depth + 1):
                return True
            if isinstance(sel, FragmentSpreadNode):
                frag = self.fragments.get(sel.name.value)
                if frag and self._selects_nodes(frag.selection_set, depth + 1):
                    return True
        return False

    def walk(self, sel_set: SelectionSetNode, parent: Any, mult: int, path: list[str], depth: int) -> None:
        if depth > 40:
            return
        for sel in sel_set.selections:
            if isinstance(sel, InlineFragmentNode):
                t = self.schema.get_type(sel.type_condition.name.value) if sel.type_condition else parent
                self.walk(sel.selection_set, t or parent, mult, path, depth + 1)
                continue
            if isinstance(sel, FragmentSpreadNode):
                frag = self.fragments.get(sel.name.value)
                if frag is not None:
                    t = self.schema.get_type(frag.type_condition.name.value)
                    self.walk(frag.selection_set, t or parent, mult, path, depth + 1)
                continue
            if not isinstance(sel, FieldNode):
                continue
            name = sel.name.value
            fields = getattr(parent, "fields", None)
            if name.startswith("__") or not fields or name not in fields:
                continue
            fdef = fields[name]
            named = get_named_type(fdef.type)
            args = {a.name.value: self.value(a.value) for a in sel.arguments or ()}
            here = [*path, (sel.alias or sel.name).value]
            if name == "rateLimit" and args.get("dryRun"):
                self.dry_run = True
            child = mult
            if named.name.endswith("Connection") and ("first" in fdef.args or "last" in fdef.args):
                child = self._connection(sel, name, args, mult, here)
            if sel.selection_set is not None:
                self.walk(sel.selection_set, named, child, here, depth + 1)

    def _connection(self, sel: FieldNode, name: str, args: dict[str, Any], mult: int, path: list[str]) -> int:
        first, last = args.get("first"), args.get("last")
        if first is not None and last is not None:
            self.errors.append(_gh_error(
                f"Passing both `first` and `last` to paginate the `{name}` connection is not supported.",
                None, path=path, node=sel))
            return 0
        size = first if first is not None else last
        bound = "first" if first is not None else "last"
        if size is None:
            if self._selects_nodes(sel.selection_set):
                self.errors.append(_gh_error(
                    f"You must provide a `first` or `last` value to properly paginate the `{name}` connection.",
                    "MISSING_PAGINATION_BOUNDARIES", path=path, node=sel))
            self.requests += mult
            return 0
        if not isinstance(size, int) or size < 0:
            self.errors.append(_gh_error(
                f"`{bound}` on the `{name}` connection cannot be less than zero.", None, path=path, node=sel))
            return 0
        if size > MAX_PAGE:
            self.errors.append(_gh_error(
                f"Requesting {size} records on the `{name}` connection exceeds the `{bound}` limit of "
                f"{MAX_PAGE} records.", "EXCESSIVE_PAGINATION", path=path, node=sel))
            return 0
        self.requests += mult
        self.nodes += mult * size
        return mult * size


# ------------------------------------------------------------------------- resolvers


@dataclass
class RequestContext:
    """Per-request state the resolvers need."""

    fixtures: Fixtures
    token: str | None
    viewer_login: str
    viewer_id: int
    rate: dict[str, Any] = field(default_factory=dict)


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode().rstrip("=")


def _unb64(cursor: str) -> str:
    try:
        return base64.b64decode(cursor + "=" * (-len(cursor) % 4), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError) as exc:
        raise _invalid_cursor(cursor) from exc


def _invalid_cursor(cursor: str) -> GraphQLError:
    return GraphQLError(f"`{cursor}` does not appear to be a valid cursor.",
                        extensions={"type": "INVALID_CURSOR_ARGUMENTS"})


def _index_cursor(i: int) -> str:
    return _b64(str(i + 1))


def _index_from_cursor(cursor: str) -> int:
    text = _unb64(cursor)
    if not text.isdigit():
        raise _invalid_cursor(cursor)
    return int(text) - 1


def _connection(entries: Sequence[tuple[Any, Any]], *, first: int | None, last: int | None,
                after: str | None, before: str | None, encode: Callable[[Any], str],
                decode: Callable[[str], Any], descending: bool = False,
                total: int | None = None, wrap: Callable[[Any], Any] = lambda x: x) -> dict[str, Any]:
    """Relay pagination over ``(key, item)`` pairs sorted by key (descending if asked)."""

    def beyond(k: Any, ck: Any) -> bool:
        return k < ck if descending else k > ck

    n = len(entries)
    start, end = 0, n
    if after is not None:
        ck = decode(after)
        start = next((i for i, (k, _) in enumerate(entries) if beyond(k, ck)), n)
    if before is not None:
        ck = decode(before)
        end = next((i for i, (k, _) in enumerate(entries) if not beyond(ck, k)), n)
    end = max(start, end)
    if first is not None:
        end = min(end, start + first)
    if last is not None:
        start = max(start, end - last)
    page = entries[start:end]
    nodes = [wrap(item) for _, item in page]
    cursors = [encode(k) for k, _ in page]
    return {
        "totalCount": n if total is None else total,
        "pageInfo": {
            "hasNextPage": end < n,
            "hasPreviousPage": start > 0,
            "startCursor": cursors[0] if cursors else None,
            "endCursor": cursors[-1] if cursors else None,
        },
        "nodes": nodes,
        "edges": [{"cursor": c, "node": node} for c, node in zip(cursors, nodes, strict=True)],
    }


def _actor(login: str, is_bot: bool, graphql_login: str | None = None) -> dict[str, Any]:
    shown = graphql_login or login
    url = f"{HTML}/apps/{shown}" if is_bot else f"{HTML}/{shown}"
    db_id = int.from_bytes(login.encode()[:6].ljust(6, b"\0"), "big") % 10**8
    return {
        "__typename": "Bot" if is_bot else "User", "login": shown, "url": url,
        "resourcePath": url.removeprefix(HTML), "avatarUrl": f"https://avatars.githubusercontent.com/u/{db_id}?v=4",
        "id": ("BOT_" if is_bot else "U_") + _b64(f"{login}:{db_id}"), "databaseId": db_id,
        "name": None if is_bot else login.replace("-", " ").title(), "email": "",
    }


def _strip_markdown(text: str) -> str:
    text = re.sub(r"<[^>]+>", "", text)
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", text)
    text = re.sub(r"^#{1,6}\s*", "", text, flags=re.M)
    text = re.sub(r"[*_`]", "", text)
    return text.strip()


# Resolver objects. graphql-core's default resolver reads the attribute named like the field
# (hence the camelCase names) and calls methods with ``(info, **arguments)``; ``__typename``
# (name-mangled as graphql-core expects) resolves interfaces and unions.


class IssueNode:
    __typename = "Issue"

    def __init__(self, issue: IssueRef, repo: RepoNode, closed_at: str | None) -> None:
        self.number = issue.number
        self.title = issue.title
        self.body = issue.body or ""
        self.bodyText = _strip_markdown(self.body)
        self.url = f"{HTML}/{repo.nameWithOwner}/issues/{issue.number}"
        self.state = issue.state
        self.closed = issue.state == "CLOSED"
        self.closedAt = closed_at if self.closed else None
        self.createdAt = issue.created_at
        self.updatedAt = closed_at or issue.created_at
        self.databaseId = 5 * 10**8 + issue.number + repo.databaseId % 10**6 * 1000
        self.id = "I_kwDO" + _b64(f"{repo.nameWithOwner}#{issue.number}")
        self.repository = repo
        self.author = _actor("issue-reporter", False)


class CommitNode:
    __typename = "Commit"

    def __init__(self, oid: str, repo: RepoNode, headline: str, date: str) -> None:
        self.oid = oid
        self.abbreviatedOid = oid[:7]
        self.url = f"{HTML}/{repo.nameWithOwner}/commit/{oid}"
        self.commitUrl = self.url
        self.resourcePath = self.url.removeprefix(HTML)
        self.commitResourcePath = self.resourcePath
        self.messageHeadline = headline
        self.committedDate = date
        self.id = "C_kwDO" + _b64(oid[:20])
        self.repository = repo


class PRNode:
    __typename = "PullRequest"

    def __init__(self, pr: PR, repo: RepoNode) -> None:
        self._pr = pr
        self._repo = repo
        self.number = pr.number
        self.title = pr.title
        self.body = pr.body or ""
        self.bodyText = _strip_markdown(self.body)
        self.bodyHTML = "".join(f"<p>{p}</p>" for p in self.body.split("\n\n") if p)
        self.url = f"{HTML}/{repo.nameWithOwner}/pull/{pr.number}"
        self.permalink = self.url
        self.resourcePath = self.url.removeprefix(HTML)
        self.state = pr.state
        self.merged = pr.merged
        self.mergedAt = pr.merged_at
        self.closed = pr.state != "OPEN"
        self.closedAt = pr.closed_at
        self.createdAt = pr.created_at
        self.publishedAt = pr.created_at
        self.updatedAt = pr.updated_at
        self.lastEditedAt = None
        self.author = _actor(pr.author, pr.is_bot, pr.graphql_login)
        self.authorAssociation = pr.author_association
        self.mergedBy = _actor(pr.merged_by, False) if pr.merged_by else None
        self.baseRefName = pr.base_ref
        self.headRefName = pr.head_ref
        self.baseRefOid = pr.base_oid
        self.headRefOid = pr.head_oid
        self.additions = pr.additions
        self.deletions = pr.deletions
        self.changedFiles = pr.changed_files
        self.databaseId = pr.database_id
        self.fullDatabaseId = str(pr.database_id)
        self.id = pr.node_id
        self.isDraft = pr.draft
        self.locked = False
        self.repository = repo
        self.baseRepository = repo
        self.headRepository = repo

    @property
    def mergeCommit(self) -> CommitNode | None:
        pr = self._pr
        if not pr.merge_commit_oid:
            return None
        return CommitNode(pr.merge_commit_oid, self._repo, f"{pr.title} (#{pr.number})", pr.merged_at or "")

    def labels(self, _info: Any, first: int | None = None, last: int | None = None, after: str | None = None,
               before: str | None = None, orderBy: dict | None = None) -> dict[str, Any]:  # noqa: N803
        names = sorted(self._pr.labels) if orderBy else list(self._pr.labels)
        if orderBy and orderBy.get("direction") == "DESC":
            names.reverse()
        full = self._repo.nameWithOwner
        entries = [(i, {"name": n, "color": _label_color(n), "description": None, "isDefault": False,
                        "id": "LA_kwDO" + _b64(f"{full}:{n}"), "url": f"{HTML}/{full}/labels/{n}"})
                   for i, n in enumerate(names)]
        return _connection(entries, first=first, last=last, after=after, before=before,
                           encode=_index_cursor, decode=_index_from_cursor)

    def files(self, _info: Any, first: int | None = None, last: int | None = None, after: str | None = None,
              before: str | None = None) -> dict[str, Any]:
        entries = [(i, {"path": f.path, "additions": f.additions, "deletions": f.deletions,
                        "changeType": f.change_type, "viewerViewedState": "UNVIEWED"})
                   for i, f in enumerate(self._pr.files)]
        return _connection(entries, first=first, last=last, after=after, before=before,
                           encode=_index_cursor, decode=_index_from_cursor)

    def closingIssuesReferences(self, _info: Any, first: int | None = None, last: int | None = None,  # noqa: N802
                                after: str | None = None, before: str | None = None,
                                orderBy: dict | None = None, userLinkedOnly: bool = False  # noqa: N803
                                ) -> dict[str, Any]:
        issues = list(self._pr.closing_issues)
        entries = [(i, IssueNode(issue, self._repo, self._pr.merged_at)) for i, issue in enumerate(issues)]
        return _connection(entries, first=first, last=last, after=after, before=before,
                           encode=_index_cursor, decode=_index_from_cursor)


def _label_color(name: str) -> str:
    known = {"bug": "d73a4a", "documentation": "0075ca", "enhancement": "a2eeef", "dependencies": "0366d6"}
    return known.get(name) or hashlib.md5(name.encode()).hexdigest()[:6]


def _pr_cursor(key: tuple[str, int]) -> str:
    return _b64("cursor:v2:" + json.dumps(list(key)))


def _pr_key_from_cursor(cursor: str) -> tuple[str, int]:
    text = _unb64(cursor)
    if not text.startswith("cursor:v2:"):
        raise _invalid_cursor(cursor)
    try:
        stamp, number = json.loads(text.removeprefix("cursor:v2:"))
        return str(stamp), int(number)
    except (ValueError, TypeError) as exc:
        raise _invalid_cursor(cursor) from exc


class RepoNode:
    __typename = "Repository"

    def __init__(self, repo: Repo, ctx: RequestContext) -> None:
        self._repo = repo
        self._ctx = ctx
        self.id = repo.node_id
        self.databaseId = repo.id
        self.name = repo.name
        self.nameWithOwner = repo.full_name
        self.description = repo.description
        self.url = f"{HTML}/{repo.full_name}"
        self.resourcePath = f"/{repo.full_name}"
        self.homepageUrl = None
        self.stargazerCount = repo.stars
        self.forkCount = repo.forks
        self.isArchived = repo.archived
        self.isFork = repo.fork
        self.isPrivate = repo.private
        self.visibility = "PRIVATE" if repo.private else "PUBLIC"
        self.isDisabled = self.isLocked = self.isMirror = self.isTemplate = False
        self.isEmpty = False
        self.createdAt = repo.created_at
        self.pushedAt = repo.pushed_at
        self.updatedAt = repo.pushed_at
        self.owner = {
            "__typename": repo.owner_type, "login": repo.owner, "url": f"{HTML}/{repo.owner}",
            "resourcePath": f"/{repo.owner}", "id": ("O_" if repo.owner_type == "Organization" else "U_")
            + _b64(repo.owner), "avatarUrl": f"https://avatars.githubusercontent.com/{repo.owner}",
        }
        lic = repo.license_info
        self.licenseInfo = None if lic is None else {
            "spdxId": lic[0], "key": lic[1], "name": lic[2], "nickname": None, "id": "MDc6TGljZW5zZT" + _b64(lic[1]),
            "url": f"http://choosealicense.com/licenses/{lic[1]}/", "pseudoLicense": lic[1] == "other",
        }
        self.primaryLanguage = None if not repo.language else {
            "name": repo.language, "id": "MDg6TGFuZ3VhZ2" + _b64(repo.language), "color": None}

    @property
    def defaultBranchRef(self) -> dict[str, Any]:  # noqa: N802
        head = max((p for p in self._repo.prs if p.merged), key=lambda p: p.merged_at or "", default=None)
        oid = head.merge_commit_oid if head and head.merge_commit_oid else "f" * 40
        return {"name": self._repo.default_branch, "prefix": "refs/heads/",
                "id": "REF_kwDO" + _b64(f"{self.nameWithOwner}:{self._repo.default_branch}"),
                "target": CommitNode(oid, self, "Latest commit", self.pushedAt)}

    def repositoryTopics(self, _info: Any, first: int | None = None, last: int | None = None,  # noqa: N802
                         after: str | None = None, before: str | None = None) -> dict[str, Any]:
        entries = [(i, {"topic": {"name": t, "id": "T_" + _b64(t)}, "url": f"{HTML}/topics/{t}"})
                   for i, t in enumerate(self._repo.topics)]
        return _connection(entries, first=first, last=last, after=after, before=before,
                           encode=_index_cursor, decode=_index_from_cursor)

    def pullRequest(self, _info: Any, number: int) -> PRNode:  # noqa: N802
        pr = self._repo.pr(number)
        if pr is None:
            raise GraphQLError(f"Could not resolve to a PullRequest with the number of {number}.",
                               extensions={"type": "NOT_FOUND"})
        return PRNode(pr, self)

    def pullRequests(self, _info: Any, states: list[str] | None = None, first: int | None = None,  # noqa: N802
                     last: int | None = None, after: str | None = None, before: str | None = None,
                     orderBy: dict | None = None, baseRefName: str | None = None,  # noqa: N803
                     headRefName: str | None = None, labels: list[str] | None = None) -> dict[str, Any]:  # noqa: N803
        prs = self._repo.prs
        if states:
            prs = [p for p in prs if p.state in states]
        if baseRefName is not None:
            prs = [p for p in prs if p.base_ref == baseRefName]
        if headRefName is not None:
            prs = [p for p in prs if p.head_ref == headRefName]
        if labels:
            prs = [p for p in prs if set(p.labels) & set(labels)]
        order_field = (orderBy or {}).get("field", "CREATED_AT")
        descending = (orderBy or {}).get("direction", "ASC") == "DESC"

        def key(p: PR) -> tuple[str, int]:
            if order_field == "UPDATED_AT":
                return p.updated_at, p.number
            if order_field == "COMMENTS":
                return "", p.number
            return p.created_at, p.number

        entries = sorted(((key(p), p) for p in prs), key=lambda e: e[0], reverse=descending)
        return _connection(entries, first=first, last=last, after=after, before=before,
                           encode=_pr_cursor, decode=_pr_key_from_cursor, descending=descending,
                           wrap=lambda p: PRNode(p, self))


class QueryRoot:
    def __init__(self, ctx: RequestContext) -> None:
        self._ctx = ctx

    def repository(self, _info: Any, owner: str, name: str, followRenames: bool = True  # noqa: N803
                   ) -> RepoNode:
        repo = self._ctx.fixtures.get_repo(f"{owner}/{name}")
        if repo is None or not repo.visible(self._ctx.token):
            raise GraphQLError(f"Could not resolve to a Repository with the name '{owner}/{name}'.",
                               extensions={"type": "NOT_FOUND"})
        return RepoNode(repo, self._ctx)

    def rateLimit(self, _info: Any, dryRun: bool = False) -> dict[str, Any]:  # noqa: N802,N803
        return dict(self._ctx.rate)

    @property
    def viewer(self) -> dict[str, Any]:
        user = _actor(self._ctx.viewer_login, False)
        user["databaseId"] = self._ctx.viewer_id
        return user

    def search(self, _info: Any, query: str, type: str, first: int | None = None,  # noqa: A002
               last: int | None = None, after: str | None = None, before: str | None = None) -> dict[str, Any]:
        repos: list[Repo] = []
        if type == "REPOSITORY":
            try:
                repos = self._ctx.fixtures.search(query, token=self._ctx.token)
            except SearchQueryError:
                repos = []
        reachable = list(enumerate(repos[:SEARCH_CAP]))

        def decode(cursor: str) -> int:
            text = _unb64(cursor)
            if not re.fullmatch(r"cursor:\d+", text):
                raise _invalid_cursor(cursor)
            return int(text.split(":")[1]) - 1

        conn = _connection(reachable, first=first, last=last, after=after, before=before,
                           encode=lambda i: _b64(f"cursor:{i + 1}"), decode=decode,
                           wrap=lambda r: RepoNode(r, self._ctx))
        for edge in conn["edges"]:
            edge["textMatches"] = []
        conn.pop("totalCount")
        conn.update(repositoryCount=len(repos), issueCount=0, userCount=0, codeCount=0,
                    wikiCount=0, discussionCount=0)
        return conn


# ---------------------------------------------------------------------------- engine


class GraphQLEngine:
    """Prepares (parse, validate, cost) and executes GraphQL queries over fixtures."""

    def __init__(self, fixtures: Fixtures, schema_path: Path | None = None) -> None:
        self.fixtures = fixtures
        self.schema, self.validating = load_schema(schema_path)
        self.internal_errors: list[str] = []

    def prepare(self, query: Any, variables: Any, operation_name: Any) -> QueryPlan | list[dict[str, Any]]:
        """Return a :class:`QueryPlan`, or GitHub-shaped errors (answered with HTTP 200)."""
        if not isinstance(query, str) or not query.strip():
            return [{"message": "A query attribute must be specified and must be a string."}]
        if variables is not None and not isinstance(variables, dict):
            return [{"message": "Variables are invalid JSON."}]
        try:
            document = parse(query)
        except GraphQLError as err:
            return [format_error(err)]
        if self.validating:
            errors = validate(self.schema, document)
            if errors:
                return [format_error(e) for e in errors]
        op = get_operation_ast(document, operation_name if isinstance(operation_name, str) else None)
        if op is None:
            return [{"message": "An operation name is required" if operation_name is None
                     else f'No operation named "{operation_name}"'}]
        if op.operation.value != "query":
            return [{"message": f"Only queries are supported by the stand-in, not {op.operation.value}s."}]
        plan = QueryPlan(document, operation_name if isinstance(operation_name, str) else None, variables or {})
        analyser = _Analyser(self.schema, document, plan.variables)
        analyser.run(op)
        if analyser.errors:
            return analyser.errors
        if analyser.nodes > MAX_NODES:
            return [_gh_error(f"This query requests up to {analyser.nodes:,} possible nodes which exceeds "
                              f"the maximum limit of {MAX_NODES:,}.", "MAX_NODE_LIMIT_EXCEEDED",
                              node=op)]
        plan.requests, plan.node_count, plan.dry_run = analyser.requests, analyser.nodes, analyser.dry_run
        return plan

    def execute(self, plan: QueryPlan, ctx: RequestContext) -> dict[str, Any]:
        """Run a prepared query; returns the JSON body (``data`` and maybe ``errors``)."""
        with self.fixtures.lock:
            result = execute_sync(self.schema, plan.document, root_value=QueryRoot(ctx),
                                  variable_values=plan.variables, operation_name=plan.operation_name)
        body: dict[str, Any] = {"data": result.data}
        if result.errors:
            errors = []
            for err in result.errors:
                original = err.original_error
                if original is not None and not isinstance(original, GraphQLError):
                    self.internal_errors.append("".join(traceback.format_exception(original)))
                    errors.append({"path": list(err.path or []), "message": (
                        "Something went wrong while executing your query. This may be the result of a "
                        "timeout, or it could be a GitHub bug. Please include `STANDIN:0001` when "
                        "reporting this issue.")})
                else:
                    errors.append(format_error(err))
            body["errors"] = errors
        return body


def iso_epoch(epoch: float) -> str:
    """Epoch seconds as a GitHub DateTime."""
    return format_iso(datetime.fromtimestamp(int(epoch), tz=timezone.utc))


MINI_SDL = '''
scalar DateTime
scalar URI
scalar GitObjectID
scalar HTML
scalar BigInt

enum PullRequestState { CLOSED MERGED OPEN }
enum IssueState { CLOSED OPEN }
enum OrderDirection { ASC DESC }
enum IssueOrderField { COMMENTS CREATED_AT UPDATED_AT }
enum LabelOrderField { CREATED_AT NAME }
enum PatchStatus { ADDED CHANGED COPIED DELETED MODIFIED RENAMED }
enum FileViewedState { DISMISSED UNVIEWED VIEWED }
enum RepositoryVisibility { INTERNAL PRIVATE PUBLIC }
enum SearchType { DISCUSSION ISSUE ISSUE_ADVANCED REPOSITORY USER }
enum CommentAuthorAssociation {
  COLLABORATOR CONTRIBUTOR FIRST_TIMER FIRST_TIME_CONTRIBUTOR MANNEQUIN MEMBER NONE OWNER
}

input IssueOrder { direction: OrderDirection! field: IssueOrderField! }
input LabelOrder { direction: OrderDirection! field: LabelOrderField! }

interface Node { id: ID! }
interface Actor { avatarUrl(size: Int): URI! login: String! resourcePath: URI! url: URI! }
interface RepositoryOwner { avatarUrl(size: Int): URI! id: ID! login: String! resourcePath: URI! url: URI! }
interface GitObject { abbreviatedOid: String! id: ID! oid: GitObjectID! repository: Repository! }

type PageInfo { endCursor: String hasNextPage: Boolean! hasPreviousPage: Boolean! startCursor: String }

type RateLimit { cost: Int! limit: Int! nodeCount: Int! remaining: Int! resetAt: DateTime! used: Int! }

type User implements Actor & Node & RepositoryOwner {
  avatarUrl(size: Int): URI! databaseId: Int email: String! id: ID! login: String! name: String
  resourcePath: URI! url: URI!
}
type Bot implements Actor & Node {
  avatarUrl(size: Int): URI! databaseId: Int id: ID! login: String! resourcePath: URI! url: URI!
}
type Organization implements Actor & Node & RepositoryOwner {
  avatarUrl(size: Int): URI! databaseId: Int id: ID! login: String! name: String resourcePath: URI! url: URI!
}

type License implements Node {
  id: ID! key: String! name: String! nickname: String pseudoLicense: Boolean! spdxId: String url: URI
}
type Language implements Node { color: String id: ID! name: String! }
type Topic implements Node { id: ID! name: String! }
type RepositoryTopic { topic: Topic! url: URI! }
type RepositoryTopicEdge { cursor: String! node: RepositoryTopic }
type RepositoryTopicConnection {
  edges: [RepositoryTopicEdge] nodes: [RepositoryTopic] pageInfo: PageInfo! totalCount: Int!
}

type Commit implements GitObject & Node {
  abbreviatedOid: String! committedDate: DateTime! id: ID! messageHeadline: String! oid: GitObjectID!
  repository: Repository! resourcePath: URI! url: URI!
}
type Ref implements Node { id: ID! name: String! prefix: String! target: GitObject }

type Label implements Node {
  color: String! description: String id: ID! isDefault: Boolean! name: String! url: URI!
}
type LabelEdge { cursor: String! node: Label }
type LabelConnection { edges: [LabelEdge] nodes: [Label] pageInfo: PageInfo! totalCount: Int! }

type Issue implements Node {
  author: Actor body: String! bodyText: String! closed: Boolean! closedAt: DateTime createdAt: DateTime!
  databaseId: Int id: ID! number: Int! repository: Repository! state: IssueState! title: String!
  updatedAt: DateTime! url: URI!
}
type IssueEdge { cursor: String! node: Issue }
type IssueConnection { edges: [IssueEdge] nodes: [Issue] pageInfo: PageInfo! totalCount: Int! }

type PullRequestChangedFile {
  additions: Int! changeType: PatchStatus! deletions: Int! path: String! viewerViewedState: FileViewedState!
}
type PullRequestChangedFileEdge { cursor: String! node: PullRequestChangedFile }
type PullRequestChangedFileConnection {
  edges: [PullRequestChangedFileEdge] nodes: [PullRequestChangedFile] pageInfo: PageInfo! totalCount: Int!
}

type PullRequest implements Node {
  additions: Int! author: Actor authorAssociation: CommentAuthorAssociation! baseRefName: String!
  baseRefOid: GitObjectID! baseRepository: Repository body: String! bodyHTML: HTML! bodyText: String!
  changedFiles: Int! closed: Boolean! closedAt: DateTime
  closingIssuesReferences(after: String, before: String, first: Int, last: Int, orderBy: IssueOrder,
    userLinkedOnly: Boolean = false): IssueConnection
  createdAt: DateTime! databaseId: Int deletions: Int!
  files(after: String, before: String, first: Int, last: Int): PullRequestChangedFileConnection
  fullDatabaseId: BigInt headRefName: String! headRefOid: GitObjectID! headRepository: Repository id: ID!
  isDraft: Boolean!
  labels(after: String, before: String, first: Int, last: Int, orderBy: LabelOrder): LabelConnection
  lastEditedAt: DateTime locked: Boolean! mergeCommit: Commit merged: Boolean! mergedAt: DateTime
  mergedBy: Actor number: Int! permalink: URI! publishedAt: DateTime repository: Repository!
  resourcePath: URI! state: PullRequestState! title: String! updatedAt: DateTime! url: URI!
}
type PullRequestEdge { cursor: String! node: PullRequest }
type PullRequestConnection { edges: [PullRequestEdge] nodes: [PullRequest] pageInfo: PageInfo! totalCount: Int! }

type Repository implements Node {
  createdAt: DateTime! databaseId: Int defaultBranchRef: Ref description: String forkCount: Int!
  homepageUrl: URI id: ID! isArchived: Boolean! isDisabled: Boolean! isEmpty: Boolean! isFork: Boolean!
  isLocked: Boolean! isMirror: Boolean! isPrivate: Boolean! isTemplate: Boolean! licenseInfo: License
  name: String! nameWithOwner: String! owner: RepositoryOwner! primaryLanguage: Language
  pullRequest(number: Int!): PullRequest
  pullRequests(after: String, baseRefName: String, before: String, first: Int, headRefName: String,
    labels: [String!], last: Int, orderBy: IssueOrder, states: [PullRequestState!]): PullRequestConnection!
  pushedAt: DateTime
  repositoryTopics(after: String, before: String, first: Int, last: Int): RepositoryTopicConnection!
  resourcePath: URI! stargazerCount: Int! updatedAt: DateTime! url: URI! visibility: RepositoryVisibility!
}

union SearchResultItem = Issue | Organization | PullRequest | Repository | User
type TextMatch { fragment: String! property: String! }
type SearchResultItemEdge { cursor: String! node: SearchResultItem textMatches: [TextMatch] }
type SearchResultItemConnection {
  codeCount: Int! discussionCount: Int! edges: [SearchResultItemEdge] issueCount: Int!
  nodes: [SearchResultItem] pageInfo: PageInfo! repositoryCount: Int! userCount: Int! wikiCount: Int!
}

type Query {
  rateLimit(dryRun: Boolean = false): RateLimit
  repository(followRenames: Boolean = true, name: String!, owner: String!): Repository
  search(after: String, before: String, first: Int, last: Int, query: String!, type: SearchType!
    ): SearchResultItemConnection!
  viewer: User!
}
'''
