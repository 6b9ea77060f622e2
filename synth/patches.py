"""Pure: a PR's reference change as execution-based datasets ship it.

    PullRequest.files ──► patch (non-test files) + test_patch (test files), whole git diffs
                          that `git apply` accepts at the PR's base commit
                      ──► tests_added: the tests the change adds or modifies
                      ──► applicable, or the issues that make it not (binary, truncated, ...)

Sources keep only the hunks of each file (GitHub's REST API has nothing else); the git
headers are rebuilt here from what a FileChange knows: status, old path, modes. Test files are
those the filter rules class as ``tests``. A chain's reference is its stages in order, each at
its own base, and their series as one patch for the first stage's base.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Iterable

from .models import FileChange, PullRequest, Reference, Stage, Task

DEFAULT_MODE = "100644"

# ---------------------------------------------------------------- one file as a git diff


def _quote(path: str) -> str:
    """A path as git writes it in a diff header: C-quoted when it holds a quote, a backslash
    or a control character (UTF-8 kept as is, as with core.quotePath=false)."""
    if not any(c in path for c in '"\\') and all(ord(c) >= 0x20 and ord(c) != 0x7f for c in path):
        return path
    out = []
    for c in path:
        if c in '"\\':
            out.append("\\" + c)
        elif c == "\t":
            out.append("\\t")
        elif c == "\n":
            out.append("\\n")
        elif ord(c) < 0x20 or ord(c) == 0x7f:
            out.append(f"\\{ord(c):03o}")
        else:
            out.append(c)
    return '"' + "".join(out) + '"'


def _name(prefix: str, path: str) -> str:
    return _quote(prefix + path)


def _line_name(prefix: str, path: str) -> str:
    """A name on a ---/+++ line: git adds a tab after a name with a space in it."""
    q = _name(prefix, path)
    return q + "\t" if " " in path and not q.startswith('"') else q


def file_diff(f: FileChange) -> str | None:
    """One file's change as a whole git diff (header, extended headers, hunks), or None when
    it cannot be rebuilt: a binary file, a patch cut short, a patch that was not UTF-8, or
    changed lines without patch text."""
    if f.binary or f.patch_truncated or f.undecodable:
        return None
    if f.patch is None and (f.additions or f.deletions):
        return None
    new = f.path
    old = f.old_path if f.status in ("renamed", "copied") and f.old_path else f.path
    lines = [f"diff --git {_name('a/', old)} {_name('b/', new)}"]
    if f.status == "added":
        lines.append(f"new file mode {f.new_mode or DEFAULT_MODE}")
    elif f.status == "deleted":
        lines.append(f"deleted file mode {f.old_mode or DEFAULT_MODE}")
    else:
        if f.old_mode and f.new_mode and f.old_mode != f.new_mode:
            lines += [f"old mode {f.old_mode}", f"new mode {f.new_mode}"]
        if old != new:
            verb = "copy" if f.status == "copied" else "rename"
            lines += [f"{verb} from {_quote(old)}", f"{verb} to {_quote(new)}"]
    text = "\n".join(lines) + "\n"
    hunks = f.patch or ""
    if hunks.strip():
        if not hunks.lstrip().startswith("@@"):
            return None  # not hunks (a source that kept something else)
        a = "/dev/null" if f.status == "added" else _line_name("a/", old)
        b = "/dev/null" if f.status == "deleted" else _line_name("b/", new)
        text += f"--- {a}\n+++ {b}\n" + hunks.lstrip("\n")
        if not text.endswith("\n"):
            text += "\n"
    elif f.status == "modified" and not (f.old_mode and f.new_mode and f.old_mode != f.new_mode):
        return ""  # nothing to apply (an empty change)
    return text


# ---------------------------------------------------------------- tests named in a patch

_PY_DEF = re.compile(r"^(\s*)(?:async\s+)?def\s+(test\w*)\s*\(")
_PY_CLASS = re.compile(r"^(\s*)class\s+(\w+)")
_GO_FUNC = re.compile(r"^func\s+(Test\w+)\s*\(")
_JS_TEST = re.compile(r"""^\s*(?:it|test)(?:\.only|\.skip)?\s*\(\s*(['"`])(.+?)\1""")
_RB_TEST = re.compile(r"""^\s*(?:it|test)\s+(['"])(.+?)\1""")
_JAVA_TEST = re.compile(r"^\s*(?:public\s+|protected\s+|private\s+)?void\s+(\w+)\s*\(")
_RUST_FN = re.compile(r"^\s*(?:pub\s+)?(?:async\s+)?fn\s+(\w+)\s*\(")
_HUNK = re.compile(r"^@@ -\d+(?:,\d+)? \+\d+(?:,\d+)? @@ ?(.*)$")


def _language(path: str) -> str | None:
    ext = path.rsplit(".", 1)[-1].lower() if "." in path else ""
    return {"py": "py", "go": "go", "js": "js", "jsx": "js", "mjs": "js", "cjs": "js",
            "ts": "js", "tsx": "js", "rb": "rb", "java": "java", "kt": "java",
            "rs": "rs"}.get(ext)


def tests_added(path: str, patch: str | None) -> list[str]:
    """The tests one test file's patch adds or modifies, as ``path::name`` (Python:
    ``path::Class::name`` for a method, as pytest names it): Python ``def test_*``, Go
    ``func Test*``, JS/TS ``it(...)``/``test(...)``, Ruby ``it "..."``, Java/Kotlin methods
    after ``@Test``, Rust functions after ``#[test]``. A test counts when the patch adds it
    or changes a line inside it; a test only removed does not."""
    lang = _language(path)
    if not patch or lang is None:
        return []
    found: dict[str, None] = {}
    scan = {"py": _scan_python, "go": _scan_go}.get(lang, _scan_marked)
    for hunk_ctx, lines in _hunks(patch):
        for name in scan(hunk_ctx, lines, lang):
            found[f"{path}::{name}"] = None
    return list(found)


def _hunks(patch: str) -> Iterable[tuple[str, list[str]]]:
    ctx, lines = None, []
    for line in patch.splitlines():
        m = _HUNK.match(line)
        if m:
            if ctx is not None:
                yield ctx, lines
            ctx, lines = m.group(1), []
        elif ctx is not None and line[:1] in (" ", "+", "-", ""):
            lines.append(line or " ")
    if ctx is not None:
        yield ctx, lines


def _indent(text: str) -> int:
    return len(text) - len(text.lstrip())


def _scan_python(ctx: str, lines: list[str], _lang: str) -> Iterable[str]:
    """The test in scope is (name, indent); a line on the new side indented no deeper than
    the test's ``def`` ends it. Classes are tracked the same way, for pytest's names. A
    removed ``def`` opens a nameless scope, so the body of a removed test counts for none."""
    classes: list[tuple[int, str]] = []
    current: tuple[str, int] | None = None
    m = _PY_DEF.match(ctx)
    if m:
        current = (m.group(2), len(m.group(1)))
    else:
        m = _PY_CLASS.match(ctx)
        if m:
            classes.append((len(m.group(1)), m.group(2)))
    for line in lines:
        sign, text = line[0], line[1:]
        stripped = text.strip()
        if not stripped or stripped.startswith("#"):
            continue
        ind = _indent(text)
        d, c = _PY_DEF.match(text), _PY_CLASS.match(text)
        if sign == "-":
            if d or c:
                current = ("", ind)
            elif current and current[0] and ind > current[1]:
                yield _py_name(current[0], classes)
            continue
        if current and ind <= current[1] and not stripped.startswith((")", "]", "}")):
            current = None
        while classes and classes[-1][0] >= ind and not stripped.startswith((")", "]", "}")):
            classes.pop()
        if c:
            classes.append((ind, c.group(2)))
        elif d:
            current = (d.group(2), ind)
            if sign == "+":
                yield _py_name(current[0], classes)
        elif sign == "+" and current and current[0] and ind > current[1]:
            yield _py_name(current[0], classes)


def _py_name(name: str, classes: list[tuple[int, str]]) -> str:
    return "::".join([c for _, c in classes] + [name])


def _scan_go(ctx: str, lines: list[str], _lang: str) -> Iterable[str]:
    m = _GO_FUNC.match(ctx)
    current = m.group(1) if m else None
    for line in lines:
        sign, text = line[0], line[1:]
        if sign != "-":
            m = _GO_FUNC.match(text)
            if m:
                current = m.group(1)
                if sign == "+":
                    yield current
                continue
            if text.startswith("}"):
                if sign == "+" and current:
                    yield current
                current = None
                continue
        if sign in "+-" and current and text.strip():
            yield current


def _scan_marked(ctx: str, lines: list[str], lang: str) -> Iterable[str]:
    """JS/TS, Ruby, Java, Rust: the tests a patch adds (their names on added lines)."""
    marked = False
    for line in lines:
        sign, text = line[0], line[1:]
        if sign == "-":
            continue
        if lang in ("java", "rs"):
            if text.strip() in ("@Test", "#[test]") or text.strip().startswith("@Test("):
                marked = True
                continue
            rx = _JAVA_TEST if lang == "java" else _RUST_FN
            m = rx.match(text)
            if m and marked:
                marked = False
                if sign == "+":
                    yield m.group(1)
            continue
        m = (_JS_TEST if lang == "js" else _RB_TEST).match(text)
        if m and sign == "+":
            yield m.group(2)


# ---------------------------------------------------------------- one PR, a chain


def stage(pr: PullRequest, is_test: Callable[[str], bool],
          scrub_line: Callable[[str], str] | None = None) -> Stage:
    """The PR's reference change; ``is_test(path)`` tells test files (the filter rules'
    ``tests`` class); ``scrub_line``: guards.scrub, or a ScrubMemo of it."""
    code: list[str] = []
    tests: list[str] = []
    names: dict[str, None] = {}
    issues: set[str] = set()
    for f in sorted(pr.files, key=lambda f: f.path):
        diff = file_diff(f)
        if diff is None:
            issues.add(_issue(f))
            continue
        diff, redacted = redact(diff, scrub_line)
        if redacted:  # what is exported is not the change itself any more
            issues.add("secrets_redacted")
        if is_test(f.path):
            tests.append(diff)
            if f.status != "deleted":
                names.update(dict.fromkeys(tests_added(f.path, f.patch)))
        else:
            code.append(diff)
    if not pr.files:
        issues.add("no_files")
    elif not any(code) and not any(tests) and not issues:
        issues.add("empty_change")
    if not pr.base_sha:
        issues.add("no_base_commit")
    return Stage(number=pr.number, base_commit=pr.base_sha, merge_commit=pr.merge_sha,
                 patch="".join(code), test_patch="".join(tests), tests_added=tuple(names),
                 applicable=not issues, issues=tuple(sorted(issues)))


def redact(diff: str, scrub_line: Callable[[str], str] | None = None) -> tuple[str, bool]:
    """A file's diff with secrets in its changed and context lines replaced, line by line
    (guards.scrub, or ``scrub_line``: the same function remembered; PR text never leaves the
    machine unscrubbed), and whether any was."""
    from .rewrite.guards import in_public_block, scrub
    scrub = scrub_line or scrub
    out, changed, in_hunk, public = [], False, False, False
    for line in diff.split("\n"):
        if line.startswith("@@"):
            in_hunk = True
        elif line.startswith("diff --git "):
            in_hunk = public = False
        elif in_hunk and line[:1] in ("+", "-", " ") and (
                public := in_public_block(line[1:], public)):
            pass  # a certificate's or public key's base64: public by design
        elif in_hunk and len(line) > 6 and line[0] in "+- ":
            clean = scrub(line[1:]).replace("\n", " ")
            if clean != line[1:]:
                line, changed = line[0] + clean, True
        out.append(line)
    return "\n".join(out), changed


class ScrubMemo:
    """guards.scrub of single patch lines, remembered: a run meets the same lines again and
    again (context lines shared by PRs of a repository, a chain's stages are its PRs' patches
    once more: 70 % of the lines sanic-org/sanic's run scrubs). Owned by one rewrite worker;
    forgets everything past ``limit`` lines."""

    def __init__(self, limit: int = 100_000):
        self.limit = limit
        self._seen: dict[str, str] = {}

    def __call__(self, line: str) -> str:
        out = self._seen.get(line)
        if out is None:
            from .rewrite.guards import scrub
            out = scrub(line)
            if len(self._seen) >= self.limit:
                self._seen.clear()
            self._seen[line] = out
        return out


def _issue(f: FileChange) -> str:
    if f.binary:
        return "binary_files"
    if f.patch_truncated:
        return "patch_truncated"
    if f.undecodable:
        return "non_utf8_patch"
    if f.patch is not None:
        return "not_a_patch"
    return "patches_missing"


_RANGE = re.compile(r"^@@ -(\d+)(?:,(\d+))? \+(\d+)(?:,(\d+))? @@", re.MULTILINE)


def _ranges(patch: str | None, side: int) -> list[tuple[int, int]]:
    """The line ranges a file's hunks cover, context included, on the old (0) or new (1)
    side: [start, end)."""
    out = []
    for m in _RANGE.finditer(patch or ""):
        start, n = int(m.group(1 + 2 * side)), m.group(2 + 2 * side)
        out.append((start, start + (1 if n is None else int(n))))
    return out


def conflicts(prs: list[PullRequest], foreign: list[tuple]) -> list[str]:
    """Files where a later stage's hunks meet lines a PR outside the chain changed before
    that stage (``foreign``: (merged_at, path, patch) rows): there the stages as one series
    may not apply at the first stage's base."""
    out: dict[str, None] = {}
    for pr in prs[1:]:
        since, until = prs[0].merged_at, pr.merged_at
        for f in pr.files:
            mine = _ranges(f.patch, 0)
            for at, path, patch in foreign:
                if path != f.path or not (since is None or until is None or since < at <= until):
                    continue
                if patch is None or any(a < d and c < b for a, b in mine
                                        for c, d in _ranges(patch, 1)):
                    out[f.path] = None
    return list(out)


def reference(prs: list[PullRequest], is_test: Callable[[str], bool],
              foreign: list[tuple] | None = None,
              applies: Callable[[str, str], bool] | None = None,
              scrub_line: Callable[[str], str] | None = None) -> Reference:
    """A task's reference change. One PR: its stage. A chain (PRs in merge order): every
    stage, and their series as the top-level patch for the first stage's base. ``foreign``
    holds what PRs outside the chain changed in its files meanwhile ((merged_at, path,
    patch)): where a later stage meets such a change, the series may not apply at the first
    base (``stages_do_not_compose``); each stage still applies at its own base. ``applies``
    (base commit, patch) -> bool, when the repository is at hand (a git source), settles
    what ``foreign`` cannot see: commits pushed without a PR, PRs on other branches."""
    stages = [stage(pr, is_test, scrub_line) for pr in prs]
    if len(stages) == 1:
        s = stages[0]
        return Reference(s.patch, s.test_patch, s.tests_added, s.applicable, s.issues)
    issues = {i for s in stages for i in s.issues}
    heads = {p.head_ref for p in prs if p.head_ref}
    if (foreign and conflicts(prs, foreign)) or any(p.base_ref in heads for p in prs):
        # (a PR merged into another member's branch is in that member's change again)
        issues.add("stages_do_not_compose")
    names = dict.fromkeys(n for s in stages for n in s.tests_added)
    patch = "".join(s.patch for s in stages)
    test_patch = "".join(s.test_patch for s in stages)
    if applies is not None and not issues and not all(
            applies(prs[0].base_sha, p) for p in (patch, test_patch) if p):
        issues.add("stages_do_not_compose")
    return Reference(patch=patch, test_patch=test_patch,
                     tests_added=tuple(names), applicable=not issues,
                     issues=tuple(sorted(issues)), stages=tuple(stages))


def attach(task: Task, prs: list[PullRequest], is_test: Callable[[str], bool],
           foreign: list[tuple] | None = None,
           applies: Callable[[str, str], bool] | None = None,
           scrub_line: Callable[[str], str] | None = None) -> Task:
    """The task with its reference change (and its PRs as members); a task whose change
    cannot be applied is flagged ``unappliable`` too."""
    ref = reference(prs, is_test, foreign, applies, scrub_line)
    flags = list(task.spec.flags)
    if not ref.applicable and "unappliable" not in flags:
        flags = flags[:7] + ["unappliable"]  # the schema's bound: 8 flags
    return dataclasses.replace(task, spec=task.spec.model_copy(update={"flags": flags}),
                               reference=ref, members=task.members or tuple(p.number for p in prs))
