"""Pure substance analysis: how much of a change is new logic, and how much is mechanical.

Real PRs that touch plenty of code lines can still be trivial: code moved between modules,
a symbol renamed across files, deprecated code deleted, a parameter passed through, a
linter's findings fixed. This module looks at the code lines of a change (blank lines,
comments and docstrings already set aside by ``diffs``) and sorts them:

    moved      an added line that is also a deleted line (anywhere in the change), or the
               other way round: code that changed place, not meaning
    renamed    a deleted line and the added line that replaces it differ only in
               identifiers, by the same old -> new mapping as elsewhere in the change
    plumbing   parameters declared and forwarded unchanged (``timeout=timeout,``,
               ``self.timeout = timeout``, ``Timeout: timeout,``, ``timeout: float = 5,``),
               imports, lines of type expressions, and a Python line that replaces one
               differing only by type annotations (``def f(x):`` -> ``def f(x: int) -> str:``)
    syntax     punctuation-only lines (``)``, ``},``) and lone keywords (``else:``)
    logic      everything else; a logic line that repeats one already counted (the same
               edit made at several sites, whatever its string and number literals) counts
               once

Per file, the logic a change holds is max(logic lines added, logic lines deleted): a
three-line fix that replaces three lines counts three, not six. Every figure goes into a
decision's metrics, and each rule that uses them says which figure fired it.
"""

from __future__ import annotations

import ast
import re
from collections import Counter
from dataclasses import dataclass, field

_TOKEN = re.compile(r"[A-Za-z_][A-Za-z0-9_]*|\d+(?:\.\d+)?|\S")
_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
_IMPORT = re.compile(r"(import\s|from\s+\S+\s+import\s|#include\s|use\s|require\(|"
                     r"const\s+\w+\s*=\s*require\(|\"[\w./-]+\"$|[\w.]+\s+\"[\w./-]+\"$)")
_PUNCT = re.compile(r"[\s()\[\]{}:;,.]*\Z")
_KEYWORDS_ONLY = re.compile(r"(else|else:|pass|try:|finally:|return|break|continue|end|"
                            r"\}\s*else\s*\{|default:|\*|\*,|/,|\*\*kwargs,?|\*args,?)\Z")
# a name forwarded as itself: timeout=timeout, / self.timeout = timeout / Timeout: timeout,
_FORWARD = re.compile(r"(?:(?:self|this|cls|[a-z]\w{0,2})\.)?(\w+)\s*(?::=|=|:)\s*"
                      r"(?:(?:self|this|cls|opts?|options|kwargs|params|[a-z]\w{0,2})\.)?(\w+)\s*[,;)]?\Z")
# a parameter or field declared: timeout: float = 5.0, / timeout=None, / Timeout time.Duration
_STATEMENT = (r"(?!(?:return|raise|yield|del|assert|await|go|defer|throw|goto|case|not|print|exec|"
              r"import|from|new|delete|typeof|break|continue|var|let|const|if|for|while)\b)")
_DECLARE = re.compile(_STATEMENT + r"(?:\*{0,2}\w+\s*(?::\s*[\w\[\]., |\"'*]+?)?\s*(?:=\s*[^,()=]+?)?\s*,"
                      r"|\w+\s+[\w.*\[\]]+\s*,?"
                      r"|\w+\s+[\w.*\[\]]+\s+`[^`]*`)\Z")
_SYNTAX = re.compile(f"(?:{_PUNCT.pattern})|(?:{_KEYWORDS_ONLY.pattern})")
# a line of type expressions only (a signature's annotations wrapped onto their own line)
_TYPE_ONLY = re.compile(r"[\w.]+\[[\w.\[\], |\"']*\][\],)]*,?\s*(?:->\s*[\w.\[\], |]+)?:?\Z")
# a line that opens a branch or a loop, in the languages synth reads (`} else if` too)
_BRANCH = re.compile(r"(?:\}\s*)?(?:if|elif|else\s+if|for|foreach|while|switch|case|select|"
                     r"try|except|catch|match|unless|until|when)\b(?!\s*[=:.,)])")
