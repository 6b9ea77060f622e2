"""The GitHub crawler against the GitHub stand-in (a real loopback server speaking REST and
GraphQL, validating every query against GitHub's published schema)."""

from __future__ import annotations

import json

import pytest
from dbutil import q

from standins.github_fixtures import File, make_fixtures
from standins.github_server import GitHubStandIn
from synth.config import GitHubSettings
from synth.sources.ratelimit import Answer, Policy

TOKENS = {"tok-a": 5000, "tok-b": 5000}




@pytest.fixture
def fx():
    return make_fixtures(seed=1, n_repos=3, prs_per_repo=90, n_search_repos=0, private_prs=5)


def public(fx):
    return [r for r in fx.repos if not r.private]


def crawl(cli, gh, db, monkeypatch, *extra, tokens="tok-a,tok-b"):
    monkeypatch.setenv("GITHUB_API_URL", gh.url)
    monkeypatch.setenv("GITHUB_TOKENS", tokens)
    (db.parent / "synth.toml").write_text("[github]\nsecondary_min_wait = 0.05\nbackoff = 0.05\n")
    return cli("run", "--github", "--db", db, "--no-rewrite", *extra)


def repos_arg(fx):
    return ",".join(r.full_name for r in public(fx))


def test_queue_matches_the_fixtures(cli, fx, db, monkeypatch):
    with GitHubStandIn(fx, tokens=TOKENS) as gh:
        r = crawl(cli, gh, db, monkeypatch, "--repos", repos_arg(fx))
        assert r.code == 0, r
        assert not gh.internal_errors
    for repo in public(fx):
        merged = {p.number: p for p in repo.merged_prs()}
        stored = dict(q(db, "SELECT number, title FROM pull_requests WHERE repo = ?", [repo.full_name]))
        assert set(stored) == set(merged)
        assert all(stored[n] == merged[n].title for n in merged)
        assert q(db, "SELECT count(*) FROM decisions WHERE repo = ?", [repo.full_name])[0][0] == len(merged)
        meta = q(db, "SELECT stars, language, license FROM repos WHERE repo = ?", [repo.full_name])[0]
        assert meta[0] == repo.stars and meta[1] == repo.language
        for n, pr in merged.items():
            row = q(db, "SELECT additions, deletions, changed_files, linked_issues, author_is_bot, "
                        "merge_sha, base_sha FROM pull_requests WHERE repo = ? AND number = ?",
                    [repo.full_name, n])[0]
            assert row[:3] == (pr.additions, pr.deletions, pr.changed_files)
            assert [i["number"] for i in json.loads(row[3])] == [i.number for i in pr.closing_issues]
            assert row[4] == pr.is_bot and row[5] == pr.merge_commit_oid and row[6] == pr.base_oid
            files = {p: (a, d) for p, a, d in q(
                db, "SELECT path, additions, deletions FROM pr_files WHERE repo = ? AND number = ?",
                [repo.full_name, n])}
            want = {f.path: (f.additions, f.deletions) for f in pr.files}
            if len(pr.files) <= 100:
                assert files == want, n
            else:  # too large: only the metadata pass's first 100 files are kept
                assert len(files) == 100 and set(files) <= set(want)
        kept_with_patch = q(db, "SELECT count(*) FROM pr_files f JOIN candidates c USING (repo, number) "
                                "WHERE c.kept AND f.patch IS NULL AND NOT f.is_binary "
                                "AND f.additions + f.deletions > 0 AND f.repo = ?",
                            [repo.full_name])[0][0]
        assert kept_with_patch == 0  # every kept PR has its patches


