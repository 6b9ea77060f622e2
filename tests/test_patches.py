"""Reference changes (patches.py): whole git diffs rebuilt from hunks, split into patch and
test_patch, that git applies at the base commit; tests_added; what cannot be applied.

Every check applies the rebuilt diffs with git itself, in a temporary index read from the
PR's base commit, and compares the tree it gives with the merge commit's tree."""

from __future__ import annotations

import os
import subprocess

import pytest
from dbutil import q
from rulesets import LOOSE_SUBSTANCE
from standins.github_fixtures import PR, File, Fixtures, Repo
from standins.github_server import GitHubStandIn

from synth import patches
from synth.filtering import load_rules
from synth.models import FileChange, PullRequest
from synth.patches import file_diff, reference, stage
from synth.sources.git import GitSource
from synth.sources.history import build_repository

RULES = load_rules()


def is_test(path: str) -> bool:
    return RULES.classify(path) == "tests"


def body(name: str, n: int, salt: str = "") -> str:
    """A Python module with ``n`` distinct lines of logic."""
    lines = [f'"""{name}."""', "", "", f"def {name}(values, limit=10):", "    total = 0"]
    for i in range(n):
        lines.append(f"    total += values[{i}] * {i + 3}{salt} if len(values) > {i} else {i}")
    lines += ["    return min(total, limit)", ""]
    return "\n".join(lines)


APP = body("compute", 4)
TEST = ("from src.app import compute\n\n\nclass TestCompute:\n    def test_small(self):\n"
        "        assert compute([1]) == 3\n\n\ndef test_empty():\n    assert compute([]) == 0\n")


def history() -> dict:
    t = "2024-03-0{}T10:00:00+00:00"
    return {"repo": {"name": "acme/widgets"}, "commits": [
        {"kind": "direct", "message": "init", "author": "Ann <ann@x>", "date": t.format(1),
         "files": {"src/app.py": APP, "src/old.py": body("old", 6), "src/keep.py": body("keep", 3),
                   "src/gone.py": "GONE = {'a': 1, 'b': 2}\nNAMES = sorted(GONE)\n", "tests/test_app.py": TEST,
                   "dir with space/a b.py": body("spaced", 2), "bin/run.sh": "#!/bin/sh\necho hi\n"}},
        {"kind": "merge", "pr": 1, "title": "Compute with weights", "author": "Bob <bob@x>",
         "date": t.format(2), "delete": ["src/gone.py", "src/old.py", "src/keep.py"],
         "files": {"src/app.py": body("compute", 16, " + 1"), "src/new.py": body("fresh", 5),
                   "src/renamed.py": body("old", 6).replace("limit=10", "limit=20"),
                   "src/kept.py": body("keep", 3), "src/ünï.py": body("uni", 2),
                   "dir with space/a b.py": body("spaced", 3),
                   "tests/test_app.py": TEST.replace("== 3", "== 4") +
                   "\n\ndef test_weights():\n    assert compute([1, 2]) == 11\n"}},
        {"kind": "squash", "pr": 2, "title": "Executable runner and a logo", "author": "Cat <c@x>",
         "date": t.format(3), "executable": ["bin/run.sh"],
         "files": {"assets/logo.png": bytes(range(256)) * 4,
                   "src/app.py": body("compute", 16, " + 2")}},
    ]}


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    path = build_repository(history(), tmp_path_factory.mktemp("patches") / "widgets")
    src = GitSource(path)
    prs = {pr.number: pr for pr in src.pull_requests(src.list_pr_commits())}
    return path, prs


def git(path, *args, env=None, input=None) -> subprocess.CompletedProcess:
    return subprocess.run(["git", "-C", str(path), *args], capture_output=True, env=env,
                          input=input.encode() if input is not None else None)


def tree_after(path, base: str, *patches: str, index) -> str:
    """Apply ``patches`` with git in an index read from ``base``; the tree it gives."""
    env = {**os.environ, "GIT_INDEX_FILE": str(index)}
    assert git(path, "read-tree", base, env=env).returncode == 0
    for p in patches:
        if p:
            r = git(path, "apply", "--cached", "-", env=env, input=p)
            assert r.returncode == 0, r.stderr.decode()
    return git(path, "write-tree", env=env).stdout.decode().strip()


def tree_of(path, commit: str) -> str:
    return git(path, "rev-parse", f"{commit}^{{tree}}").stdout.decode().strip()