# a line of literals only, once _shape has blanked them: strings, numbers, True/None/nil...,
# and the punctuation of lists, tuples and maps ('"Aaron",', '("DE", 49),', '"a": 1,')
_DATA = re.compile(r'(?=.*(?:""|\b0\b))(?:[rRbBuU]{0,2}""|-?\b0\b|[\s,:()\[\]{}]|'
                   r'(?:True|False|None|nil|true|false|null)\b)+\Z')
MIN_MOVED_CHARS = 12  # shorter lines ("return x", "}") match by chance, not by moving


@dataclass(slots=True)
class FileLines:
    """One code file's code lines, in patch order, each side split into -/+ blocks."""

    path: str
    added: list[str]
    deleted: list[str]
    # (deleted lines, added lines) indexes of each run of '-' lines followed by '+' lines
    blocks: list[tuple[list[int], list[int]]] = field(default_factory=list)
    # the same runs, one-sided ones too: the places a change touches
    sites: list[tuple[list[int], list[int]]] = field(default_factory=list)


@dataclass(slots=True)
class Substance:
    code_added: int = 0
    code_deleted: int = 0
    moved_lines: int = 0  # added lines that were deleted elsewhere in the change
    renamed_lines: int = 0  # added lines that differ from the line they replace by a rename
    plumbing_lines: int = 0  # added and deleted lines that only declare or forward names
    syntax_lines: int = 0  # added and deleted lines of punctuation or a lone keyword
    data_lines: int = 0  # added and deleted lines of literals only: a table's entries
    repeated_lines: int = 0  # logic lines that repeat one seen before in the change
    logic_lines: int = 0  # per file max(logic added, logic deleted), summed
    logic_added: int = 0
    logic_deleted: int = 0
    logic_sites: int = 0  # runs of changed lines (per file, in patch order) holding logic
    logic_branches: int = 0  # added logic lines that open a branch or a loop (if, for, case, ...)
    renames: list[tuple[str, str, int]] = field(default_factory=list)  # old, new, lines

    def as_metrics(self) -> dict:
        return {"code_added": self.code_added, "code_deleted": self.code_deleted,
                "moved_lines": self.moved_lines, "renamed_lines": self.renamed_lines,
                "plumbing_lines": self.plumbing_lines, "syntax_lines": self.syntax_lines,
                "data_lines": self.data_lines,
                "repeated_lines": self.repeated_lines,
                "logic_lines": self.logic_lines,
                "logic_added": self.logic_added, "logic_deleted": self.logic_deleted,
                "logic_sites": self.logic_sites, "logic_branches": self.logic_branches,
                "renames": [f"{a}->{b}" for a, b, _ in self.renames[:5]]}


def blocks_of(patch: str, keep: "set[int] | None" = None) -> list[tuple[list[int], list[int]]]:
    """Indexes (into the added and deleted lines, in patch order) of each run of '-' lines
    followed by a run of '+' lines: the lines a hunk replaces and what replaces them."""
    out: list[tuple[list[int], list[int]]] = []
    ai = di = 0
    cur_d: list[int] = []
    cur_a: list[int] = []
    for line in patch.split("\n"):
        if line.startswith("-") and not line.startswith("--- "):
            if cur_a:  # a '-' after '+': a new block
                out.append((cur_d, cur_a))
                cur_d, cur_a = [], []
            cur_d.append(di)
            di += 1
        elif line.startswith("+") and not line.startswith("+++ "):
            cur_a.append(ai)
            ai += 1
        else:
            if cur_d or cur_a:
                out.append((cur_d, cur_a))
                cur_d, cur_a = [], []
    if cur_d or cur_a:
        out.append((cur_d, cur_a))
    return out


def _norm(line: str) -> str:
    return " ".join(line.split())


