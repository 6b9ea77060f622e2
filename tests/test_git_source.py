"""The local git source on histories built here: merge and squash styles, stats, oddities."""

from __future__ import annotations

import subprocess

import pytest

from synth.errors import EmptyHistory, NotAGitRepository, SourceError
from synth.sources.git import GitSource, parse_log_patches
from synth.sources.history import build_repository


def test_reads_every_pr_with_file_stats(history_100):
    path, expected = history_100
    src = GitSource(path)
    assert src.repo_name == "acme/widgets"
    commits = src.list_pr_commits()
    assert {c.number for c in commits} == set(expected)
    styles = {c.number: c.style for c in commits}
    assert all(styles[n] == e["style"] for n, e in expected.items())
    prs = list(src.pull_requests(commits))
    assert len(prs) == 100
    for pr in prs:
        exp = expected[pr.number]
        assert pr.title == exp["title"]
        got = {f.path: (f.status, f.additions, f.deletions) for f in pr.files}
        assert got == exp["files"], pr.number
        assert pr.url == f"https://github.com/acme/widgets/pull/{pr.number}"
        assert len(pr.base_sha) == 40 and len(pr.merge_sha) == 40
        assert pr.body.startswith("Body of change")
    png = next(f for pr in prs for f in pr.files if f.path.endswith(".png"))
    assert png.binary and png.patch is None


def test_merge_pr_author_is_the_branch_author(history_100):
    path, _ = history_100
    src = GitSource(path)
    merges = [c for c in src.list_pr_commits() if c.style == "merge"]
    assert merges and all(c.author.startswith("Dev") for c in merges)
    assert all(len(c.parents) == 2 for c in merges)


def test_bare_clone_and_repo_override(history_100, tmp_path):
    path, expected = history_100
    bare = tmp_path / "bare.git"
    subprocess.run(["git", "clone", "-q", "--bare", str(path), str(bare)], check=True)
    src = GitSource(bare, repo_name="other/name")
    assert src.repo_name == "other/name"
    assert len(src.list_pr_commits()) == len(expected)


def test_missing_path_not_a_repo_and_empty_history(tmp_path):
    with pytest.raises(SourceError, match="no such path"):
        GitSource(tmp_path / "nope")
    (tmp_path / "plain").mkdir()
    with pytest.raises(NotAGitRepository, match="not a git repository"):
        GitSource(tmp_path / "plain")
    empty = tmp_path / "empty"
    subprocess.run(["git", "init", "-q", str(empty)], check=True)
    with pytest.raises(EmptyHistory, match="no commits"):
        GitSource(empty, repo_name="a/b")


def test_no_origin_needs_repo_name(tmp_path):
    build_repository({"commits": [{"kind": "direct", "message": "x", "author": "A <a@b>",
                                   "date": "2024-01-01T00:00:00+00:00",
                                   "files": {"a.txt": "a\n"}}]}, tmp_path / "r")
    with pytest.raises(SourceError, match="--repo owner/name"):
        GitSource(tmp_path / "r")


def test_renames_non_utf8_and_huge_patches(tmp_path):
    big = "".join(f"line {i} " + "x" * 100 + "\n" for i in range(12000))  # ~1.3 MB
    history = {"repo": {"name": "o/r"}, "commits": [
        {"kind": "direct", "message": "init", "author": "A <a@b>", "date": "2024-01-01T00:00:00+00:00",
         "files": {"old_name.py": "def f():\n    return 1\n" * 20}},
        {"kind": "squash", "pr": 1, "title": "Rename", "author": "A <a@b>",
         "date": "2024-01-02T00:00:00+00:00", "delete": ["old_name.py"],
         "files": {"new_name.py": "def f():\n    return 1\n" * 20,
                   "latin1.txt": "caf\xe9 cr\xe8me\n".encode("latin-1"),
                   "big.txt": big}},
    ]}
    path = build_repository(history, tmp_path / "r")
    src = GitSource(path)
    (pr,) = list(src.pull_requests(src.list_pr_commits()))
    files = {f.path: f for f in pr.files}
    assert files["new_name.py"].status == "renamed"
    assert files["new_name.py"].old_path == "old_name.py"
    assert files["latin1.txt"].undecodable and "\ufffd" in files["latin1.txt"].patch
    assert files["big.txt"].additions == 12000
    assert files["big.txt"].patch_truncated and files["big.txt"].patch_bytes > 1_000_000
    assert len(files["big.txt"].patch.encode()) <= 1 << 20