def test_git_sourced_change_rebuilt_applies_to_the_merge_tree(repo, tmp_path):
    path, prs = repo
    pr = prs[1]
    statuses = {f.path: f.status for f in pr.files}
    assert statuses["src/renamed.py"] == "renamed" and statuses["src/kept.py"] == "renamed"
    assert statuses["src/gone.py"] == "deleted" and statuses["src/new.py"] == "added"
    s = stage(pr, is_test)
    assert s.applicable and not s.issues
    assert "tests/test_app.py" not in s.patch and "diff --git a/tests/test_app.py" in s.test_patch
    assert "rename from src/keep.py" in s.patch and '"a/src/\\303' not in s.patch  # UTF-8 kept
    assert "--- a/dir with space/a b.py\t" in s.patch  # as git writes a name with a space
    for p in (s.patch, s.test_patch):
        r = git(path, "apply", "--check", "-", input=p)  # in the work tree at HEAD: no
        assert r.returncode != 0
    assert tree_after(path, pr.base_sha, s.patch, s.test_patch, index=tmp_path / "i") == \
        tree_of(path, pr.merge_sha)
    assert set(s.tests_added) == {"tests/test_app.py::TestCompute::test_small",
                                  "tests/test_app.py::test_weights"}


def test_mode_changes_are_rebuilt_and_binary_files_make_a_change_unappliable(repo, tmp_path):
    path, prs = repo
    pr = prs[2]
    run = next(f for f in pr.files if f.path == "bin/run.sh")
    assert (run.old_mode, run.new_mode) == ("100644", "100755")
    assert file_diff(run) == ("diff --git a/bin/run.sh b/bin/run.sh\nold mode 100644\n"
                              "new mode 100755\n")
    s = stage(pr, is_test)
    assert not s.applicable and s.issues == ("binary_files",)
    # what can be rebuilt still applies (the logo is left out and said so)
    env = {**os.environ, "GIT_INDEX_FILE": str(tmp_path / "i")}
    tree_after(path, pr.base_sha, s.patch, index=tmp_path / "i")
    mode = git(path, "ls-files", "-s", "bin/run.sh", env=env).stdout.decode().split()[0]
    assert mode == "100755"


def test_truncated_missing_and_undecodable_patches_are_not_applicable():
    base = dict(repo="o/r", title="t", body="", author="a", merged_at=None, base_sha="b" * 40,
                merge_sha="m" * 40, url="u")
    for f, issue in ((FileChange("a.py", "modified", 3, 1, "@@ -1 +1 @@\n-a\n+b\n",
                                 patch_truncated=True), "patch_truncated"),
                     (FileChange("a.py", "modified", 3, 1, None), "patches_missing"),
                     (FileChange("a.py", "modified", 1, 1, "@@ -1 +1 @@\n-\ufffd\n+b\n",
                                 undecodable=True), "non_utf8_patch")):
        ref = reference([PullRequest(number=1, files=(f,), **base)], is_test)
        assert not ref.applicable and ref.issues == (issue,)


def loose(folder) -> None:
    """synth.toml in the folder synth runs in: rules that keep any PR with code."""
    from synth.filtering import default_rules_path
    (folder / "loose.toml").write_text(LOOSE_SUBSTANCE)
    (folder / "synth.toml").write_text(f'[filters]\nfiles = ["{default_rules_path()}", '
                                       f'"{folder / "loose.toml"}"]\n')


def hunks_only(path, base: str, merge: str, name: str, old: str | None = None) -> str | None:
    """One file's patch as GitHub's REST API gives it: hunks, no header, no last newline."""
    spec = [f"{old}", name] if old else [name]
    out = git(path, "diff", "-M", "--no-color", base, merge, "--", *spec).stdout.decode()
    at = out.find("\n@@")
    return out[at + 1:].rstrip("\n") if at >= 0 else None


