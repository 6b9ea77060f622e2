"""GitHub source: discovery by stars (REST search), merged PRs in bulk (GraphQL), patches (REST).

Requests per repository and run:
- metadata: one GraphQL query per page of up to 100 merged PRs, newest update first, with
  files, labels, linked issues and the repository's own metadata in the same query;
- patches: one REST request per 100 files, only for PRs that pass the size pre-filter.
A re-run with nothing new asks for one page, sees that its first PR is not newer than the
saved watermark, and stops: one request per repository.

REST goes through PyGithub's requester (so GitHub Enterprise base URLs, auth and paging work
as PyGithub does them), GraphQL through httpx; both under the policy in ratelimit.py.
"""

from __future__ import annotations

import logging
import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from typing import Callable, Iterator
from urllib.parse import parse_qs, urlsplit

import httpx
from github import Auth, Github, GithubException

from ..clock import Clock
from ..config import GitHubSettings
from ..errors import RepositoryNotFound, SourceError
from ..models import Cursor, FileChange, LinkedIssue, PullRequest, Repo, SourceBatch
from .ratelimit import Answer, BudgetExhausted, Policy, RateLimitWaitTooLong

log = logging.getLogger("synth.github")

PR_QUERY = """
query($owner: String!, $name: String!, $first: Int!, $after: String) {
  rateLimit { cost remaining resetAt }
  repository(owner: $owner, name: $name) {
    nameWithOwner stargazerCount isArchived isFork isPrivate
    licenseInfo { spdxId key }
    primaryLanguage { name }
    defaultBranchRef { name }
    pullRequests(states: MERGED, first: $first, after: $after,
                 orderBy: {field: UPDATED_AT, direction: DESC}) {
      totalCount
      pageInfo { hasNextPage endCursor }
      nodes {
        number title body url mergedAt updatedAt
        author { __typename login }
        labels(first: 20) { nodes { name } }
        baseRefOid headRefOid baseRefName headRefName
        mergeCommit { oid }
        additions deletions changedFiles
        files(first: 100) { totalCount nodes { path additions deletions changeType } }
        closingIssuesReferences(first: 5) { nodes { number title body } }
      }
    }
  }
}
"""

_CHANGE = {"ADDED": "added", "DELETED": "deleted", "MODIFIED": "modified", "RENAMED": "renamed",
           "COPIED": "copied", "CHANGED": "type_changed"}
_REST_STATUS = {"added": "added", "removed": "deleted", "modified": "modified",
                "renamed": "renamed", "copied": "copied", "changed": "type_changed",
                "unchanged": "modified"}


def _ts(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value.replace("Z", "+00:00")) if value else None


