"""Pure filtering: reason codes for kept and dropped PRs, rule loading errors."""

from __future__ import annotations

from datetime import datetime

import pytest

from synth.errors import ConfigError
from synth.filtering import analyze, compile_rules, decide, load_rules
from synth.models import FileChange, PullRequest


def fc(path, added=0, removed=0, status="modified", code=True, **kw):
    if "patch" not in kw:
        body = [f"+    value_{i} = compute({i})" if code else f"+# note {i}" for i in range(added)]
        body += [f"-    old_{i} = compute({i})" for i in range(removed)]
        kw["patch"] = "@@ -1 +1 @@\n" + "\n".join(body) + "\n"
        kw["patch_bytes"] = len(kw["patch"])
    return FileChange(path=path, status=status, additions=added, deletions=removed, **kw)


def pr(*files, title="Add a feature", author="dev", labels=(), bot=False):
    return PullRequest(repo="o/r", number=1, title=title, body="", author=author,
                       merged_at=datetime(2024, 1, 1), base_sha="a" * 40, merge_sha="b" * 40,
                       url="u", labels=tuple(labels), files=tuple(files), author_is_bot=bot)


@pytest.fixture(scope="module")
def rules():
    return load_rules()


def test_substantive_feature_is_kept_with_reasons(rules):
    d = decide(pr(fc("src/a.py", 30, 5), fc("src/b.py", 20), fc("tests/test_a.py", 15)), rules)
    assert d.kept and d.reasons[0] == "substantive" and "has_tests" in d.reasons
    assert d.metrics["code_lines"] == 55 and d.filter_version == rules.version


@pytest.mark.parametrize("files,code", [
    ((fc("README.md", 50), fc("docs/guide.rst", 80)), "docs_only"),
    ((fc("tests/test_a.py", 90),), "tests_only"),
    ((fc(".github/workflows/ci.yml", 3, 1),), "ci_only"),
    ((fc("package-lock.json", 900, 800),), "lockfile_only"),
    ((fc("loguru/__init__.pyi", 400), fc("loguru/py.typed", 0)), "stubs_only"),
    ((fc("README.md", 5), fc(".github/workflows/ci.yml", 2)), "no_code"),
    ((fc("src/a.py", 2, 1), fc("src/b.py", 1)), "too_small"),
    ((fc("src/a.py", 3, 2), fc("tests/test_a.py", 40)), "too_small"),  # tests don't make it
    ((fc("src/a.py", 1, 60),), "removal"),  # mostly deletion
    ((fc("src/a.py", 2500, 900), fc("src/b.py", 10)), "too_large"),
])
def test_trivial_shapes(rules, files, code):
    d = decide(pr(*files), rules)
    assert not d.kept and code in d.reasons


@pytest.mark.parametrize("kw,code", [
    ({"author": "dependabot[bot]"}, "bot_author"),
    ({"author": "renovate-bot", "bot": True}, "bot_author"),
    ({"title": "Release 2.0.0"}, "release"),
    ({"title": "Bump requests from 2.31.0 to 2.32.0"}, "version_bump"),
    ({"title": 'Revert "Add a feature"'}, "revert"),
    ({"title": "Fix typo in error message"}, "typo"),
    ({"labels": ["dependencies"]}, "version_bump"),
])
def test_metadata_rules(rules, kw, code):
    d = decide(pr(fc("src/a.py", 40), fc("src/b.py", 40), **kw), rules)
    assert not d.kept and code in d.reasons