def test_rerun_costs_one_request_per_repo_and_picks_up_new_prs(cli, fx, db, monkeypatch):
    with GitHubStandIn(fx, tokens=TOKENS) as gh:
        assert crawl(cli, gh, db, monkeypatch, "--repos", repos_arg(fx)).code == 0
        before = q(db, "SELECT count(*) FROM pull_requests")[0][0]
        gh.reset_counts()
        assert crawl(cli, gh, db, monkeypatch, "--repos", repos_arg(fx)).code == 0
        assert gh.counts["total"] == len(public(fx))
        name = public(fx)[0].full_name
        new = fx.add_pr(name, title="Add streaming decoder", files=[
            File("src/decoder.py", 80, 3), File("src/stream.py", 40, 10), File("tests/test_decoder.py", 50, 0)])
        gh.reset_counts()
        assert crawl(cli, gh, db, monkeypatch, "--repos", repos_arg(fx)).code == 0
        assert q(db, "SELECT count(*) FROM pull_requests")[0][0] == before + 1
        assert q(db, "SELECT kept FROM candidates WHERE repo = ? AND number = ?", [name, new.number]) == [(True,)]
        assert gh.counts["graphql"] == len(public(fx))
        assert gh.counts["rest:/repos/{o}/{r}/pulls/{n}/files"] == 1


def test_faults_on_ten_percent_give_the_same_queue(cli, fx, tmp_path, monkeypatch):
    clean, faulty = tmp_path / "clean.duckdb", tmp_path / "faulty.duckdb"
    with GitHubStandIn(fx, tokens=TOKENS) as gh:
        assert crawl(cli, gh, clean, monkeypatch, "--repos", repos_arg(fx)).code == 0
    kinds = ["secondary", "secondary_no_retry_after", "429", "502", "503", "504", "html",
             "graphql_rate_limited", "exhausted"]
    with GitHubStandIn(fx, tokens=TOKENS, fault_rate=0.1, fault_seed=7, fault_kinds=kinds,
                       retry_after=1, reset_in=1.0) as gh:
        r = crawl(cli, gh, faulty, monkeypatch, "--repos", repos_arg(fx))
        assert r.code == 0, r
        assert gh.counts["faults"] >= 10
    cols = "repo, number, title, additions, deletions, changed_files, merge_sha, labels, linked_issues"
    assert q(faulty, f"SELECT {cols} FROM pull_requests ORDER BY ALL") == \
        q(clean, f"SELECT {cols} FROM pull_requests ORDER BY ALL")
    assert q(faulty, "SELECT repo, number, path, additions, deletions, patch FROM pr_files ORDER BY ALL") == \
        q(clean, "SELECT repo, number, path, additions, deletions, patch FROM pr_files ORDER BY ALL")
    assert q(faulty, "SELECT repo, number, kept, reasons FROM decisions ORDER BY ALL") == \
        q(clean, "SELECT repo, number, kept, reasons FROM decisions ORDER BY ALL")
    counts = json.loads(q(faulty, "SELECT counts FROM runs ORDER BY started_at DESC LIMIT 1")[0][0])
    assert counts["github/longest_wait_ms"] <= 2000  # never longer than the server asked


def test_budget_exhausted_mid_run_then_resume(cli, fx, tmp_path, monkeypatch):
    db, ref = tmp_path / "budget.duckdb", tmp_path / "ref.duckdb"
    with GitHubStandIn(fx, tokens=TOKENS) as gh:
        assert crawl(cli, gh, ref, monkeypatch, "--repos", repos_arg(fx)).code == 0
        gh.reset_counts()
        r = crawl(cli, gh, db, monkeypatch, "--repos", repos_arg(fx), "--max-requests", "30")
        assert r.code == 3 and "budget" in r.out
        assert gh.counts["total"] == 30
        partial = q(db, "SELECT count(*) FROM pull_requests")[0][0]
        assert 0 < partial < q(ref, "SELECT count(*) FROM pull_requests")[0][0]
        # cursors are never ahead of saved work: every PR up to the cursor is stored
        for _ in range(10):
            r = crawl(cli, gh, db, monkeypatch, "--repos", repos_arg(fx), "--max-requests", "30")
            if r.code == 0:
                break
    assert r.code == 0
    sql = "SELECT repo, number, title FROM pull_requests ORDER BY ALL"
    assert q(db, sql) == q(ref, sql)
    assert q(db, "SELECT repo, number, kept FROM candidates ORDER BY ALL") == \
        q(ref, "SELECT repo, number, kept FROM candidates ORDER BY ALL")