class GitHubAPI:
    """The two transports, each call under the policy."""

    def __init__(self, settings: GitHubSettings, tokens: list[str], policy: Policy | None = None,
                 clock: Clock | None = None):
        self.settings = settings
        clock = clock or Clock()
        self.policy = policy or Policy(
            tokens, concurrency=settings.concurrency, max_requests=settings.max_requests,
            max_wait=settings.max_wait, secondary_min_wait=settings.secondary_min_wait,
            backoff=settings.backoff, clock=clock.time, sleep=clock.sleep)
        self._rest: dict[str, Github] = {}
        self._lock = threading.Lock()
        self._http = httpx.Client(timeout=settings.timeout, follow_redirects=False,
                                  headers={"User-Agent": "synth"})
        self.graphql_url = settings.graphql_endpoint()
        # url -> (etag, body): conditional requests make an unchanged resource cost a 304
        self.etags: dict[str, tuple[str, object]] = {}
        self.etags_changed: dict[str, tuple[str, object]] = {}

    def close(self) -> None:
        self._http.close()
        for g in self._rest.values():
            g.close()

    def _github(self, token: str) -> Github:
        with self._lock:
            g = self._rest.get(token)
            if g is None:
                g = Github(base_url=self.settings.api_url.rstrip("/"),
                           auth=Auth.Token(token) if token else None, retry=None,
                           timeout=int(self.settings.timeout), per_page=100,
                           pool_size=self.settings.concurrency)
                self._rest[token] = g
            return g

    # -- REST

    def rest(self, path: str, params: dict | None = None, *, resource: str = "core",
             kind: str = "rest", conditional: bool = False) -> Answer:
        """GET a REST resource. With ``conditional``, a cached ETag is sent and a 304 answers
        from the cache."""
        key = path + "?" + "&".join(f"{k}={v}" for k, v in sorted((params or {}).items()))
        cached = self.etags.get(key) if conditional else None
        headers = {"If-None-Match": cached[0]} if cached else None
        ans = self._rest_call(path, params, resource, kind, headers)
        if cached and ans.status == 304:
            self.policy.counts["github/not_modified"] += 1
            return Answer(200, ans.headers, cached[1])
        etag = next((v for k, v in ans.headers.items() if k.lower() == "etag"), None)
        if conditional and etag and ans.status == 200:
            self.etags[key] = self.etags_changed[key] = (etag, ans.data)
        return ans

    def _rest_call(self, path, params, resource, kind, headers) -> Answer:
        def do(token: str) -> Answer:
            try:
                h, data = self._github(token).requester.requestJsonAndCheck(
                    "GET", path, parameters=params, headers=headers)
                status = 304 if data is None and headers and "If-None-Match" in headers else 200
                html = isinstance(data, dict) and set(data) <= {"data", "url"} and \
                    str(data.get("data", "")).lstrip().startswith("<")
                return Answer(status, dict(h), data, html=html)
            except GithubException as exc:
                html = isinstance(exc.data, dict) and str(exc.data.get("data", "")).lstrip().startswith("<")
                return Answer(exc.status, dict(exc.headers or {}), exc.data, html=html)
            except ValueError:  # a body that starts like JSON but is not
                return Answer(200, {}, None, html=True)
        return self.policy.call(resource, kind, do)

    # -- GraphQL

    def graphql(self, query: str, variables: dict) -> dict:
        def do(token: str) -> Answer:
            headers = {"Authorization": f"bearer {token}"} if token else {}
            try:
                resp = self._http.post(self.graphql_url, headers=headers,
                                       json={"query": query, "variables": variables})
            except httpx.TransportError as exc:  # the policy retries connection errors
                raise ConnectionError(type(exc).__name__) from None
            ctype = resp.headers.get("content-type", "")
            try:
                data = resp.json()
            except ValueError:
                return Answer(resp.status_code, dict(resp.headers), resp.text,
                              html="html" in ctype or resp.text.lstrip().startswith("<"))
            limited = isinstance(data, dict) and any(
                e.get("type") == "RATE_LIMITED" for e in data.get("errors") or [])
            return Answer(resp.status_code, dict(resp.headers), data, graphql_rate_limited=limited)
        ans = self.policy.call("graphql", "graphql", do)
        if ans.status >= 400:
            msg = ans.data.get("message") if isinstance(ans.data, dict) else str(ans.data)[:200]
            raise SourceError(f"GitHub GraphQL answered {ans.status}: {msg}")
        return ans.data  # {"data": ..., "errors": [...]}


# ---------------------------------------------------------------- discovery

