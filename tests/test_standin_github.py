"""The GitHub stand-in, exercised over real HTTP with httpx and PyGithub."""

from __future__ import annotations

import math
import re
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from github import Auth, BadCredentialsException, Github, RateLimitExceededException, UnknownObjectException

try:  # tests/ on sys.path (pytest's default import mode)
    from standins.github_fixtures import PR, File, Fixtures, Repo, count_patch, make_fixtures
    from standins.github_graphql import GraphQLEngine, RequestContext
    from standins.github_server import (
        FAULT_KINDS,
        GitHubStandIn,
        github_standin,  # noqa: F401 - the fixture, used by name
        github_standin_factory,  # noqa: F401 - the fixture, used by name
    )
except ModuleNotFoundError:  # tests/ is a package
    from tests.standins.github_fixtures import PR, File, Fixtures, Repo, count_patch, make_fixtures
    from tests.standins.github_graphql import GraphQLEngine, RequestContext
    from tests.standins.github_server import (  # noqa: F401
        FAULT_KINDS,
        GitHubStandIn,
        github_standin,
        github_standin_factory,
    )

A = {"Authorization": "token tok-a"}
B = {"Authorization": "Bearer tok-b"}

PRS_QUERY = """
query($owner: String!, $name: String!, $after: String, $first: Int!, $field: IssueOrderField!,
      $direction: OrderDirection!) {
  rateLimit { cost limit remaining resetAt used nodeCount }
  repository(owner: $owner, name: $name) {
    nameWithOwner
    pullRequests(states: MERGED, first: $first, after: $after,
                 orderBy: {field: $field, direction: $direction}) {
      totalCount
      pageInfo { hasNextPage hasPreviousPage startCursor endCursor }
      edges { cursor }
      nodes {
        number title state merged mergedAt createdAt updatedAt
        author { login __typename ... on Bot { id } ... on User { name } }
        additions deletions changedFiles
        files(first: 5) { totalCount nodes { path additions deletions changeType } }
      }
    }
  }
}
"""


HTTP = httpx.Client(timeout=10)  # one client for the module: httpx.get() builds an SSL context per call


@pytest.fixture(scope="module", autouse=True)
def _close_http_client() -> Any:
    yield
    HTTP.close()