def test_binary_huge_and_non_utf8_are_classified_not_crashing(rules):
    binary = FileChange("assets/logo.png", "added", 0, 0, None, binary=True)
    d = decide(pr(binary), rules)
    assert not d.kept and "assets_only" in d.reasons and "binary_files" in d.reasons
    huge = FileChange("src/data.py", "added", 900_000, 0, "@@\n+x\n", patch_bytes=60_000_000,
                      patch_truncated=True)
    d = decide(pr(huge, fc("src/b.py", 30)), rules)
    assert not d.kept and "too_large" in d.reasons and "patch_truncated" in d.reasons
    odd = fc("src/a.py", 40, patch="@@ -1 +1 @@\n" + "+caf\ufffd = 1\n" * 40, undecodable=True)
    d = decide(pr(odd, fc("src/b.py", 30)), rules)
    assert "non_utf8_patch" in d.reasons


def test_metadata_only_prs_use_line_totals(rules):
    f = [FileChange("src/a.py", "modified", 50, 10), FileChange("src/b.py", "modified", 30, 0)]
    d = decide(pr(*f), rules)
    assert d.kept and "patches_missing" in d.reasons


def test_rule_version_changes_with_rules():
    a = compile_rules({"substance": {"min_logic_lines": 10}})
    b = compile_rules({"substance": {"min_logic_lines": 11}})
    assert a.version != b.version


def branching(path, n):
    """n lines of logic, one of them a new branch."""
    body = ["+    if value is None:"] + [f"+        value_{i} = compute({i})" for i in range(n - 1)]
    return fc(path, n, patch="@@ -1 +1 @@\n" + "\n".join(body) + "\n")


def test_a_small_change_with_its_own_tests_needs_less_logic(rules):
    d = decide(pr(branching("src/a.py", 6), fc("tests/test_a.py", 12)), rules)
    assert d.kept  # 6 lines of logic, a new branch and a regression test
    d = decide(pr(branching("src/a.py", 6)), rules)
    assert not d.kept and "too_small" in d.reasons


def test_a_small_change_that_opens_no_branch_needs_more_logic(rules):
    # 8 assignments with their tests: a declaration, not a multi-step task
    d = decide(pr(fc("src/a.py", 8), fc("tests/test_a.py", 12)), rules)
    assert not d.kept and "too_small" in d.reasons and d.metrics["logic_branches"] == 0
    d = decide(pr(branching("src/a.py", 8), fc("tests/test_a.py", 12)), rules)
    assert d.kept and d.metrics["logic_branches"] == 1
    assert decide(pr(fc("src/a.py", 11)), rules).kept  # enough logic without a branch


def test_a_change_that_deletes_far_more_logic_than_it_adds_is_a_removal(rules):
    # 12 lines of logic deleted, one added beside 4 imports: fewer than 3x as many code
    # lines deleted as added (12 vs 5), but 12x as much logic
    body = [f"+import mod_{i}" for i in range(4)] + ["+    return fallback(value)"]
    body += [f"-    if value_{i} > {i}:\n-        total_{i} = compute({i}) * {i}"
             for i in range(6)]
    patch = "@@ -1,12 +1,5 @@\n" + "\n".join(body) + "\n"
    d = decide(pr(fc("src/a.py", 5, 12, patch=patch, patch_bytes=len(patch))), rules)
    m = d.metrics
    assert (m["code_added"], m["code_deleted"], m["logic_added"]) == (5, 12, 1)
    assert not d.kept and "removal" in d.reasons, d.reasons
    _, verdicts = analyze(pr(fc("src/a.py", 5, 12, patch=patch, patch_bytes=len(patch))), rules)
    removal = next(v for v in verdicts if v.rule == "substance.removal")
    assert "12 lines of logic deleted, 1 added" in removal.detail