def discover(api: GitHubAPI, min_stars: int, languages: list[str] | None = None,
             licenses: list[str] | None = None, max_stars: int | None = None) -> list[Repo]:
    """Public, non-archived, non-fork repositories with at least ``min_stars`` stars.

    The Search API returns at most 1000 results per query, so star ranges are halved while a
    range reports more than that; results are deduplicated across slices."""
    quals = ["archived:false", "fork:false", "is:public"] + [f"language:{lang}" for lang in languages or []]
    allowed = {lic.lower() for lic in licenses or []}
    found: dict[str, Repo] = {}

    def search(lo: int, hi: int | None, page: int) -> dict:
        stars = f"stars:{lo}..{hi}" if hi is not None else f"stars:>={lo}"
        ans = api.rest("/search/repositories", {"q": " ".join([stars, *quals]), "sort": "stars",
                                                 "order": "desc", "per_page": 100, "page": page},
                       resource="search", kind="search", conditional=True)
        if ans.status >= 400:
            msg = ans.data.get("message") if isinstance(ans.data, dict) else ans.status
            raise SourceError(f"GitHub search failed: {msg}")
        return ans.data

    def take(items: list[dict]) -> None:
        for it in items:
            lic = ((it.get("license") or {}).get("spdx_id") or "").lower() or None
            if allowed and (lic or "") not in allowed:
                continue
            if it.get("archived") or it.get("fork"):
                continue
            owner, name = it["full_name"].split("/", 1)
            found[it["full_name"]] = Repo(owner, name, stars=it.get("stargazers_count"),
                                          language=it.get("language"), license=lic,
                                          default_branch=it.get("default_branch"),
                                          archived=bool(it.get("archived")),
                                          fork=bool(it.get("fork")), source="github")

    first = search(min_stars, max_stars, 1)
    if max_stars is None:
        top = max((it.get("stargazers_count", 0) for it in first.get("items", [])), default=min_stars)
        max_stars = max(top, min_stars)
        if first.get("total_count", 0) > 1000:
            first = None
    stack = [(min_stars, max_stars, first)]
    while stack:
        lo, hi, page1 = stack.pop()
        page1 = page1 or search(lo, hi, 1)
        total = page1.get("total_count", 0)
        if total > 1000 and lo < hi:
            mid = (lo + hi) // 2
            stack += [(mid + 1, hi, None), (lo, mid, None)]
            continue
        if total > 1000:
            log.warning("more than 1000 repositories have exactly %d stars; only the first "
                        "1000 are reachable", lo)
        take(page1.get("items", []))
        for page in range(2, min(10, -(-total // 100)) + 1):
            take(search(lo, hi, page).get("items", []))
    return sorted(found.values(), key=lambda r: (-(r.stars or 0), r.full_name))


# ---------------------------------------------------------------- PRs

def _pr_from_node(repo: str, node: dict, bot_suffix: bool = True) -> PullRequest:
    author = node.get("author") or {}
    is_bot = author.get("__typename") == "Bot"
    login = author.get("login") or "ghost"
    if is_bot and bot_suffix and not login.endswith("[bot]"):
        login += "[bot]"
    files = tuple(FileChange(path=f["path"], status=_CHANGE.get(f.get("changeType"), "modified"),
                             additions=f.get("additions") or 0, deletions=f.get("deletions") or 0)
                  for f in ((node.get("files") or {}).get("nodes") or []))
    issues = tuple(LinkedIssue(i["number"], i.get("title") or "", i.get("body") or "")
                   for i in ((node.get("closingIssuesReferences") or {}).get("nodes") or []))
    return PullRequest(
        repo=repo, number=node["number"], title=node.get("title") or "", body=node.get("body") or "",
        author=login, author_is_bot=is_bot, merged_at=_ts(node.get("mergedAt")),
        base_sha=node.get("baseRefOid") or "", merge_sha=(node.get("mergeCommit") or {}).get("oid") or "",
        head_sha=node.get("headRefOid"), url=node.get("url") or "",
        labels=tuple(lb["name"] for lb in ((node.get("labels") or {}).get("nodes") or [])),
        linked_issues=issues, files=files, source="github",
        additions_total=node.get("additions"), deletions_total=node.get("deletions"),
        changed_files_total=node.get("changedFiles"), head_ref=node.get("headRefName"),
        base_ref=node.get("baseRefName"))


def fetch_patches(api: GitHubAPI, pr: PullRequest) -> PullRequest:
    """The PR with every file's patch, from the REST files listing (paged by 100)."""
    owner, name = pr.repo.split("/", 1)
    files: list[FileChange] = []
    path, params = f"/repos/{owner}/{name}/pulls/{pr.number}/files", {"per_page": 100, "page": 1}
    while True:
        ans = api.rest(path, params, kind="rest/files")
        if ans.status == 404:
            raise RepositoryNotFound(f"{pr.repo}#{pr.number}: GitHub has no such pull request")
        if ans.status >= 400:
            raise SourceError(f"{pr.repo}#{pr.number}: files listing failed ({ans.status})")
        for f in ans.data or []:
            patch = f.get("patch")
            changes = (f.get("additions") or 0) + (f.get("deletions") or 0)
            status = _REST_STATUS.get(f.get("status"), "modified")
            files.append(FileChange(
                path=f["filename"], status=status,
                additions=f.get("additions") or 0, deletions=f.get("deletions") or 0,
                patch=patch,
                binary=patch is None and changes == 0 and _binary(f["filename"], status),
                old_path=f.get("previous_filename"),
                patch_bytes=len(patch.encode()) if patch else 0,
                patch_truncated=patch is None and changes > 0))
        nxt = _next_link(ans.headers)
        if not nxt:
            break
        path, params = nxt
    return PullRequest(**{**{k: getattr(pr, k) for k in pr.__dataclass_fields__}, "files": tuple(files)})


_BINARY_EXT = frozenset(
    "png jpg jpeg gif ico webp bmp tif tiff pdf woff woff2 ttf otf eot mp3 mp4 wav ogg zip gz "
    "tgz bz2 xz tar jar whl egg bin dll so dylib exe o a pyc class psd sketch fig db sqlite "
    "parquet pkl npy npz".split())


def _binary(path: str, status: str) -> bool:
    """A file without patch text and without changed lines: binary, unless it was only
    renamed or copied, or it is an empty text file (``__init__.py``, ``py.typed``)."""
    if status in ("renamed", "copied", "modified"):
        return status == "modified"
    ext = path.rsplit("/", 1)[-1].rpartition(".")[2].lower()
    return ext in _BINARY_EXT


def _next_link(headers: dict) -> tuple[str, dict] | None:
    link = next((v for k, v in headers.items() if k.lower() == "link"), "")
    for part in link.split(","):
        if 'rel="next"' in part:
            url = part.split(";")[0].strip().strip("<>")
            u = urlsplit(url)
            return u.path, {k: v[-1] for k, v in parse_qs(u.query).items()}
    return None


class GitHubSource:
    """Merged PRs of GitHub repositories, incremental per repository (pipeline Source)."""

    kind = "github"

    def __init__(self, api: GitHubAPI, repos: list[str], prefilter: Callable[[PullRequest], bool],
                 page_size: int = 50, label: str = "github"):
        self.api = api
        self.names = list(dict.fromkeys(r.strip() for r in repos if r.strip()))
        self.prefilter = prefilter  # filtering.worth_patches: fetch patches only when True
        self.page_size = page_size
        self.label = label
        for n in self.names:
            if n.count("/") != 1 or not all(n.split("/")):
                raise SourceError(f"not a repository name: {n!r} (expected owner/name)")

    def repos(self) -> list[Repo]:
        return [Repo.parse(n, source="github") for n in self.names]

    def counters(self) -> dict[str, int]:
        """Requests, retries and waits so far (cumulative), for the run's stats."""
        out = dict(self.api.policy.counts)
        out["github/longest_wait_ms"] = int(self.api.policy.longest_wait * 1000)
        return out

    def batches(self, repo: Repo, known: set[int], batch_size: int, limit: int,
                cursor: Cursor | None = None) -> Iterator[SourceBatch]:
        state = dict(cursor.state) if cursor else {}
        watermark = cursor.watermark if cursor else None
        after = cursor.cursor if cursor else None
        stop_at = state.get("pass_stop_at", watermark) if after else watermark
        top = state.get("pass_top") if after else None
        taken = 0
        while True:
            data = self.api.graphql(PR_QUERY, {"owner": repo.owner, "name": repo.name,
                                               "first": self.page_size, "after": after})
            meta = _repository(data, repo.full_name)
            conn = meta["pullRequests"]
            prs: list[PullRequest] = []
            done = False
            for node in conn.get("nodes") or []:
                updated = node.get("updatedAt")
                if stop_at and updated and updated < stop_at:
                    done = True
                    break
                if top is None or (updated and updated > top):
                    top = updated
                if node["number"] in known:
                    continue
                prs.append(_pr_from_node(repo.full_name, node))
                taken += 1
                if limit and taken >= limit:
                    done = True
                    break
            page = conn.get("pageInfo") or {}
            finished = done or not page.get("hasNextPage")
            prs, stopped = self._with_patches(prs)
            if stopped is not None:
                # the budget ran out inside this page: save the PRs that are complete, keep
                # the cursor where it was (the next run re-reads this page and skips them)
                yield SourceBatch(prs=prs, repo=_repo_meta(meta, repo), cursor=None,
                                  total=conn.get("totalCount"))
                raise stopped
            if finished:
                new = Cursor(repo.full_name, "github", watermark=top or stop_at, cursor=None)
            else:
                after = page.get("endCursor")
                new = Cursor(repo.full_name, "github", watermark=watermark, cursor=after,
                             state={"pass_top": top, "pass_stop_at": stop_at})
            yield SourceBatch(prs=prs, repo=_repo_meta(meta, repo), cursor=new,
                              total=conn.get("totalCount"))
            if finished:
                return

    def _with_patches(self, prs: list[PullRequest]) -> tuple[list[PullRequest], SourceError | None]:
        """PRs that pass the pre-filter get their patches. When the run's budget (or the
        longest allowed wait) runs out midway, the PRs still lacking patches are left out and
        the error is returned with the complete ones."""
        wanted = [i for i, pr in enumerate(prs) if self.prefilter(pr)]
        if not wanted:
            return prs, None
        out: list[PullRequest | None] = list(prs)
        stopped: SourceError | None = None
        with ThreadPoolExecutor(max_workers=self.api.settings.concurrency) as pool:
            futures = {i: pool.submit(fetch_patches, self.api, prs[i]) for i in wanted}
            for i, fut in futures.items():
                try:
                    out[i] = fut.result()
                except (BudgetExhausted, RateLimitWaitTooLong) as exc:
                    out[i] = None
                    stopped = stopped or exc
        return [pr for pr in out if pr is not None], stopped


def _repository(data: dict, full_name: str) -> dict:
    errors = data.get("errors") or []
    repo = (data.get("data") or {}).get("repository")
    if repo is None:
        if any(e.get("type") == "NOT_FOUND" for e in errors):
            raise RepositoryNotFound(f"{full_name}: GitHub has no such repository, or the "
                                     "token cannot see it")
        msg = "; ".join(e.get("message", "") for e in errors)[:300] or "no data"
        raise SourceError(f"{full_name}: GitHub GraphQL error: {msg}")
    return repo


def _repo_meta(meta: dict, repo: Repo) -> Repo:
    lic = (meta.get("licenseInfo") or {}).get("spdxId")
    return Repo(repo.owner, repo.name, stars=meta.get("stargazerCount"),
                language=(meta.get("primaryLanguage") or {}).get("name"),
                license=None if lic in (None, "NOASSERTION") else lic,
                default_branch=(meta.get("defaultBranchRef") or {}).get("name"),
                archived=bool(meta.get("isArchived")), fork=bool(meta.get("isFork")),
                source="github")


def load_repo_list(text: str | None, file: str | None) -> list[str]:
    names: list[str] = []
    if text:
        names += [n.strip() for n in text.split(",")]
    if file:
        try:
            with open(file, encoding="utf-8") as fh:
                names += [ln.split("#", 1)[0].strip() for ln in fh]
        except OSError as exc:
            raise SourceError(f"cannot read the repository list {file}: {exc.strerror}") from None
    return [n for n in names if n]