class FakeClock:
    """An injectable clock, so reset windows pass without sleeping."""

    def __init__(self, now: float = 1_750_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def gql(gh: GitHubStandIn, query: str, variables: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None) -> httpx.Response:
    return HTTP.post(gh.graphql_url, json={"query": query, "variables": variables or {}},
                      headers=A if headers is None else headers)


def repo_with(fx: Fixtures, predicate: Callable[[PR], bool]) -> tuple[Repo, PR]:
    for repo in fx.repos:
        for pr in repo.prs:
            if predicate(pr):
                return repo, pr
    raise AssertionError("no PR matches")


def biggest(repo: Repo, limit: int = 300) -> PR:
    return max((p for p in repo.prs if p.changed_files <= limit), key=lambda p: p.changed_files)


# ----------------------------------------------------------------------------- fixtures


def test_fixtures_are_deterministic_and_varied() -> None:
    fx, again, other = make_fixtures(seed=0), make_fixtures(seed=0), make_fixtures(seed=1)
    assert [p.diff() for p in fx.repos[0].prs] == [p.diff() for p in again.repos[0].prs]
    assert [p.title for p in fx.repos[0].prs] != [p.title for p in other.repos[0].prs]
    prs = [p for r in fx.repos for p in r.prs]
    kinds = {p.kind for p in prs}
    assert {"typo", "version_bump", "ci", "lockfile", "dependabot", "renovate", "bugfix", "feature",
            "refactor", "large"} <= kinds
    assert {p.state for p in prs} == {"MERGED", "OPEN", "CLOSED"}
    assert {"dependabot[bot]", "renovate[bot]"} <= {p.author for p in prs if p.is_bot}
    assert max(p.changed_files for p in prs) > 300 and any(100 < p.changed_files <= 300 for p in prs)
    files = [f for p in prs for f in p.files]
    assert {f.change_type for f in files} == {"ADDED", "MODIFIED", "DELETED", "RENAMED"}
    assert any(f.binary and f.patch is None for f in files)
    assert any(p.closing_issues for p in prs)
    for f in files:
        if f.patch:
            assert count_patch(f.patch) == (f.additions, f.deletions)
    assert any(r.private and r.visible_to == {"tok-a"} for r in fx.repos)
    stars = [r.stars for r in fx.search_repos]
    assert len(stars) == 2500 and min(stars) >= 10_000 and max(stars) <= 400_000
    assert any(r.archived for r in fx.search_repos) and any(r.fork for r in fx.search_repos)
    assert any(r.license is None for r in fx.search_repos)
    # Each call returns an independent copy.
    fx.repos[0].prs.clear()
    assert make_fixtures(seed=0).repos[0].prs


def test_hand_built_fixtures() -> None:
    pr = PR(7, "Fix typo", files=[File("README.md", 1, 1), File("logo.png", binary=True)])
    assert pr.merged and pr.merged_at and len(pr.merge_commit_oid or "") == 40
    assert pr.additions == 1 and "Binary files a/logo.png and b/logo.png differ" in pr.diff()
    bot = PR(8, "Bump x", author="dependabot[bot]", state="CLOSED")
    assert bot.is_bot and bot.graphql_login == "dependabot" and bot.merged_at is None
    fx = Fixtures(repos=[Repo("me", "tool", stars=50_000, prs=[pr, bot])])
    new = fx.add_pr("ME/Tool", title="Later")
    assert new.number == 9 and new.updated_at > pr.updated_at and new.merged_at > pr.merged_at
    with pytest.raises(ValueError):
        File("a.py", 3, 1, patch="@@ -1 +1 @@\n-a\n+b")


# ---------------------------------------------------------------------------------- REST


def test_repo_shape_headers_and_404s(github_standin: GitHubStandIn) -> None:
    gh = github_standin
    repo = gh.fixtures.repos[0]
    r = HTTP.get(f"{gh.url}/repos/{repo.full_name}", headers=A)
    assert r.status_code == 200 and r.headers["content-type"] == "application/json; charset=utf-8"
    body = r.json()
    assert body["full_name"] == repo.full_name and body["stargazers_count"] == repo.stars
    assert body["owner"]["login"] == repo.owner and body["default_branch"] == repo.default_branch
    assert (body["license"] or {}).get("spdx_id") == repo.license
    assert {"id", "node_id", "private", "fork", "archived", "language", "html_url", "created_at",
            "pushed_at"} <= set(body)
    assert r.headers["x-ratelimit-limit"] == "5000" and r.headers["x-ratelimit-remaining"] == "4999"
    assert r.headers["x-ratelimit-used"] == "1" and r.headers["x-ratelimit-resource"] == "core"
    assert int(r.headers["x-ratelimit-reset"]) > time.time()
    assert re.fullmatch(r'W/"[0-9a-f]{40}"', r.headers["etag"])

    missing = HTTP.get(f"{gh.url}/repos/nobody/nothing", headers=A)
    assert missing.status_code == 404
    assert missing.json() == {"message": "Not Found", "status": "404",
                              "documentation_url": "https://docs.github.com/rest/repos/repos#get-a-repository"}
    private = next(r for r in gh.fixtures.repos if r.private)
    assert HTTP.get(f"{gh.url}/repos/{private.full_name}", headers=A).status_code == 200
    hidden = HTTP.get(f"{gh.url}/repos/{private.full_name}", headers=B)
    assert hidden.status_code == 404 and hidden.json() == missing.json()
    assert HTTP.get(f"{gh.url}/repos/{private.full_name}").status_code == 404
    route = HTTP.get(f"{gh.url}/no/such/route", headers=A)
    assert route.status_code == 404 and route.json()["message"] == "Not Found"
    assert gh.counts["404"] == 4 and gh.counts["rest:unknown"] == 1


def test_bad_token_is_401_everywhere(github_standin: GitHubStandIn) -> None:
    gh = github_standin
    bad = {"Authorization": "token nope"}
    r = HTTP.get(f"{gh.url}/repos/{gh.fixtures.repos[0].full_name}", headers=bad)
    assert r.status_code == 401
    assert r.json() == {"message": "Bad credentials", "documentation_url": "https://docs.github.com/rest",
                        "status": "401"}
    g = gql(gh, "{ viewer { login } }", headers={"Authorization": "bearer nope"})
    assert g.status_code == 401 and g.json()["message"] == "Bad credentials"
    anonymous = gql(gh, "{ viewer { login } }", headers={})
    assert anonymous.status_code == 401


def test_pull_files_paging_with_link_headers(github_standin: GitHubStandIn) -> None:
    gh = github_standin
    repo = gh.fixtures.repos[0]
    pr = biggest(repo)
    assert pr.changed_files == 250
    url: str | None = f"{gh.url}/repos/{repo.full_name}/pulls/{pr.number}/files?per_page=100"
    pages, seen = [], []
    with httpx.Client(headers=A) as client:  # one keep-alive connection
        while url:
            r = client.get(url)
            assert r.status_code == 200
            pages.append(r.headers["link"])
            seen += r.json()
            url = r.links.get("next", {}).get("url")
    assert [f["filename"] for f in seen] == [f.path for f in pr.files]
    assert len(pages) == 3
    assert 'rel="next"' in pages[0] and 'rel="last"' in pages[0] and 'rel="prev"' not in pages[0]
    assert all(u.startswith(gh.url) for u in re.findall(r"<([^>]+)>", " ".join(pages)))
    assert 'rel="first"' in pages[2] and 'rel="next"' not in pages[2]
    first = seen[0]
    assert {"sha", "filename", "status", "additions", "deletions", "changes", "blob_url", "raw_url",
            "contents_url"} <= set(first)
    assert first["changes"] == first["additions"] + first["deletions"]
    # Default page size is 30; per_page is capped at 100.
    r = HTTP.get(f"{gh.url}/repos/{repo.full_name}/pulls/{pr.number}/files", headers=A)
    assert len(r.json()) == 30 and "page=9" in r.links["last"]["url"]
    r = HTTP.get(f"{gh.url}/repos/{repo.full_name}/pulls/{pr.number}/files?per_page=500", headers=A)
    assert len(r.json()) == 100
    assert gh.counts["rest:/repos/{o}/{r}/pulls/{n}/files"] == 5


def test_file_entries_for_binary_and_renamed_files(github_standin: GitHubStandIn) -> None:
    gh = github_standin
    repo, pr = repo_with(gh.fixtures, lambda p: any(f.binary for f in p.files)
                         and p.changed_files < 30)
    files = HTTP.get(f"{gh.url}/repos/{repo.full_name}/pulls/{pr.number}/files", headers=A).json()
    for entry, f in zip(files, pr.files, strict=True):
        assert ("patch" in entry) == (f.patch is not None)
        assert entry["status"] == f.status
    repo, pr = repo_with(gh.fixtures, lambda p: p.kind == "refactor" and p.merged)
    files = HTTP.get(f"{gh.url}/repos/{repo.full_name}/pulls/{pr.number}/files", headers=A).json()
    renamed = [e for e in files if e["status"] == "renamed"]
    assert renamed and all(e["previous_filename"] for e in renamed)
    assert {e["status"] for e in files} >= {"renamed", "removed"}


def test_pull_object_and_diff_media_type(github_standin: GitHubStandIn) -> None:
    gh = github_standin
    repo, pr = repo_with(gh.fixtures, lambda p: p.kind == "asset" and p.merged)
    r = HTTP.get(f"{gh.url}/repos/{repo.full_name}/pulls/{pr.number}", headers=A)
    body = r.json()
    assert body["merged"] is True and body["state"] == "closed" and body["merged_at"] == pr.merged_at
    assert body["merge_commit_sha"] == pr.merge_commit_oid and body["head"]["sha"] == pr.head_oid
    assert body["changed_files"] == pr.changed_files and body["additions"] == pr.additions
    for accept in ("application/vnd.github.diff", "application/vnd.github.v3.diff"):
        d = HTTP.get(f"{gh.url}/repos/{repo.full_name}/pulls/{pr.number}", headers={**A, "Accept": accept})
        assert d.status_code == 200 and d.headers["content-type"].startswith(accept)
        assert d.text == pr.diff()
    assert d.text.count("diff --git a/") == pr.changed_files
    assert re.search(r"^Binary files (a/|/dev/null).* and b/\S+ differ$", d.text, re.M)
    assert "\n@@ -" in d.text
    big = biggest(gh.fixtures.repos[1], limit=10_000)
    assert big.changed_files > 300
    too_big = HTTP.get(f"{gh.url}/repos/{gh.fixtures.repos[1].full_name}/pulls/{big.number}",
                        headers={**A, "Accept": "application/vnd.github.diff"})
    assert too_big.status_code == 406 and "maximum number of files (300)" in too_big.json()["message"]
    assert HTTP.get(f"{gh.url}/repos/{repo.full_name}/pulls/99999", headers=A).status_code == 404


def test_etag_304_does_not_decrement(github_standin: GitHubStandIn) -> None:
    gh = github_standin
    url = f"{gh.url}/repos/{gh.fixtures.repos[0].full_name}"
    first = HTTP.get(url, headers=A)
    remaining = int(first.headers["x-ratelimit-remaining"])
    again = HTTP.get(url, headers={**A, "If-None-Match": first.headers["etag"]})
    assert again.status_code == 304 and again.content == b""
    assert int(again.headers["x-ratelimit-remaining"]) == remaining
    assert gh.rate_limit("tok-a").remaining == remaining
    stale = HTTP.get(url, headers={**A, "If-None-Match": 'W/"0000"'})
    assert stale.status_code == 200 and int(stale.headers["x-ratelimit-remaining"]) == remaining - 1
    assert gh.counts["304"] == 1


def test_rate_limit_endpoint_anonymous_budget_and_exhaustion(github_standin_factory: Any) -> None:
    clock = FakeClock()
    gh = github_standin_factory(tokens={"tok-a": 3}, anon_limit=2, clock=clock, reset_seconds=600)
    url = f"{gh.url}/repos/{gh.fixtures.repos[0].full_name}"
    for _ in range(3):
        assert HTTP.get(url, headers=A).status_code == 200
    limited = HTTP.get(url, headers=A)
    assert limited.status_code == 403 and limited.headers["x-ratelimit-remaining"] == "0"
    assert limited.json()["message"].startswith("API rate limit exceeded for user ID 1.")
    assert int(limited.headers["x-ratelimit-reset"]) == math.ceil(clock.now + 600)
    rl = HTTP.get(f"{gh.url}/rate_limit", headers=A).json()  # free, even when exhausted
    assert rl["resources"]["core"] == {"limit": 3, "used": 3, "remaining": 0, "reset": math.ceil(clock.now + 600)}
    assert rl["resources"]["search"]["limit"] == 30 and rl["resources"]["graphql"]["limit"] == 5000
    assert [HTTP.get(url).status_code for _ in range(3)] == [200, 200, 403]
    clock.advance(601)
    assert HTTP.get(url, headers=A).status_code == 200


def test_search_cap_and_star_splitting(github_standin_factory: Any) -> None:
    gh = github_standin_factory(search_limit=200)
    q = "stars:>=10000 archived:false"
    r = HTTP.get(f"{gh.url}/search/repositories",
                  params={"q": q, "sort": "stars", "order": "desc", "per_page": 100}, headers=A)
    body = r.json()
    assert body["total_count"] > 1000 and body["incomplete_results"] is False
    assert r.headers["x-ratelimit-resource"] == "search" and r.headers["x-ratelimit-limit"] == "200"
    assert "page=10" in r.links["last"]["url"]
    stars = [item["stargazers_count"] for item in body["items"]]
    assert stars == sorted(stars, reverse=True)
    assert not any(item["archived"] or item["fork"] for item in body["items"])
    ok = HTTP.get(f"{gh.url}/search/repositories", params={"q": q, "per_page": 100, "page": 10}, headers=A)
    assert ok.status_code == 200 and len(ok.json()["items"]) == 100 and "next" not in ok.links
    capped = HTTP.get(f"{gh.url}/search/repositories", params={"q": q, "per_page": 100, "page": 11}, headers=A)
    assert capped.status_code == 422
    assert capped.json()["message"] == "Only the first 1000 search results are available"

    # Splitting the star range recovers every repository exactly once.
    def collect(lo: int, hi: int) -> list[str]:
        query = f"stars:{lo}..{hi} archived:false"
        first = HTTP.get(f"{gh.url}/search/repositories", params={"q": query, "per_page": 100}, headers=A).json()
        if first["total_count"] > 1000:
            mid = (lo + hi) // 2
            return collect(lo, mid) + collect(mid + 1, hi)
        names, page = [i["full_name"] for i in first["items"]], 1
        while len(names) < first["total_count"]:
            page += 1
            names += [i["full_name"] for i in HTTP.get(
                f"{gh.url}/search/repositories", params={"q": query, "per_page": 100, "page": page},
                headers=A).json()["items"]]
        return names

    names = collect(10_000, 1_000_000)
    assert len(names) == len(set(names)) == body["total_count"]

    langs = HTTP.get(f"{gh.url}/search/repositories",
                      params={"q": "stars:>=10000 language:Go language:Rust license:mit"}, headers=A).json()
    assert langs["items"] and all(i["language"] in ("Go", "Rust") and i["license"]["key"] == "mit"
                                  for i in langs["items"])
    forks = HTTP.get(f"{gh.url}/search/repositories", params={"q": "stars:>=10000 fork:only"}, headers=A).json()
    assert forks["total_count"] > 0 and all(i["fork"] for i in forks["items"])


def test_search_has_its_own_rate_limit(github_standin_factory: Any) -> None:
    gh = github_standin_factory(search_limit=2)
    url = f"{gh.url}/search/repositories?q=stars:>=300000"
    assert [HTTP.get(url, headers=A).status_code for _ in range(3)] == [200, 200, 403]
    assert HTTP.get(f"{gh.url}/repos/{gh.fixtures.repos[0].full_name}", headers=A).status_code == 200
    assert gh.rate_limit("tok-a", "search").remaining == 0 and gh.rate_limit("tok-a").remaining == 4999


def test_pygithub_end_to_end(github_standin_factory: Any) -> None:
    gh = github_standin_factory(tokens={"tok-a": 12})
    g = Github(base_url=gh.url, auth=Auth.Token("tok-a"), retry=None, seconds_between_requests=0,
               per_page=100)
    fx_repo = gh.fixtures.repos[1]
    repo = g.get_repo(fx_repo.full_name)
    assert repo.stargazers_count == fx_repo.stars and repo.language == fx_repo.language
    pr_fx = biggest(fx_repo, limit=10_000)
    pr = repo.get_pull(pr_fx.number)
    assert pr.merged and pr.changed_files == pr_fx.changed_files > 100
    files = list(pr.get_files())
    assert [f.filename for f in files] == [f.path for f in pr_fx.files]
    assert g.search_repositories("stars:>=10000", sort="stars", order="desc").totalCount == 1000
    with pytest.raises(UnknownObjectException):
        g.get_repo("nobody/nothing")
    with pytest.raises(BadCredentialsException):
        Github(base_url=gh.url, auth=Auth.Token("wrong"), retry=None).get_repo(fx_repo.full_name)
    while gh.rate_limit("tok-a").remaining:
        g.get_repo(fx_repo.full_name)
    with pytest.raises(RateLimitExceededException):
        g.get_repo(fx_repo.full_name)


# ------------------------------------------------------------------------------- GraphQL


def test_graphql_validates_against_schema(github_standin: GitHubStandIn) -> None:
    gh = github_standin
    if not gh.schema_validation:
        pytest.skip("GitHub's schema.graphql is absent: queries are not validated")
    r = gql(gh, '{ repository(owner: "a", name: "b") { nameWithOwner noSuchField } }')
    assert r.status_code == 200
    errors = r.json()["errors"]
    assert "noSuchField" in errors[0]["message"] and errors[0]["locations"]
    assert "data" not in r.json()
    syntax = gql(gh, "{ repository(owner: ")
    assert syntax.status_code == 200 and "Syntax Error" in syntax.json()["errors"][0]["message"]
    assert gh.rate_limit("tok-a", "graphql").used == 0  # invalid queries cost nothing


def test_graphql_repository_fields_and_not_found(github_standin: GitHubStandIn) -> None:
    gh = github_standin
    repo = gh.fixtures.repos[0]
    q = """query($o: String!, $n: String!) { repository(owner: $o, name: $n) {
        nameWithOwner name owner { login } stargazerCount isArchived isFork isPrivate
        licenseInfo { spdxId key name } primaryLanguage { name } defaultBranchRef { name }
        url databaseId pushedAt } }"""
    data = gql(gh, q, {"o": repo.owner, "n": repo.name}).json()["data"]["repository"]
    assert data["nameWithOwner"] == repo.full_name and data["stargazerCount"] == repo.stars
    assert data["primaryLanguage"] == {"name": repo.language} and data["databaseId"] == repo.id
    assert data["defaultBranchRef"] == {"name": repo.default_branch} and data["isPrivate"] is False
    missing = gql(gh, q, {"o": "nobody", "n": "nothing"}).json()
    assert missing["data"] == {"repository": None}
    assert missing["errors"][0]["type"] == "NOT_FOUND" and missing["errors"][0]["path"] == ["repository"]
    assert missing["errors"][0]["message"] == "Could not resolve to a Repository with the name 'nobody/nothing'."
    private = next(r for r in gh.fixtures.repos if r.private)
    assert gql(gh, q, {"o": private.owner, "n": private.name}, B).json()["data"]["repository"] is None
    assert gql(gh, q, {"o": private.owner, "n": private.name}, A).json()["data"]["repository"]["isPrivate"]


def test_graphql_pages_all_merged_prs(github_standin: GitHubStandIn) -> None:
    gh = github_standin
    repo = gh.fixtures.repos[2]
    merged = repo.merged_prs()
    assert len(merged) < len(repo.prs)  # OPEN and CLOSED ones exist and must be excluded
    after, numbers, calls = None, [], 0
    while True:
        r = gql(gh, PRS_QUERY, {"owner": repo.owner, "name": repo.name, "after": after, "first": 40,
                                "field": "CREATED_AT", "direction": "ASC"})
        calls += 1
        conn = r.json()["data"]["repository"]["pullRequests"]
        assert conn["totalCount"] == len(merged)
        assert all(n["state"] == "MERGED" and n["merged"] for n in conn["nodes"])
        assert [e["cursor"] for e in conn["edges"]][-1:] == [conn["pageInfo"]["endCursor"]]
        numbers += [n["number"] for n in conn["nodes"]]
        if not conn["pageInfo"]["hasNextPage"]:
            break
        after = conn["pageInfo"]["endCursor"]
    assert numbers == [p.number for p in sorted(merged, key=lambda p: p.created_at)]
    assert calls == math.ceil(len(merged) / 40)
    node = r.json()["data"]["repository"]["pullRequests"]["nodes"][-1]
    fx_pr = repo.pr(node["number"])
    assert fx_pr is not None and node["changedFiles"] == fx_pr.changed_files
    assert node["files"]["totalCount"] == fx_pr.changed_files
    assert gh.counts["graphql"] == calls and gh.rate_limit("tok-a", "graphql").used == calls


def test_graphql_order_updated_desc_and_new_pr(github_standin: GitHubStandIn) -> None:
    gh = github_standin
    repo = gh.fixtures.repos[0]
    variables = {"owner": repo.owner, "name": repo.name, "first": 100, "field": "UPDATED_AT", "direction": "DESC"}
    nodes = gql(gh, PRS_QUERY, variables).json()["data"]["repository"]["pullRequests"]["nodes"]
    stamps = [n["updatedAt"] for n in nodes]
    assert stamps == sorted(stamps, reverse=True) and len(nodes) == 100
    assert stamps != sorted(n["createdAt"] for n in nodes)[::-1]  # the orders really differ
    new = gh.add_pr(repo.full_name, title="Add streaming support",
                    files=[File("src/stream.py", 40, 0, "ADDED"), File("tests/test_stream.py", 25, 0, "ADDED")])
    top = gql(gh, PRS_QUERY, {**variables, "first": 1}).json()["data"]["repository"]["pullRequests"]
    assert top["nodes"][0]["number"] == new.number and top["totalCount"] == len(repo.merged_prs())
    assert top["nodes"][0]["changedFiles"] == 2
    assert HTTP.get(f"{gh.url}/repos/{repo.full_name}/pulls/{new.number}", headers=A).json()["merged"]


def test_graphql_pr_details_bots_files_and_issues(github_standin: GitHubStandIn) -> None:
    gh = github_standin
    repo, bot_pr = repo_with(gh.fixtures, lambda p: p.author == "dependabot[bot]" and p.merged)
    q = """query($o: String!, $n: String!, $num: Int!, $after: String) { repository(owner: $o, name: $n) {
      pullRequest(number: $num) {
        number title body bodyText url state merged mergedAt createdAt updatedAt authorAssociation
        author { login __typename } labels(first: 10) { nodes { name } }
        baseRefName baseRefOid headRefOid mergeCommit { oid } additions deletions changedFiles
        databaseId id
        files(first: 100, after: $after) { totalCount pageInfo { hasNextPage endCursor }
                                          nodes { path additions deletions changeType } }
        closingIssuesReferences(first: 10) { nodes { number title body url } }
      } } }"""
    def fetch(repo: Repo, number: int, after: str | None = None) -> dict[str, Any]:
        variables = {"o": repo.owner, "n": repo.name, "num": number, "after": after}
        return gql(gh, q, variables).json()["data"]["repository"]["pullRequest"]

    pr = fetch(repo, bot_pr.number)
    assert pr["author"] == {"login": "dependabot", "__typename": "Bot"}  # GraphQL drops "[bot]"
    assert pr["labels"]["nodes"][0]["name"] == "dependencies" and pr["mergeCommit"]["oid"] == bot_pr.merge_commit_oid
    assert pr["id"] == bot_pr.node_id and pr["databaseId"] == bot_pr.database_id

    repo, issue_pr = repo_with(gh.fixtures, lambda p: bool(p.closing_issues) and p.merged)
    pr = fetch(repo, issue_pr.number)
    closing = pr["closingIssuesReferences"]["nodes"]
    assert [i["number"] for i in closing] == [i.number for i in issue_pr.closing_issues]
    assert pr["author"]["__typename"] == "User"

    repo = gh.fixtures.repos[0]
    big = biggest(repo)
    after, paths = None, []
    while True:
        files = fetch(repo, big.number, after)["files"]
        paths += [f["path"] for f in files["nodes"]]
        if not files["pageInfo"]["hasNextPage"]:
            break
        after = files["pageInfo"]["endCursor"]
    assert paths == [f.path for f in big.files] and files["totalCount"] == 250


def test_graphql_pagination_limits(github_standin: GitHubStandIn) -> None:
    gh = github_standin
    repo = gh.fixtures.repos[0]
    too_many = gql(gh, '{ repository(owner: "%s", name: "%s") { pullRequests(first: 101) { nodes { number } } } }'
                   % (repo.owner, repo.name)).json()
    assert too_many["errors"][0]["message"] == (
        "Requesting 101 records on the `pullRequests` connection exceeds the `first` limit of 100 records.")
    assert too_many["errors"][0]["type"] == "EXCESSIVE_PAGINATION"
    unbounded = gql(gh, '{ repository(owner: "%s", name: "%s") { pullRequests { nodes { number } } } }'
                    % (repo.owner, repo.name)).json()
    assert "You must provide a `first` or `last` value" in unbounded["errors"][0]["message"]
    count_only = gql(gh, '{ repository(owner: "%s", name: "%s") { pullRequests(states: [OPEN, CLOSED]) '
                     '{ totalCount } } }' % (repo.owner, repo.name)).json()
    assert count_only["data"]["repository"]["pullRequests"]["totalCount"] == len(repo.prs) - len(repo.merged_prs())
    bad_cursor = gql(gh, '{ repository(owner: "%s", name: "%s") { pullRequests(first: 1, after: "bogus") '
                     '{ nodes { number } } } }' % (repo.owner, repo.name)).json()
    assert "does not appear to be a valid cursor" in bad_cursor["errors"][0]["message"]


def test_graphql_cost_and_rate_limit(github_standin_factory: Any) -> None:
    gh = github_standin_factory(graphql_limit=4)
    repo = gh.fixtures.repos[0]
    q = """query($o: String!, $n: String!) { rateLimit { cost remaining used limit nodeCount resetAt }
      repository(owner: $o, name: $n) { pullRequests(first: 100) { nodes { files(first: 100) { nodes { path } }
      labels(first: 100) { nodes { name } } } } } }"""
    r = gql(gh, q, {"o": repo.owner, "n": repo.name})
    rate = r.json()["data"]["rateLimit"]
    assert rate == {"cost": 2, "remaining": 2, "used": 2, "limit": 4, "nodeCount": 20_100,
                    "resetAt": rate["resetAt"]}  # 201 requests / 100 -> 2 points
    assert r.headers["x-ratelimit-resource"] == "graphql" and r.headers["x-ratelimit-remaining"] == "2"
    assert gql(gh, "{ viewer { login } }").json()["data"]["viewer"]["login"] == "standin-user-1"
    assert gql(gh, "{ viewer { login } }").status_code == 200
    limited = gql(gh, "{ viewer { login } }")
    assert limited.status_code == 200 and limited.headers["x-ratelimit-remaining"] == "0"
    assert limited.json() == {"data": None, "errors": [
        {"type": "RATE_LIMITED", "message": "API rate limit exceeded for user ID 1."}]}
    assert gql(gh, "{ viewer { login } }", headers=B).status_code == 200  # per-token budgets


def test_graphql_search_cap(github_standin: GitHubStandIn) -> None:
    gh = github_standin
    q = """query($after: String) { search(query: "stars:>=10000", type: REPOSITORY, first: 100, after: $after) {
      repositoryCount pageInfo { hasNextPage endCursor }
      nodes { ... on Repository { nameWithOwner stargazerCount } } } }"""
    after, names = None, []
    while True:
        s = gql(gh, q, {"after": after}).json()["data"]["search"]
        names += [n["nameWithOwner"] for n in s["nodes"]]
        if not s["pageInfo"]["hasNextPage"]:
            break
        after = s["pageInfo"]["endCursor"]
    assert s["repositoryCount"] > 1000 and len(names) == 1000


def test_schema_fallback_without_published_schema(tmp_path: Any) -> None:
    fx = make_fixtures()
    with pytest.warns(UserWarning, match="NOT validated"):
        engine = GraphQLEngine(fx, tmp_path / "missing.graphql")
    assert not engine.validating
    plan = engine.prepare('{ repository(owner: "%s", name: "%s") { nameWithOwner unknownField } }'
                          % (fx.repos[0].owner, fx.repos[0].name), None, None)
    assert not isinstance(plan, list)
    body = engine.execute(plan, RequestContext(fx, "tok-a", "me", 1, {}))
    assert body["data"]["repository"] == {"nameWithOwner": fx.repos[0].full_name}


# -------------------------------------------------------------------------------- faults


def _check_fault(kind: str, gh: GitHubStandIn, r: httpx.Response) -> None:
    if kind in ("secondary", "secondary_no_retry_after", "429"):
        assert r.status_code == (429 if kind == "429" else 403)
        assert "secondary rate limit" in r.json()["message"]
        assert int(r.headers["x-ratelimit-remaining"]) > 0
        assert ("retry-after" in r.headers) == (kind != "secondary_no_retry_after")
        if kind != "secondary_no_retry_after":
            assert r.headers["retry-after"] == "1"
    elif kind in ("502", "503", "504"):
        assert r.status_code == int(kind) and r.headers["content-type"].startswith("text/html")
        assert "<html>" in r.text
    elif kind == "html":
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
        with pytest.raises(ValueError):
            r.json()
    elif kind == "graphql_rate_limited":
        assert r.status_code == 200 and r.json()["errors"][0]["type"] == "RATE_LIMITED"
        assert r.headers["x-ratelimit-remaining"] == "0"
    elif kind == "graphql_timeout":
        assert r.status_code == 502 and "Something went wrong" in r.json()["errors"][0]["message"]
    else:
        raise AssertionError(kind)


@pytest.mark.parametrize("kind", [k for k in FAULT_KINDS if k not in ("exhausted", "disconnect")])
def test_each_fault_kind(kind: str, github_standin: GitHubStandIn) -> None:
    gh = github_standin
    repo = gh.fixtures.repos[0]
    graphql = kind.startswith("graphql")
    gh.fault(kind)

    def call() -> httpx.Response:
        if graphql:
            return gql(gh, "{ viewer { login } }")
        return HTTP.get(f"{gh.url}/repos/{repo.full_name}", headers=A)

    _check_fault(kind, gh, call())
    after = call()
    assert after.status_code == 200 and after.headers["content-type"].startswith("application/json")
    resource = "graphql" if graphql else "core"
    assert gh.rate_limit("tok-a", resource).used == 1  # the faulted request cost nothing
    assert gh.counts[f"fault:{kind}"] == 1 and gh.requests[0].fault == kind


def test_exhausted_fault_and_recovery(github_standin_factory: Any) -> None:
    clock = FakeClock()
    gh = github_standin_factory(clock=clock)
    url = f"{gh.url}/repos/{gh.fixtures.repos[0].full_name}"
    gh.fault("exhausted", reset_in=5, match="rest")
    r = HTTP.get(url, headers=A)
    assert r.status_code == 403 and r.headers["x-ratelimit-remaining"] == "0"
    assert int(r.headers["x-ratelimit-reset"]) == math.ceil(clock.now + 5)
    assert "API rate limit exceeded" in r.json()["message"]
    assert HTTP.get(url, headers=A).status_code == 403  # really exhausted, not a one-off
    assert HTTP.get(url, headers=B).status_code == 200  # only for that token
    clock.advance(6)
    assert HTTP.get(url, headers=A).status_code == 200
    gh.fault("exhausted", match="graphql")
    limited = gql(gh, "{ viewer { login } }")
    assert limited.json()["errors"][0]["type"] == "RATE_LIMITED"
    assert limited.headers["x-ratelimit-resource"] == "graphql"
    assert gql(gh, "{ viewer { login } }").json()["data"] is None


def test_disconnect_fault(github_standin: GitHubStandIn) -> None:
    gh = github_standin
    gh.fault("disconnect")
    with httpx.Client(headers=A) as client:
        with pytest.raises(httpx.RemoteProtocolError):
            client.get(f"{gh.url}/rate_limit")
        assert client.get(f"{gh.url}/rate_limit").status_code == 200


def test_fault_queue_matching_and_order(github_standin: GitHubStandIn) -> None:
    gh = github_standin
    repo = gh.fixtures.repos[0]
    gh.fault("502", match="graphql")
    gh.fault("503", match=f"/repos/{repo.full_name}/pulls", times=2)
    gh.fault("secondary", retry_after=7)
    statuses = [
        HTTP.get(f"{gh.url}/repos/{repo.full_name}/pulls/{repo.prs[0].number}", headers=A),  # 503
        HTTP.get(f"{gh.url}/repos/{repo.full_name}", headers=A),  # secondary (first any-match)
        gql(gh, "{ viewer { login } }"),  # 502
        HTTP.get(f"{gh.url}/repos/{repo.full_name}/pulls", headers=A),  # 503 again
        HTTP.get(f"{gh.url}/repos/{repo.full_name}/pulls", headers=A),  # fine
    ]
    assert [r.status_code for r in statuses] == [503, 403, 502, 503, 200]
    assert statuses[1].headers["retry-after"] == "7"
    assert not gh.pending_faults and gh.counts["faults"] == 4
    # A predicate can pick requests by their GraphQL query.
    gh.fault("504", match=lambda rec: "pullRequests" in ((rec.graphql or {}).get("query") or ""))
    assert gql(gh, "{ viewer { login } }").status_code == 200
    variables = {"owner": repo.owner, "name": repo.name, "first": 1, "field": "CREATED_AT", "direction": "ASC"}
    assert gql(gh, PRS_QUERY, variables).status_code == 504
    assert gh.requests[-1].fault == "504" and "pullRequests" in gh.requests[-1].graphql["query"]


def test_random_fault_rate_is_seeded(github_standin_factory: Any) -> None:
    def run(seed: int) -> list[int]:
        gh = github_standin_factory(fault_rate=0.3, fault_seed=seed, fault_kinds=["502", "secondary", "html"])
        url = f"{gh.url}/repos/{gh.fixtures.repos[0].full_name}"
        with httpx.Client(headers=A) as client:
            return [client.get(url).status_code for _ in range(40)]

    first, again, other = run(1), run(1), run(2)
    assert first == again and first != other
    assert 4 <= sum(s != 200 for s in first) <= 20 and {502, 403} <= set(first)


# ------------------------------------------------------------------------ accounting


def test_request_log_never_holds_tokens(github_standin_factory: Any) -> None:
    secret = "ghp_" + "Z9y8X7w6V5u4T3s2R1q0P9o8N7m6L5k4J3i2"
    wrong = "ghp_" + "Wrong0Wrong1Wrong2Wrong3Wrong4Wrong5aa"
    gh = github_standin_factory(tokens={"tok-x": 100, secret: 100})
    repo = gh.fixtures.repos[0]
    HTTP.get(f"{gh.url}/repos/{repo.full_name}", headers={"Authorization": f"token {secret}"})
    gql(gh, "{ viewer { login } }", headers={"Authorization": f"Bearer {secret}"})
    HTTP.get(f"{gh.url}/repos/{repo.full_name}", headers={"Authorization": f"token {wrong}"})
    HTTP.get(f"{gh.url}/rate_limit?access_token={secret}")
    dump = repr(gh.requests) + repr(gh.counts)
    assert secret not in dump and wrong not in dump and "ghp_" not in dump
    assert [r.token for r in gh.requests][:2] == ["token#1", "token#1"] == [gh.token_ref(secret)] * 2
    assert gh.requests[2].token.startswith("invalid:") and gh.requests[3].token == "anonymous"
    assert all("authorization" not in {h.lower() for h in r.headers} for r in gh.requests)
    assert gh.requests[1].graphql == {"query": "{ viewer { login } }", "variables": {}, "operationName": None}


def test_counts_and_reset(github_standin: GitHubStandIn) -> None:
    gh = github_standin
    repo = gh.fixtures.repos[0]
    HTTP.get(f"{gh.url}/repos/{repo.full_name}/pulls/{repo.prs[0].number}/files", headers=A)
    HTTP.get(f"{gh.url}/search/repositories?q=stars:>400000", headers=A)
    gql(gh, "{ viewer { login } }")
    counts = gh.counts
    assert counts["total"] == 3 and counts["rest"] == 2 and counts["search"] == 1 and counts["graphql"] == 1
    assert counts["rest:/repos/{o}/{r}/pulls/{n}/files"] == 1 and counts["200"] == 3
    gh.reset_counts()
    assert gh.counts["total"] == 0 and gh.requests == []
    assert gh.internal_errors == []


def test_stop_is_clean_with_idle_keepalive_connections(github_standin_factory: Any) -> None:
    gh = github_standin_factory()
    client = httpx.Client(headers=A)
    assert client.get(f"{gh.url}/rate_limit").status_code == 200
    url = gh.url
    started = time.monotonic()
    gh.stop()
    assert time.monotonic() - started < 2
    with pytest.raises(httpx.TransportError):
        client.get(f"{url}/rate_limit")
    client.close()