def test_unknown_private_and_bad_token_each_one_clear_line(cli, fx, db, monkeypatch):
    private = next(r for r in fx.repos if r.private)
    names = f"{public(fx)[0].full_name},nobody/nothing,{private.full_name}"
    with GitHubStandIn(fx, tokens=TOKENS) as gh:
        r = crawl(cli, gh, db, monkeypatch, "--repos", names, tokens="tok-b")
        assert r.code == 3, r
        assert r.out.count("no such repository, or the token cannot see it") == 2
        assert q(db, "SELECT count(*) FROM pull_requests WHERE repo = ?", [public(fx)[0].full_name])[0][0] > 0
        errors = json.loads(q(db, "SELECT errors FROM runs ORDER BY started_at DESC LIMIT 1")[0][0])
        assert {e["repo"] for e in errors} == {"nobody/nothing", private.full_name}
        skipped = q(db, "SELECT repo, reason FROM failures WHERE stage = 'source' ORDER BY repo")
        assert [s[1] for s in skipped] == ["repository_not_found"] * 2
        r = crawl(cli, gh, db.parent / "bad.duckdb", monkeypatch, "--repos", names,
                  tokens="ghp_" + "x" * 36)
        assert r.code in (1, 3) and "token" in (r.out + r.err).lower()
        assert (r.out + r.err).lower().count("bad credentials") >= 1
        assert "x" * 36 not in r.out + r.err


def test_tokens_never_leak(cli, fx, tmp_path, monkeypatch, capfd):
    secret = "ghp_SeCrEtToKeN0123456789abcdefghijklmnop"
    db = tmp_path / "leak.duckdb"
    with GitHubStandIn(fx, tokens={secret: 5000}, fault_rate=0.1, fault_seed=3,
                       fault_kinds=["502", "secondary"], retry_after=0) as gh:
        r = crawl(cli, gh, db, monkeypatch, "--repos", repos_arg(fx) + ",nobody/nothing",
                  "-v", "--log-json", tokens=secret)
        r2 = crawl(cli, gh, tmp_path / "bad.duckdb", monkeypatch, "--repos", repos_arg(fx),
                   "-v", tokens=secret[:-1] + "X")
        logged = json.dumps([vars(x) if hasattr(x, "__dict__") else str(x) for x in gh.requests], default=str)
    captured = capfd.readouterr()
    everything = r.out + r.err + r2.out + r2.err + captured.out + captured.err + logged
    assert secret not in everything and secret[:-1] not in everything
    for f in tmp_path.rglob("*"):
        if f.is_file():
            assert secret.encode() not in f.read_bytes(), f
    out = tmp_path / "export"
    cli("review", "approve", "--where", "true", "--reviewer", "x", "--db", db)
    cli("export", "--out", out, "--db", db)
    for f in out.iterdir():
        assert secret not in f.read_text()


def test_discovery_splits_star_ranges_past_the_1000_cap(cli, tmp_path, monkeypatch):
    fx = make_fixtures(seed=2, n_repos=1, prs_per_repo=5, n_search_repos=2500)
    eligible = {r.full_name for r in fx.all_repos()
                if r.stars >= 10000 and not r.archived and not r.fork and not r.private}
    assert len(eligible) > 1000
    db = tmp_path / "disc.duckdb"
    monkeypatch.setenv("GITHUB_TOKEN", "tok-a")
    with GitHubStandIn(fx, tokens=TOKENS, search_limit=1000) as gh:
        monkeypatch.setenv("GITHUB_API_URL", gh.url)
        r = cli("repos", "discover", "--db", db)
        assert r.code == 0, r
        stored = {n for (n,) in q(db, "SELECT repo FROM repos WHERE source = 'github'")}
        assert stored == eligible
        first = gh.counts["search"]
        gh.reset_counts()
        r = cli("repos", "discover", "--db", db)
        assert r.code == 0 and gh.counts["304"] == gh.counts["search"] > 0
        assert "unchanged pages" in r.out
    assert first > 10