def test_parse_log_patches_handles_quoted_paths():
    stream = [
        b"\x00\x00synth-commit\x00" + b"a" * 40 + b"\n", b"\n",
        b'diff --git "a/sp ace/\\303\\251.py" "b/sp ace/\\303\\251.py"\n',
        b"index 1..2 100644\n", b'--- "a/sp ace/\\303\\251.py"\n', b'+++ "b/sp ace/\\303\\251.py"\n',
        b"@@ -1 +1,2 @@\n", b"-old\n", b"+new\n", b"+more\n",
    ]
    ((sha, files),) = list(parse_log_patches(iter(stream)))
    assert sha == "a" * 40
    assert files[0].path == "sp ace/é.py"
    assert (files[0].additions, files[0].deletions) == (2, 1)


def test_huge_binary_and_non_utf8_patches_get_reasons(tmp_path, cli):
    """A > 50 MB patch, a binary file and a non-UTF-8 file: classified, each with a reason."""
    line = "x = '" + "y" * 120 + "'\n"
    huge = line * (52_000_000 // len(line))
    history = {"repo": {"name": "o/big"}, "commits": [
        {"kind": "direct", "message": "init", "author": "A <a@b>", "date": "2024-01-01T00:00:00+00:00",
         "files": {"README.md": "x\n"}},
        {"kind": "squash", "pr": 1, "title": "Add generated table", "author": "A <a@b>",
         "date": "2024-01-02T00:00:00+00:00", "files": {"src/table.py": huge, "src/use.py": "import table\n" * 30}},
        {"kind": "squash", "pr": 2, "title": "Add logo", "author": "A <a@b>",
         "date": "2024-01-03T00:00:00+00:00", "files": {"assets/logo.png": bytes(range(256)) * 64}},
        {"kind": "squash", "pr": 3, "title": "Latin-1 strings", "author": "A <a@b>",
         "date": "2024-01-04T00:00:00+00:00",
         "files": {"src/names.py": ("NAMES = ['caf\xe9']\n" * 40).encode("latin-1"),
                   "src/more.py": ("OTHER = ['cr\xe8me']\n" * 40).encode("latin-1")}},
    ]}
    path = build_repository(history, tmp_path / "big")
    db = tmp_path / "q.duckdb"
    r = cli("run", "--git", path, "--no-rewrite", "--db", db)
    assert r.code == 0, r
    import duckdb
    con = duckdb.connect(str(db), read_only=True)
    rows = dict(con.execute("SELECT number, reasons FROM candidates").fetchall())
    size = con.execute("SELECT patch_bytes, patch_truncated, length(patch) FROM pr_files "
                       "WHERE path = 'src/table.py'").fetchone()
    con.close()
    assert "too_large" in rows[1] and "patch_truncated" in rows[1]
    assert size[0] > 50_000_000 and size[1] and size[2] <= 1 << 20
    assert "assets_only" in rows[2] and "binary_files" in rows[2]
    assert "non_utf8_patch" in rows[3]


def test_a_stream_stopped_early_ends_git_and_its_reader(history_100, monkeypatch):
    import threading
    path, _ = history_100
    started = []
    real_popen = subprocess.Popen

    def popen(*a, **kw):
        started.append(real_popen(*a, **kw))
        return started[-1]

    monkeypatch.setattr(subprocess, "Popen", popen)
    src = GitSource(path)
    stream = src.pull_requests(src.list_pr_commits())
    first = next(stream)
    assert first.files
    stream.close()  # a run told to stop, say
    (git_log,) = [p for p in started if "--no-walk=unsorted" in p.args]
    assert git_log.poll() is not None  # killed and reaped, not left writing to a full pipe
    assert not [t for t in threading.enumerate() if t.name == "synth-git-reader"]


def test_the_pipeline_source_gives_merge_prs_their_branch_authors(history_100):
    from synth.sources.git import GitRepoSource
    path, _ = history_100
    source = GitRepoSource(path)
    got = {pr.number: pr.author for sb in source.batches(source.git.repo, set(), 7, 0)
           for pr in sb.prs}
    want = {c.number: c.author for c in GitSource(path).list_pr_commits()}
    assert got == want and len(got) == 100
    assert all(a.startswith("Dev") for n, a in got.items()
               if n in {c.number for c in GitSource(path).list_pr_commits() if c.style == "merge"})


def _c(kind, pr, title, date, **kw):
    return {"kind": kind, "pr": pr, "title": title, "author": "Ann <ann@example.com>",
            "date": f"2024-03-{date:02d}T10:00:00+00:00", **kw}


def test_prs_on_every_branch_each_taken_at_its_own_merge(tmp_path):
    """A maintenance branch with its own PRs merged forward into main, and a PR merged only
    into a side branch: every PR is found once, at its own merge (diff against the merge's
    first parent), not at the forward merge that carries it."""
    history = {"repo": {"name": "acme/widgets"}, "commits": [
        {"kind": "direct", "message": "init", "author": "Ann <ann@example.com>",
         "date": "2024-03-01T09:00:00+00:00", "files": {"src/core.py": "x = 1\n"}},
        _c("merge", 1, "Core feature", 2, files={"src/a.py": "a = 1\n"}),
        _c("merge", 2, "Fix on stable", 3, on="stable", files={"src/fix.py": "f = 1\n"}),
        _c("squash", 3, "Second fix on stable", 4, on="stable", files={"src/fix2.py": "g = 2\n"}),
        _c("merge", 4, "Main work", 5, files={"src/b.py": "b = 1\n"}),
        _c("merge_branch", 5, "Merge stable into main", 6, source="stable", into="main"),
        _c("merge", 6, "Experiment", 7, on="feature-x", files={"src/exp.py": "e = 1\n"}),
    ]}
    path = build_repository(history, tmp_path / "r")
    src = GitSource(path)
    commits = {c.number: c for c in src.list_pr_commits()}
    assert sorted(commits) == [1, 2, 3, 4, 5, 6]
    prs = {pr.number: pr for pr in src.pull_requests(commits.values())}
    assert [f.path for f in prs[2].files] == ["src/fix.py"]  # its own merge, not #5's
    assert [f.path for f in prs[3].files] == ["src/fix2.py"]
    assert [f.path for f in prs[6].files] == ["src/exp.py"]  # on a branch main never merged
    assert {f.path for f in prs[5].files} == {"src/fix.py", "src/fix2.py"}  # the forward merge
    # --ref narrows to one ref: main's history has the forward merge but not the side branch
    main_only = {c.number for c in GitSource(path, ref="main").list_pr_commits()}
    assert main_only == {1, 2, 3, 4, 5}


def test_a_remote_only_branch_is_read_too(tmp_path):
    """A non-bare clone keeps other branches as remote-tracking refs."""
    history = {"repo": {"name": "acme/widgets"}, "commits": [
        {"kind": "direct", "message": "init", "author": "Ann <ann@example.com>",
         "date": "2024-03-01T09:00:00+00:00", "files": {"src/core.py": "x = 1\n"}},
        _c("merge", 1, "On main", 2, files={"src/a.py": "a = 1\n"}),
        _c("merge", 2, "On release", 3, on="release-1.x", files={"src/r.py": "r = 1\n"}),
    ]}
    origin = build_repository(history, tmp_path / "origin")
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", str(origin), str(clone)], check=True)
    src = GitSource(clone, repo_name="acme/widgets")
    assert sorted(c.number for c in src.list_pr_commits()) == [1, 2]


def test_a_commit_git_cannot_read_is_a_recorded_skip_and_the_rest_are_read(tmp_path, cli):
    """Objects missing from a clone (a partial clone, a damaged pack): git stops in the middle
    of its patch stream. The PR it stopped at is recorded as a failure (not stored as an empty
    change), git starts again after it, every other PR is read whole; once the objects are
    back, the next run reads the skipped PRs and closes their failures."""
    import duckdb
    body = "\n".join(f"def step_{i}(x):\n    return x * {i} + {i * 7}\n" for i in range(12))
    history = {"repo": {"name": "acme/widgets"}, "commits": [
        {"kind": "direct", "message": "init", "author": "Ann <ann@example.com>",
         "date": "2024-03-01T09:00:00+00:00", "files": {"src/core.py": "x = 1\n"}},
        *[_c("squash", n, f"Feature {n}", n + 1, files={f"src/f{n}.py": body + f"\nN = {n}\n"})
          for n in (1, 2, 4, 6)],
        _c("squash", 3, "Feature 3", 4, files={"src/lost.py": body + "\nLOST = 3\n"}),
        _c("squash", 5, "Feature 5", 6, files={"pkg/deep.py": body + "\nDEEP = 5\n"}),
    ]}
    path = build_repository(history, tmp_path / "r")
    git_dir = GitSource(path).git_dir

    def rev(spec: str) -> str:
        return subprocess.run(["git", "--git-dir", str(git_dir), "rev-parse", spec],
                              capture_output=True, text=True, check=True).stdout.strip()

    commits = {c.number: c.sha for c in GitSource(path).list_pr_commits()}
    # a blob (git fails while writing #3's patch) and a tree (git fails before #5's header)
    lost = {oid: git_dir / "objects" / oid[:2] / oid[2:]
            for oid in (rev(f"{commits[3]}:src/lost.py"), rev(f"{commits[5]}:pkg"))}
    assert all(p.exists() for p in lost.values())  # loose objects, as a fresh history has them
    kept = {oid: p.read_bytes() for oid, p in lost.items()}
    for p in lost.values():
        p.unlink()

    db = tmp_path / "q.duckdb"
    r = cli("run", "--git", path, "--no-rewrite", "--db", db)
    assert r.code == 3, r  # partial: two PRs skipped, recorded
    con = duckdb.connect(str(db), read_only=True)
    decided = dict(con.execute("SELECT number, reasons FROM candidates").fetchall())
    failures = con.execute("SELECT number, reason, message, resolved FROM failures "
                           "WHERE stage = 'source' ORDER BY number").fetchall()
    files = dict(con.execute("SELECT number, count(*) FROM pr_files GROUP BY 1").fetchall())
    con.close()
    assert sorted(decided) == [1, 2, 4, 6]  # read whole, none as an empty change
    assert all(files[n] == 1 and "empty_change" not in decided[n] for n in decided)
    assert [(n, reason, resolved) for n, reason, _, resolved in failures] == [
        (3, "unreadable_diff", False), (5, "unreadable_diff", False)]
    assert all("git cannot read the diff" in m and "unable to read" in m for _, _, m, _ in failures)

    for oid, p in lost.items():  # the objects are back (fetched again)
        p.parent.mkdir(exist_ok=True)
        p.write_bytes(kept[oid])
    r = cli("run", "--git", path, "--no-rewrite", "--db", db)
    assert r.code == 0, r
    con = duckdb.connect(str(db), read_only=True)
    assert sorted(n for (n,) in con.execute("SELECT number FROM candidates").fetchall()) == \
        [1, 2, 3, 4, 5, 6]
    assert con.execute("SELECT count(*) FROM failures WHERE NOT resolved").fetchone() == (0,)
    con.close()


def test_a_clone_whose_diffs_all_fail_stops_with_a_hint(tmp_path):
    """Ten commits in a row that git cannot read: not ten skips and on, but an error that
    says what is likely wrong."""
    from synth.sources.git import MAX_UNREADABLE
    history = {"repo": {"name": "acme/widgets"}, "commits": [
        {"kind": "direct", "message": "init", "author": "Ann <ann@example.com>",
         "date": "2024-03-01T09:00:00+00:00", "files": {"src/core.py": "x = 1\n"}},
        *[_c("squash", n, f"Feature {n}", n + 1, files={f"src/f{n}.py": f"N = {n}\n"})
          for n in range(1, MAX_UNREADABLE + 3)],
    ]}
    path = build_repository(history, tmp_path / "r")
    src = GitSource(path)
    commits = src.list_pr_commits()
    for c in commits:  # every PR's new blob gone
        oid = subprocess.run(["git", "--git-dir", str(src.git_dir), "rev-parse",
                              f"{c.sha}:src/f{c.number}.py"], capture_output=True, text=True,
                             check=True).stdout.strip()
        (src.git_dir / "objects" / oid[:2] / oid[2:]).unlink()
    skipped: list = []
    with pytest.raises(SourceError, match="commits in a row.*partial or shallow"):
        list(src.pull_requests(commits, unreadable=skipped))
    assert len(skipped) == MAX_UNREADABLE - 1
    with pytest.raises(SourceError, match="git cannot read the diff"):  # no list: no skipping
        list(src.pull_requests(commits))


def test_git_killed_mid_stream_fails_the_source_without_empty_prs(history_100, monkeypatch):
    """git killed by a signal (the OOM killer, say) is no commit's fault: the source fails
    (the run records it and the next run reads the rest), and no commit after the kill is
    handed over as an empty change. Here git's output is cut after 20,000 bytes and its
    process killed (SIGKILL), every time."""
    path, _ = history_100
    real_popen = subprocess.Popen

    def popen(args, *a, **kw):
        if "--no-walk=unsorted" in args:  # the patch stream: cut, then killed
            args = ["bash", "-c", 'git "$@" | head -c 20000; kill -KILL $$', "git", *args[1:]]
        return real_popen(args, *a, **kw)

    monkeypatch.setattr(subprocess, "Popen", popen)
    src = GitSource(path)
    commits = src.list_pr_commits()
    got = []
    with pytest.raises(SourceError, match="killed .signal 9."):
        for pr in src.pull_requests(commits, unreadable=[]):
            got.append(pr)
    assert got and len(got) < len(commits) and all(pr.files for pr in got)


def test_a_history_that_hides_its_prs_says_so_on_the_first_crawl(tmp_path, cli, monkeypatch):
    """gohugoio/hugo rebase-merges: 81 of its 10,065 commits name a PR, and a --git crawl
    found 81 PRs without a word. A first crawl that finds fewer PRs than 5 % of the commits
    (in a history of at least 500; 30 here) now says why and what to do instead."""
    import synth.sources.git as gitsource
    monkeypatch.setattr(gitsource, "FEW_PRS_MIN_COMMITS", 30)
    commits = [{"kind": "direct", "message": f"hugolib: change {i}", "author": "A <a@b>",
                "date": f"2024-01-01T00:{i:02d}:00+00:00", "files": {f"f{i}.go": f"package x // {i}\n"}}
               for i in range(40)]
    commits.append({"kind": "squash", "pr": 7, "title": "Add a thing", "author": "A <a@b>",
                    "date": "2024-01-02T00:00:00+00:00", "files": {"x.go": "package x\n"}})
    path = build_repository({"repo": {"name": "o/rebased"}, "commits": commits}, tmp_path / "r")
    db = tmp_path / "q.duckdb"
    r = cli("run", "--git", path, "--no-rewrite", "--db", db)
    assert r.code == 0, r
    assert "only 1 of its 41 commits name a PR" in r.err and "--github" in r.err
    r = cli("run", "--git", path, "--no-rewrite", "--db", db)  # said once, not every night
    assert r.code == 0 and "name a PR" not in r.err