def test_github_sourced_patches_are_rebuilt_and_applied_by_git(repo, cli, db, tmp_path,
                                                               monkeypatch):
    """PR 1 served by the GitHub stand-in (REST patches without headers), crawled and
    rewritten by synth; the task's patch and test_patch give the merge commit's tree."""
    path, prs = repo
    pr = prs[1]
    kinds = {"added": "ADDED", "modified": "MODIFIED", "deleted": "DELETED", "renamed": "RENAMED"}
    files = [File(f.path, f.additions, f.deletions, kinds[f.status], previous_path=f.old_path,
                  patch=hunks_only(path, pr.base_sha, pr.merge_sha, f.path, f.old_path))
             for f in pr.files]
    fx = Fixtures(repos=[Repo("acme", "widgets", stars=20_000, prs=[PR(
        1, "Compute with weights", body="Weights for compute.", author="bob", files=files,
        base_oid=pr.base_sha, head_oid=pr.head_sha, merge_commit_oid=pr.merge_sha,
        head_ref="weights")])])
    monkeypatch.setenv("GITHUB_TOKENS", "tok")
    loose(tmp_path)
    with GitHubStandIn(fx, tokens={"tok": 5000}) as gh:
        monkeypatch.setenv("GITHUB_API_URL", gh.url)
        r = cli("run", "--github", "--repos", "acme/widgets", "--db", db)
    assert r.code == 0, r
    (patch, test_patch, applicable, base, head_ref), = q(
        db, "SELECT t.patch, t.test_patch, t.applicable, p.base_sha, p.head_ref FROM tasks t "
            "JOIN pull_requests p USING (repo, number)")
    assert applicable and base == pr.base_sha and head_ref == "weights"
    assert "new file mode 100644" in patch and "deleted file mode 100644" in patch
    assert "rename from src/keep.py\nrename to src/kept.py\n" in patch
    assert tree_after(path, base, patch, test_patch, index=tmp_path / "i") == \
        tree_of(path, pr.merge_sha)


def test_tests_added_by_language():
    py = ("@@ -10,6 +10,12 @@ class TestApp:\n     def test_a(self):\n-        x = 1\n+        x = 2\n"
          " \n+    def test_new(self):\n+        assert True\n+\n+\n+def test_top():\n+    pass\n"
          "@@ -40,3 +48,2 @@ def test_other():\n-    y = 1\n+    y = 2\n"
          "@@ -60,4 +70,2 @@ class TestB:\n-    def test_gone(self):\n-        body = 1\n"
          "     def test_keep(self):\n         z = 1\n")
    assert patches.tests_added("tests/test_x.py", py) == [
        "tests/test_x.py::TestApp::test_a", "tests/test_x.py::TestApp::test_new",
        "tests/test_x.py::test_top", "tests/test_x.py::test_other"]
    go = ("@@ -1,5 +1,9 @@ func TestA(t *testing.T) {\n \ta := 1\n-\tb := 2\n+\tb := 3\n }\n+\n"
          "+func TestNew(t *testing.T) {\n+\tx := 1\n+}\n")
    assert patches.tests_added("pkg/a_test.go", go) == ["pkg/a_test.go::TestA", "pkg/a_test.go::TestNew"]
    js = "@@ -1 +1,3 @@\n describe('x', () => {\n+  it('does a thing', () => {\n+  test(\"other\", f)\n"
    assert patches.tests_added("a.test.ts", js) == ["a.test.ts::does a thing", "a.test.ts::other"]
    assert patches.tests_added("README.md", py) == []


def test_a_scrub_memo_gives_what_scrub_gives_and_scrubs_a_line_once():
    """The rewrite workers scrub patch lines through a ScrubMemo (a run meets the same lines
    again and again): the same result as guards.scrub, every line scrubbed once, and the
    memory bounded."""
    from synth.rewrite.guards import scrub
    lines = ["x = 1", "password = 'hunter2!'", "token: ghp_" + "a1B2" * 9, "x = 1",
             "ftp://user:pass@host/x", "password = 'hunter2!'"]
    calls: list[str] = []
    memo = patches.ScrubMemo(limit=3)
    import synth.rewrite.guards as guards
    real = guards.scrub
    guards.scrub = lambda s: calls.append(s) or real(s)
    try:
        assert [memo(ln) for ln in lines] == [scrub(ln) for ln in lines]
    finally:
        guards.scrub = real
    assert "hunter2" not in memo("password = 'hunter2!'")
    assert len(calls) == 4 + 1  # four distinct lines; the fourth filled the memo, which forgot
    assert len(memo._seen) <= 3
    diff = ("diff --git a/c.py b/c.py\n--- a/c.py\n+++ b/c.py\n@@ -1,2 +1,2 @@\n x = 1\n"
            "-password = 'old-secret9'\n+password = 'hunter2!'\n")
    assert patches.redact(diff, memo) == patches.redact(diff)