# a string literal, its loop unrolled (a run of plain characters, then an escape and another
# run): the same matches as ("(?:[^"\\]|\\.)*"|...), with one step per run, not per character
_STRING = re.compile(r"""("[^"\\]*(?:\\.[^"\\]*)*"|'[^'\\]*(?:\\.[^'\\]*)*'|`[^`]*`)""")
_NUMBER = re.compile(r"\b\d+(?:\.\d+)?\b")
_DIGIT = re.compile(r"\d")


def _shape(line: str) -> str:
    """A line with its string and number literals blanked: the same edit made at several
    sites with different messages or constants has one shape."""
    return _shape_of(_norm(line))


def _shape_of(n: str) -> str:
    """``_shape`` of a line already normalised (``_norm``)."""
    if '"' in n or "'" in n or "`" in n:
        n = _STRING.sub('""', n)
    return _NUMBER.sub("0", n) if _DIGIT.search(n) else n


def _syntax(line: str) -> bool:
    """Punctuation or a lone keyword: a line that holds no logic of its own."""
    s = line.strip()
    return not s or bool(_SYNTAX.match(s))


def _plumbing(line: str) -> bool:
    """An import, a type expression, or a name declared or forwarded unchanged."""
    return _plumbing_stripped(line.strip())


def _plumbing_stripped(s: str) -> bool:
    if _IMPORT.match(s) or ("[" in s and _TYPE_ONLY.match(s)):
        return True
    if "=" in s or ":" in s:
        m = _FORWARD.match(s)
        if m and m.group(1).lower().lstrip("_") == m.group(2).lower().lstrip("_"):
            return True
    # _DECLARE's forms: ending in "," or in a `tag`, or two words (a Go field), and no
    # parenthesis outside a tag: test the cheap part first, the regex backtracks on long lines
    if s[-1:] == "`":
        return bool(_DECLARE.match(s))
    return ((s[-1:] == "," or len(s.split()) <= 3) and "(" not in s and ")" not in s
            and bool(_DECLARE.match(s)))


def _mechanical(line: str) -> bool:
    return _syntax(line) or _plumbing(line)


def _rename_pair(old: str, new: str) -> list[tuple[str, str]] | None:
    """The identifier substitutions that turn ``old`` into ``new``, when the two lines
    have the same shape and differ only in identifiers (None otherwise)."""
    if old.count(" ") != new.count(" ") or old == new:  # a rename keeps the line's shape
        return None
    a, b = _TOKEN.findall(old), _TOKEN.findall(new)
    if len(a) != len(b) or a == b:
        return None
    subs = []
    for x, y in zip(a, b):
        if x != y:
            if not (_IDENT.match(x) and _IDENT.match(y)):
                return None
            subs.append((x, y))
    return subs


def _py_stmt(line: str) -> tuple | None:
    """One Python line, a ``def`` header or an assignment, parsed alone and reduced to what
    its type annotations do not change (names, parameters, defaults, the value); None for
    any other line or one that does not parse alone."""
    src = line.strip()
    if src.endswith(":"):
        src += " pass"
    try:
        tree = ast.parse(src)
    except (SyntaxError, ValueError):
        return None
    if len(tree.body) != 1:
        return None
    node = tree.body[0]
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
        a = node.args
        return (type(node).__name__, node.name, [ast.dump(d) for d in node.decorator_list],
                [x.arg for x in a.posonlyargs], [x.arg for x in a.args],
                a.vararg and a.vararg.arg, [x.arg for x in a.kwonlyargs], a.kwarg and a.kwarg.arg,
                [ast.dump(d) for d in a.defaults],
                [d and ast.dump(d) for d in a.kw_defaults])
    if isinstance(node, ast.AnnAssign) and node.value is not None:
        return ("=", ast.dump(node.target), ast.dump(node.value))
    if isinstance(node, ast.Assign) and len(node.targets) == 1:
        return ("=", ast.dump(node.targets[0]), ast.dump(node.value))
    return None