def test_policy_waits_for_primary_reset_and_prefers_the_fuller_token():
    now = [1000.0]
    slept = []
    pol = Policy(["a", "b"], clock=lambda: now[0], sleep=lambda s: (slept.append(s), now.__setitem__(0, now[0] + s)))
    seen = []

    def do(token):
        seen.append(token)
        if token == "a":
            return Answer(403, {"x-ratelimit-remaining": "0", "x-ratelimit-reset": "1010"}, {})
        if len(seen) < 4:
            return Answer(200, {"x-ratelimit-remaining": "1", "x-ratelimit-reset": "1005"}, {})
        return Answer(200, {"x-ratelimit-remaining": "0", "x-ratelimit-reset": "1005"}, {})

    pol.call("core", "rest", do)  # a is exhausted, b answers
    assert seen[-1] == "b"
    pol.call("core", "rest", do)
    assert seen[-1] == "b"  # a rests until its reset
    pol.call("core", "rest", do)  # b now reports 0 left: the next call waits for b's reset
    pol.call("core", "rest", do)
    assert slept and max(slept) <= 5.1


def test_graphql_endpoint_for_enterprise():
    assert GitHubSettings(api_url="https://ghe.example.com/api/v3").graphql_endpoint() == \
        "https://ghe.example.com/api/graphql"
    assert GitHubSettings().graphql_endpoint() == "https://api.github.com/graphql"


def test_discover_then_crawl_the_discovered(cli, tmp_path, monkeypatch):
    fx = make_fixtures(seed=4, n_repos=2, prs_per_repo=40, n_search_repos=0, n_private_repos=0)
    db = tmp_path / "d.duckdb"
    with GitHubStandIn(fx, tokens=TOKENS, search_limit=1000) as gh:
        monkeypatch.setenv("GITHUB_API_URL", gh.url)
        monkeypatch.setenv("GITHUB_TOKEN", "tok-a")
        r = cli("repos", "discover", "--min-stars", "0", "--db", db)
        assert r.code == 0, r
        r = cli("run", "--github", "--discover", "--no-rewrite", "--db", db)
        assert r.code == 0, r
    for repo in fx.repos:
        n = q(db, "SELECT count(*) FROM pull_requests WHERE repo = ?", [repo.full_name])[0][0]
        assert n == len(repo.merged_prs())


def test_patches_of_a_pr_with_more_than_100_files_are_paged(fx):
    from synth.sources.github import GitHubAPI, fetch_patches
    from synth.models import PullRequest
    repo = public(fx)[0]
    big = fx.add_pr(repo.full_name, title="Touch many modules",
                    files=[File(f"src/mod{i}.py", 3, 1) for i in range(250)])
    with GitHubStandIn(fx, tokens=TOKENS) as gh:
        api = GitHubAPI(GitHubSettings(api_url=gh.url), ["tok-a"])
        try:
            pr = PullRequest(repo=repo.full_name, number=big.number, title="", body="", author="",
                             merged_at=None, base_sha="", merge_sha="", url="")
            full = fetch_patches(api, pr)
        finally:
            api.close()
        assert gh.counts["rest:/repos/{o}/{r}/pulls/{n}/files"] == 3
    assert len(full.files) == 250 and all(f.patch and f.additions == 3 for f in full.files)
    assert {f.path for f in full.files} == {f"src/mod{i}.py" for i in range(250)}


def test_sources_from_the_config_git_and_github_together(cli, fx, tmp_path, monkeypatch, history_100):
    path, expected = history_100
    db = tmp_path / "mixed.duckdb"
    name = public(fx)[0].full_name
    with GitHubStandIn(fx, tokens=TOKENS) as gh:
        monkeypatch.setenv("GITHUB_API_URL", gh.url)
        monkeypatch.setenv("GITHUB_TOKEN", "tok-a")
        (tmp_path / "synth.toml").write_text(
            f'[sources]\ngit = ["{path}"]\nrepos = ["{name}"]\n\n[queue]\ndb = "{db}"\n')
        r = cli("run", "--no-rewrite")
        assert r.code == 0, r
    counts = dict(q(db, "SELECT repo, count(*) FROM pull_requests GROUP BY repo"))
    assert counts == {"acme/widgets": len(expected), name: len(public(fx)[0].merged_prs())}