@pytest.mark.parametrize("path,cls", [
    ("GNUmakefile", "build"), ("build/rules.mk", "build"), ("test_helpers.go", "tests"),
    ("internal/testutil/server.go", "tests"), ("router.go", "code"), ("ext/logo.ai", "assets"),
    ("testdata/render.golden", "tests"), ("NOTICE", "docs"), (".coveragerc", "ci"),
    ("docs_src/tutorial/app_py310.py", "docs"), ("requirements/dev.in", "lockfile"),
    ("requirements/docs.txt", "lockfile"), ("requirements-dev.in", "lockfile"),
    ("tqdm/tests/tests_tqdm.py", "tests"), ("src/pkg/tests/helpers.go", "tests"),
    ("tests_version.py", "tests"), ("hooks/test/test.go", "code"),
    # smart case: a pattern with capitals matches only capitals, a lower-case one any case
    ("cobra/cmd/license_mit.go", "code"), ("django/middleware/security.py", "code"),
    ("LICENSE-MIT", "docs"), ("LICENSE", "docs"), ("license", "docs"), ("LICENCE", "docs"),
    ("README.MD", "docs"), ("SECURITY.md", "docs"), ("debian/changelog", "docs"),
    ("recipe/vendor/golang.org/x/net/context.go", "vendored"),
    ("Godeps/_workspace/src/github.com/stretchr/objx/map.go", "vendored"),
    ("cmd/kitgen/testdata/foo/service.go", "tests"), ("v2/examples/greet/main.go", "docs"),
    # type stubs; a virtualenv committed by mistake (scrapy's tutorial-env/)
    ("loguru/__init__.pyi", "stubs"), ("loguru/py.typed", "stubs"), ("CITATION.cff", "docs"),
    ("tests/data/cases/stub.pyi", "tests"),
    ("tutorial-env/lib/python3.9/site-packages/jedi/api.py", "vendored")])
def test_file_classes(rules, path, cls):
    assert rules.classify(path) == cls


@pytest.mark.parametrize("title,code", [
    ("Format whole codebase with gofumpt and enforce it in CI", "lint_only"),
    ("Merging from v1", "branch_merge"), ("Merge Stable into Main", "branch_merge"),
    ("Merging #489 (plus hack)", None), ("Merging mostynb report source of parse errors", None),
    ("Format error messages with the flag name", None),
    ("[Release] v0.28.1", "release")])  # axios's release PRs
def test_title_rules(rules, title, code):
    d = decide(pr(branching("src/a.py", 30), title=title), rules)
    assert (code in d.reasons) if code else d.kept, d.reasons


def test_worth_patches_is_the_metadata_prefilter(rules):
    from synth.filtering import worth_patches
    meta = lambda *f, **kw: pr(*(FileChange(p, "modified", a, d) for p, a, d in f), **kw)  # noqa: E731
    assert worth_patches(meta(("src/a.py", 40, 2)), rules)
    assert not worth_patches(meta(("docs/a.md", 40, 2)), rules)
    assert not worth_patches(meta(("src/a.py", 40, 2), title="Bump x from 1.0 to 2.0"), rules)
    assert not worth_patches(meta(("src/a.py", 40, 2), author="dependabot[bot]"), rules)
    assert not worth_patches(meta(("src/a.py", 4000, 2)), rules)


@pytest.mark.parametrize("raw,msg", [
    ({"size": {"min_lines": 3}}, "unknown key size.min_lines"),
    ({"substance": {"min_lines": 3}}, "unknown key substance.min_lines"),
    ({"substance": {"min_logic_lines": "ten"}}, "must be a number"),
    ({"size": {"max_files": "many"}}, "whole number"),
    ({"titles": {"nonsense": ["x"]}}, "not a known reason code"),
    ({"titles": {"typo": ["("]}}, "bad regular expression"),
    ({"classes": {"docs": "*.md"}}, "list of glob strings"),
])
def test_bad_rules_are_clear_errors(raw, msg):
    with pytest.raises(ConfigError, match=msg):
        compile_rules(raw)


def test_unknown_section_and_missing_file(tmp_path):
    bad = tmp_path / "r.toml"
    bad.write_text("[sizes]\nx = 1\n")
    with pytest.raises(ConfigError, match="unknown section"):
        load_rules([bad])
    with pytest.raises(ConfigError, match="not found"):
        load_rules([tmp_path / "none.toml"])