_ANNOTATION_HINT = re.compile(r"\w\s*:\s*[A-Za-z_]")
_ASSIGNED = re.compile(r"([A-Za-z_][\w.]*)(?=\s*=[^=]|:)")


def _annotation_only(old: str, new: str) -> bool:
    """Two Python lines that differ only by type annotations (``def f(x):`` and
    ``def f(x: int) -> str:``, ``n = 0`` and ``n: int = 0``)."""
    if "->" not in new and not _ANNOTATION_HINT.search(new):
        return False  # no annotation in the new line (the common case: no parse)
    a, b = old.strip(), new.strip()
    if _plumbing_stripped(b) and _plumbing_stripped(a):
        return False  # plumbing either way (a parameter line of a long signature)
    if a.startswith(("def ", "async def ")):
        cut = a.find("(")
        if cut < 0 or b[:cut + 1] != a[:cut + 1]:
            return False  # another function
    else:
        m = _ASSIGNED.match(a)
        if m is None or not b.startswith(m.group(1)) or (
                b[len(m.group(1)):][:1] != ":" and "#" not in b):
            return False  # not `name = value` given a type (`name: T = value`, `# type: T`)
    a = _py_stmt(old)
    return a is not None and a == _py_stmt(new)


def file_lines(path: str, patch: str, sides: tuple[list[str], list[str]],
               flags: tuple[list[bool], list[bool]]) -> FileLines:
    """One file's code lines (``flags``: which added and deleted lines are code) with the
    -/+ blocks of its patch mapped onto them."""
    added, deleted = sides
    fa, fd = flags
    ia = {i: j for j, i in enumerate(i for i, x in enumerate(fa) if x)}
    idx = {i: j for j, i in enumerate(i for i, x in enumerate(fd) if x)}
    runs = [([idx[i] for i in ds if i in idx], [ia[i] for i in as_ if i in ia])
            for ds, as_ in blocks_of(patch)]
    runs = [r for r in runs if r[0] or r[1]]
    return FileLines(path, [ln for ln, x in zip(added, fa) if x],
                     [ln for ln, x in zip(deleted, fd) if x], [r for r in runs if r[0] and r[1]],
                     runs)


MIN_MOVED_RUN = 3  # lines in a row: one line on both sides is a coincidence (if err != nil {)
MIN_MOVED_LONG = 2  # of which this many of MIN_MOVED_CHARS or more (not `}`, `return err`)


def _moved_runs(norms: list[list[str]], movable: Counter) -> set[tuple[int, int]]:
    """Added lines that were moved: runs of MIN_MOVED_RUN or more consecutive added code
    lines (``norms``: each file's added lines, normalised) each of which was also deleted
    somewhere in the change (each deleted line moves once)."""
    left = Counter(movable)
    out: set[tuple[int, int]] = set()
    for fi, lines in enumerate(norms):
        run: list[int] = []
        in_run: Counter = Counter()
        for i in range(len(lines) + 1):
            n = lines[i] if i < len(lines) else None
            if n is not None and in_run[n] < left.get(n, 0):
                run.append(i)
                in_run[n] += 1
                continue
            if len(run) >= MIN_MOVED_RUN and sum(
                    len(lines[j]) >= MIN_MOVED_CHARS for j in run) >= MIN_MOVED_LONG:
                for j in run:
                    left[lines[j]] -= 1
                    out.add((fi, j))
            if run:
                run, in_run = [], Counter()
            if n is not None and left.get(n, 0) > 0:
                run.append(i)
                in_run[n] += 1
    return out


def analyse(files: list[FileLines]) -> Substance:
    """The substance of a change from its code files' code lines."""
    s = Substance()
    added_all: Counter = Counter()
    deleted_all: Counter = Counter()
    norm_a = [[_norm(ln) for ln in f.added] for f in files]
    norm_d = [[_norm(ln) for ln in f.deleted] for f in files]
    for f, na, nd in zip(files, norm_a, norm_d):
        s.code_added += len(f.added)
        s.code_deleted += len(f.deleted)
        added_all.update(na)
        deleted_all.update(nd)
    movable = added_all & deleted_all  # lines on both sides: moved, not changed
    # renames: identifier substitutions seen in replaced lines; a mapping seen on two or
    # more lines (or the only one a change makes) is a rename
    pairs: list[tuple[int, int, int, list[tuple[str, str]]]] = []
    mapping: Counter = Counter()
    annotated: set = set()
    for fi, f in enumerate(files):
        python = f.path.endswith((".py", ".pyi"))
        for dels, adds in f.blocks:
            for d, a in zip(dels, adds):
                subs = _rename_pair(f.deleted[d], f.added[a])
                if subs:
                    pairs.append((fi, d, a, subs))
                    mapping.update(set(subs))
                elif python and _annotation_only(f.deleted[d], f.added[a]):
                    annotated.add((fi, "+", a))
                    annotated.add((fi, "-", d))
    renamed: set[tuple[int, str, int]] = set()
    strong = {m for m, n in mapping.items() if n >= 2} or (set(mapping) if len(mapping) == 1 else set())
    for fi, d, a, subs in pairs:
        if all(x in strong for x in subs):
            renamed.add((fi, "+", a))
            renamed.add((fi, "-", d))
    s.renames = sorted(((a, b, n) for (a, b), n in mapping.items() if (a, b) in strong),
                       key=lambda t: -t[2])
    moved_a = _moved_runs(norm_a, movable) if movable else set()  # (file, added line) moved here
    moved_left_d = Counter(norm_a[fi][i] for fi, i in moved_a)
    seen: dict[str, set[str]] = {"+": set(), "-": set()}
    moved_at: dict[int, set[int]] = {}
    for fi, i in moved_a:
        moved_at.setdefault(fi, set()).add(i)
    renamed_at: dict[tuple[int, str], set[int]] = {}
    for fi, side, i in renamed:
        renamed_at.setdefault((fi, side), set()).add(i)
    none: set[int] = set()
    for fi, f in enumerate(files):
        la = ld = 0
        logic_at: set[tuple[str, int]] = set()
        for side, lines in (("+", f.added), ("-", f.deleted)):
            logic = 0
            moved_here = moved_at.get(fi, none) if side == "+" else none
            renamed_here = renamed_at.get((fi, side), none)
            seen_side = seen[side]
            norms = norm_a[fi] if side == "+" else norm_d[fi]
            for i, line in enumerate(lines):
                if i in moved_here:
                    s.moved_lines += 1
                    continue
                if side == "-" and moved_left_d:
                    n = norm_d[fi][i]
                    if moved_left_d.get(n, 0) > 0:
                        moved_left_d[n] -= 1
                        continue
                if i in renamed_here:
                    if side == "+":
                        s.renamed_lines += 1
                    continue
                stripped = line.strip()
                if not stripped or _SYNTAX.match(stripped):  # _syntax
                    s.syntax_lines += 1
                    continue
                if (fi, side, i) in annotated or _plumbing_stripped(stripped):
                    s.plumbing_lines += 1
                    continue
                n = _shape_of(norms[i])
                if _DATA.match(n):  # literals only: an entry of a data table
                    s.data_lines += 1
                    continue
                if n in seen_side:  # the same edit again, at another site: counted once
                    s.repeated_lines += 1
                    continue
                seen_side.add(n)
                logic += 1
                logic_at.add((side, i))
                if side == "+" and _BRANCH.match(stripped):
                    s.logic_branches += 1
            if side == "+":
                la = logic
            else:
                ld = logic
        s.logic_added += la
        s.logic_deleted += ld
        s.logic_lines += max(la, ld)
        s.logic_sites += sum(1 for dels, adds in f.sites
                             if any(("-", i) in logic_at for i in dels)
                             or any(("+", i) in logic_at for i in adds))
    return s
