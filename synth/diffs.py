"""Pure diff analysis: which lines of a patch are code, and what kind of change it is.

Per file, added and removed lines are split into code and non-code (blank, comment,
docstring). Python goes through ``tokenize``; other languages through a comment-syntax
table. Whole-change detectors tell whitespace-only, comment-only, import-order-only and
version-string-only changes apart from real ones.
"""

from __future__ import annotations

import io
import re
import tokenize
from collections import Counter
from dataclasses import dataclass, field
from fnmatch import translate
from functools import lru_cache
from itertools import chain

# language -> (line comment prefixes, block comment (open, close) pairs)
COMMENT_SYNTAX: dict[str, tuple[tuple[str, ...], tuple[tuple[str, str], ...]]] = {
    "c": (("//",), (("/*", "*/"),)),
    "shell": (("#",), ()),
    "ruby": (("#",), (("=begin", "=end"),)),
    "sql": (("--",), (("/*", "*/"),)),
    "lua": (("--",), (("--[[", "]]"),)),
    "html": ((), (("<!--", "-->"),)),
    "haskell": (("--",), (("{-", "-}"),)),
    "lisp": ((";",), ()),
    "erlang": (("%",), ()),
}

EXTENSION_LANG: dict[str, str] = {
    **dict.fromkeys(["c", "h", "cc", "cpp", "cxx", "hpp", "hh", "m", "mm", "cs", "java", "kt",
                     "kts", "scala", "go", "rs", "js", "jsx", "mjs", "cjs", "ts", "tsx", "swift",
                     "dart", "php", "groovy", "gradle", "proto", "zig", "v", "sol", "css",
                     "scss", "less", "fs", "fsx"], "c"),
    **dict.fromkeys(["sh", "bash", "zsh", "fish", "ps1", "pl", "pm", "r", "jl", "nim", "cr",
                     "ex", "exs", "mk", "cmake", "tcl", "awk", "coffee", "yaml", "yml", "toml",
                     "cfg", "ini", "conf", "dockerfile", "tf", "hcl", "nix"], "shell"),
    "rb": "ruby", "rake": "ruby", "gemspec": "ruby",
    "sql": "sql", "lua": "lua",
    **dict.fromkeys(["html", "htm", "xml", "vue", "svelte", "xhtml"], "html"),
    "hs": "haskell", "elm": "haskell",
    **dict.fromkeys(["lisp", "el", "clj", "cljs", "scm"], "lisp"),
    "erl": "erlang", "hrl": "erlang",
    "py": "python", "pyi": "python", "pyx": "python",
}

FILENAME_LANG = {"makefile": "shell", "dockerfile": "shell", "rakefile": "ruby",
                 "gemfile": "ruby", "cmakelists.txt": "shell", "justfile": "shell"}


def language_of(path: str) -> str | None:
    name = path.rpartition("/")[2].lower()
    if name in FILENAME_LANG:
        return FILENAME_LANG[name]
    if "." in name:
        return EXTENSION_LANG.get(name.rsplit(".", 1)[1])
    return None


# ---------------------------------------------------------------- path patterns

@lru_cache(maxsize=4096)
def _glob_regex(pattern: str) -> re.Pattern:
    """A gitignore-flavoured glob: ``**`` spans folders; a pattern with no slash matches the
    file name at any depth; a trailing slash means everything below that folder. Smart case:
    a pattern in lower case matches any case (``*.md``: README.MD), one with a capital
    letter matches only that case (``LICENSE*``: LICENSE-MIT, not license_mit.go)."""
    pat = pattern.strip()
    if pat.endswith("/"):
        pat += "**"
    anchored = "/" in pat.rstrip("/")
    if not anchored:
        pat = "**/" + pat
    # fnmatch.translate treats * as crossing slashes; build our own for ** vs *
    out, i = [], 0
    while i < len(pat):
        if pat.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
        elif pat.startswith("**", i):
            out.append(".*")
            i += 2
        elif pat[i] == "*":
            out.append("[^/]*")
            i += 1
        elif pat[i] == "?":
            out.append("[^/]")
            i += 1
        elif pat[i] == "[":
            j = pat.find("]", i)
            if j == -1:
                out.append(re.escape(pat[i]))
                i += 1
            else:
                out.append(translate(pat[i:j + 1])[4:-3])
                i = j + 1
        else:
            out.append(re.escape(pat[i]))
            i += 1
    flags = 0 if any(c.isupper() for c in pattern) else re.IGNORECASE
    return re.compile("".join(out) + r"\Z", flags)


class PathClassifier:
    """Path -> file class, first matching class wins (in the order the rules list them)."""

    def __init__(self, classes: dict[str, list[str]], default: str = "code"):
        self.default = default
        self._rules: list[tuple[str, re.Pattern]] = []
        for name, patterns in classes.items():
            if patterns:
                joined = "|".join(
                    f"(?{'i' if rx.flags & re.IGNORECASE else ''}:{rx.pattern[:-2]})"
                    for rx in map(_glob_regex, patterns))
                self._rules.append((name, re.compile(f"(?:{joined})\\Z")))
        self._cache: dict[str, str] = {}

    def __call__(self, path: str) -> str:
        hit = self._cache.get(path)
        if hit is None:
            hit = self.default
            for name, rx in self._rules:
                if rx.match(path):
                    hit = name
                    break
            if len(self._cache) < 100_000:
                self._cache[path] = hit
        return hit


# ---------------------------------------------------------------- patch lines

# Line patterns start with a literal newline (the patch is searched with one put in front),
# not with ^ and re.M: a literal first character lets the regex engine skip ahead, which is
# two to three times faster on long patches.
_ADDED_TEXT = re.compile(r"\n\+(?!\+\+ )([^\n]*)")
_REMOVED_TEXT = re.compile(r"\n-(?!-- )([^\n]*)")


def changed_lines(patch: str | None) -> tuple[list[str], list[str]]:
    """(added, removed) line texts of a unified-diff patch, without their +/- prefix."""
    if not patch:
        return [], []
    text = "\n" + patch
    return _ADDED_TEXT.findall(text), _REMOVED_TEXT.findall(text)


@dataclass(frozen=True, slots=True)
class LineCounts:
    code_added: int = 0
    code_removed: int = 0
    other_added: int = 0  # blank, comment, docstring
    other_removed: int = 0

    @property
    def code(self) -> int:
        return self.code_added + self.code_removed


_PY_KEYWORDS = ("and|as|assert|async|await|break|case|class|continue|def|del|elif|else|except|"
                "exec|finally|for|from|global|if|import|in|is|lambda|match|nonlocal|not|or|pass|"
                "print|raise|return|try|type|while|with|yield")
# a Python line that cannot be code: two plain words in a row (no statement starts so but
# with a keyword), a reStructuredText underline, field or directive, a doctest prompt
# (the lookahead for two words first: most code lines fail it before the keyword list is tried)
_PY_PROSE = re.compile(rf"\s*(?:(?=[A-Za-z][\w'’-]*\s+[A-Za-z])(?!(?:{_PY_KEYWORDS})\b)"
                       rf"[A-Za-z][\w'’-]*\s+[A-Za-z][\w'’-]*"
                       r"(?![\w'’-]*\s*[=(\[.:,])|[~=^*-]{3,}\s*$|:[a-z]+( [\w.]+)?:(\s|$)"
                       r"|\.\. \w+::|>>> )")
_PY_QUOTED = re.compile(r"'[^'\\]*(?:\\.[^'\\]*)*'" + r'|"[^"\\]*(?:\\.[^"\\]*)*"')


def _py_prose(line: str) -> bool:
    """A line that cannot be Python code: prose, reStructuredText, or a backtick outside a
    string and a comment (Python 3 has none: ``literal`` and `role` markup in a docstring)."""
    if _PY_PROSE.match(line):
        return True
    if "`" not in line:
        return False
    bare = _PY_QUOTED.sub("", line) if ("'" in line or '"' in line) else line
    return "`" in bare.split("#", 1)[0]


def count_code_lines(path: str, patch: str | None,
                     sides: tuple[list[str], list[str]] | None = None) -> LineCounts:
    """Code vs non-code lines among a file's added and removed lines (``sides``: the
    patch's ``changed_lines`` when the caller has them already), judged in their hunks'
    context (``patch_code_flags``)."""
    if not patch:
        return LineCounts()
    added, removed = sides if sides is not None else changed_lines(patch)
    fa, fr = patch_code_flags(path, patch, (added, removed))
    ca, cr = sum(fa), sum(fr)
    return LineCounts(ca, cr, len(added) - ca, len(removed) - cr)


def patch_code_flags(path: str, patch: str,
                     sides: tuple[list[str], list[str]]) -> tuple[list[bool], list[bool]]:
    """Per added and per removed line of a file's patch (``sides``: its ``changed_lines``):
    is it code? Each is judged in its hunk as that side reads it, the context lines with
    it: a docstring or block comment opened in the context (or before the hunk: a Python
    hunk whose first triple quote closes a string) holds no code. A hunk without such
    delimiters has its lines judged alone (context cannot change them)."""
    lang = language_of(path)
    delimiters = _delimiters(lang)
    if not any(d in patch for d in delimiters):  # every line is judged alone
        return code_flags(path, sides[0]), code_flags(path, sides[1])
    out: tuple[list[bool], list[bool]] = ([], [])
    for hunk in _HUNK_HEADER.split(patch):
        if any(d in hunk for d in delimiters):
            new, new_changed, old, old_changed = _hunk_sides(hunk)
            for lines, changed, flags in ((new, new_changed, out[0]), (old, old_changed, out[1])):
                if changed:
                    f = _side_flags(path, lines)
                    flags.extend(f[i] for i in changed)
        else:
            added, removed = changed_lines(hunk)
            out[0].extend(code_flags(path, added))
            out[1].extend(code_flags(path, removed))
    if len(out[0]) != len(sides[0]) or len(out[1]) != len(sides[1]):  # not a plain patch
        return code_flags(path, sides[0]), code_flags(path, sides[1])
    return out


def _delimiters(lang: str | None) -> tuple[str, ...]:
    """What opens or closes a multi-line string or block comment in a language: only
    these let a line's context change its verdict."""
    if lang == "python":
        return ('"""', "'''")
    blocks = COMMENT_SYNTAX[lang][1] if lang in COMMENT_SYNTAX else ()
    return tuple(d for pair in blocks for d in pair)


def _hunk_sides(hunk: str) -> tuple[list[str], list[int], list[str], list[int]]:
    """One hunk (without its @@ line) as its two sides read it: (new lines, indexes of the
    added ones, old lines, indexes of the removed ones). Lines are told apart as
    ``changed_lines`` tells them; "\\ No newline at end of file" is on neither side."""
    lines = hunk.split("\n")
    new = [ln for ln in lines if not ln.startswith(("-", "\\", "+++ "))]
    old = [ln for ln in lines if not ln.startswith(("+", "\\", "--- "))]
    new_changed = [i for i, ln in enumerate(new) if ln[:1] == "+"]
    old_changed = [i for i, ln in enumerate(old) if ln[:1] == "-"]
    return [ln[1:] for ln in new], new_changed, [ln[1:] for ln in old], old_changed


_HUNK_HEADER = re.compile(r"^@@[^\n]*(?:\n|$)", re.M)


def _side_flags(path: str, lines: list[str]) -> list[bool]:
    """A hunk side's code flags. A Python hunk may begin inside a string (a docstring)
    whose opening lies above it: one that holds triple quotes is read both ways (beginning
    outside a string, or inside one that its first triple quote closes), and the reading
    kept is the one under which fewer lines are taken for what they do not look like (a
    statement taken for text, prose taken for code); a tie keeps the first."""
    if language_of(path) != "python":
        return code_flags(path, lines)
    quote = _first_quote(lines)
    if quote is None:
        return code_flags(path, lines)
    # code_flags for both readings, with each line's prose test made once for all three uses
    prose: dict[int, bool] = {}

    def is_prose(i: int) -> bool:
        p = prose.get(i)
        if p is None:
            p = prose[i] = _py_prose(lines[i])
        return p

    flags = [f and not is_prose(i) for i, f in enumerate(_python_token_flags(lines))]
    inside = [f and not is_prose(i)
              for i, f in enumerate(_python_token_flags([quote] + lines)[1:])]
    score = 0  # lines the inside reading gets right, less those the first one does
    for i, (ln, a, b) in enumerate(zip(lines, flags, inside)):
        if a != b and ln.strip():  # only where the readings differ
            looks = bool(_CODE_START.match(ln)) and not is_prose(i)
            score += 1 if b == looks else -1
    return inside if score > 0 else flags


def _first_quote(lines: list[str]) -> str | None:
    """The first triple quote in the lines, unless it opens a string (its line starts
    with it and goes on: a docstring's summary, or follows ``=``, ``(``, ...)."""
    first = next((ln for ln in lines if '"""' in ln or "'''" in ln), None)
    if first is None:
        return None
    at = min(x for x in (first.find('"""'), first.find("'''")) if x >= 0)
    before, after = first[:at].strip(), first[at + 3:].strip()
    if (not before and after) or _OPENS_STRING.search(before):
        return None
    return first[at:at + 3]


_OPENS_STRING = re.compile(r"(?:[=(\[{,:%+]|\breturn|\byield|\bprint)\s*[rRbBuUfF]{0,2}$")


# a line that reads as Python code: a simple statement's keyword (not followed by prose:
# "return the value"), a decorator, a call, an assignment (annotated or not), a block header
_CODE_START = re.compile(
    r"\s*(?:(?:return|raise|import|from|del|assert|yield|pass|break|continue|global|nonlocal|"
    r"await|print)\b(?!\s+(?:the|a|an|this|that|these|those|it|its|you|your|we|"
    r"our|whether|when|which)\b)|@\w|[\w.\[\]'\"]+\s*(?::\s*[\w.\[\], |]+)?\s*"
    r"(?:[-+*/|&]?=(?!=)|\()|.*:\s*(?:#.*)?$)")


def code_flags(path: str, lines: list[str]) -> list[bool]:
    """Per line of one side of a file's patch: is it code (not blank, comment or
    docstring)? Python lines that cannot be code (prose or reStructuredText, the inside of
    a docstring whose quotes lie outside the hunk) are not code either."""
    lang = language_of(path)
    if not lines:
        return []
    if lang == "python":
        return [f and not _py_prose(ln) for f, ln in zip(_python_token_flags(lines), lines)]
    if lang in COMMENT_SYNTAX:
        return _table_code_flags(lines, *COMMENT_SYNTAX[lang])
    return [bool(ln.strip()) for ln in lines]


def _python_token_flags(lines: list[str]) -> list[bool]:
    """Per Python line: does it hold code tokens (not blank, comment or docstring)? Prose
    is not tested here (``code_flags`` does)."""
    if not any('"""' in ln or "'''" in ln for ln in lines):
        return [bool(s) and s[0] != "#" for s in map(str.strip, lines)]
    return _python_scan(lines) or _python_code_flags(lines) or [
        bool(s) and not s.startswith("#") for s in map(str.strip, lines)]


def _python_scan(lines: list[str]) -> list[bool] | None:
    """A fast line scanner with tokenize's verdicts for the usual shapes: a triple-quoted
    string that starts a line and ends one with nothing after it is a docstring (not code);
    one that is part of an expression is code, every line of it. None when a line mixes
    quoting the scanner does not follow (then tokenize decides).

    Only lines holding a triple quote change the scanner's state; the runs of lines between
    them are settled in bulk (outside a string: blank and comment lines are not code; inside
    one: a docstring's lines are not code, an expression's are)."""
    flags: list[bool] = []
    delim: str | None = None  # inside a triple-quoted string closed by this
    doc = False
    start = 0
    i = 0  # the first line not settled yet
    for q in _triple_quote_lines(lines) + [len(lines)]:
        if q > i:  # lines i..q-1 hold no triple quote
            if delim is None:
                flags += [bool(s) and s[0] != "#" for s in map(str.strip, lines[i:q])]
            else:
                flags += [not doc] * (q - i)
        if q == len(lines):
            break
        i = q + 1
        s = lines[q].strip()
        if delim is not None:
            end = s.find(delim)
            if end == -1:
                flags.append(not doc)
                continue
            rest = s[end + 3:].strip()
            if doc and rest and not rest.startswith("#"):  # not a docstring after all
                flags[start:] = [True] * (len(flags) - start)
                doc = False
            flags.append(not doc)
            delim = None
            if '"""' in rest or "'''" in rest:
                return None
            continue
        if s[0] == "#":
            flags.append(False)
            continue
        m = _TRIPLE.match(s)
        if m:
            quote = m.group(1)
            body = s[m.end():]
            close = body.find(quote)
            if close == -1:
                delim, doc, start = quote, True, len(flags)
                flags.append(False)
                continue
            rest = body[close + 3:].strip()
            flags.append(bool(rest) and not rest.startswith("#"))
            if '"""' in rest or "'''" in rest:
                return None
            continue
        flags.append(True)
        n2, n1 = s.count('"""'), s.count("'''")
        if n2 and n1:
            return None
        if n2 % 2 or n1 % 2:
            delim, doc, start = ('"""' if n2 % 2 else "'''"), False, len(flags)
    return flags


def _triple_quote_lines(lines: list[str]) -> list[int]:
    """Indexes of the lines that hold a triple quote."""
    return [i for i, ln in enumerate(lines) if '"""' in ln or "'''" in ln]


def _python_code_flags(lines: list[str]) -> list[bool] | None:
    """Per line: does it hold a Python token that is code (not comment, not a docstring)?

    The lines of a diff side are a fragment, not a module: they are dedented and tokenized
    as a unit; when the fragment does not tokenize (a string cut by the hunk), None.
    """
    text = "\n".join(_dedent(lines)) + "\n"
    flags = [False] * len(lines)
    try:
        toks = list(tokenize.generate_tokens(io.StringIO(text).readline))
    except (tokenize.TokenError, IndentationError, SyntaxError):
        return None
    skip = {tokenize.COMMENT, tokenize.NL, tokenize.NEWLINE, tokenize.INDENT,
            tokenize.DEDENT, tokenize.ENDMARKER, tokenize.ENCODING}
    prev_significant = tokenize.NEWLINE
    for i, tok in enumerate(toks):
        if tok.type in skip:
            if tok.type == tokenize.NEWLINE:
                prev_significant = tokenize.NEWLINE
            continue
        if tok.type == tokenize.STRING and prev_significant in (tokenize.NEWLINE, tokenize.INDENT) \
                and _TRIPLE.match(tok.string):
            nxt = next((t for t in toks[i + 1:] if t.type not in (tokenize.COMMENT,)), None)
            if nxt is None or nxt.type in (tokenize.NEWLINE, tokenize.NL, tokenize.ENDMARKER):
                prev_significant = tok.type
                continue  # a bare string statement: a docstring
        prev_significant = tok.type
        for row in range(tok.start[0], tok.end[0] + 1):
            if 0 < row <= len(flags):
                flags[row - 1] = True
    return flags


_TRIPLE = re.compile(r"^[rRbBuUfF]{0,2}(\"\"\"|\'\'\')")


def _dedent(lines: list[str]) -> list[str]:
    widths = [len(ln) - len(ln.lstrip()) for ln in lines if ln.strip()]
    cut = min(widths) if widths else 0
    # nested indentation inside a fragment may not tokenize; flatten it
    return [ln[cut:].lstrip() if ln.strip() else "" for ln in lines]


def _table_code_flags(lines: list[str], line_prefixes: tuple[str, ...],
                      blocks: tuple[tuple[str, str], ...]) -> list[bool]:
    flags = []
    in_block: str | None = None
    for raw in lines:
        s = raw.strip()
        is_code = False
        while s:
            if in_block is not None:
                end = s.find(in_block)
                if end == -1:
                    s = ""
                    break
                s = s[end + len(in_block):].strip()
                in_block = None
                continue
            if any(s.startswith(p) for p in line_prefixes):
                break
            opened = next(((o, c) for o, c in blocks if s.startswith(o)), None)
            if opened:
                in_block = opened[1]
                s = s[len(opened[0]):]
                continue
            if s.startswith("*") and blocks:  # continuation of a block comment cut by the hunk
                break
            is_code = True
            break
        flags.append(is_code)
    return flags


# ---------------------------------------------------------------- change kinds

_WS = re.compile(r"\s+")
_IMPORT = re.compile(r"^\s*(import\s|from\s+\S+\s+import\s|#include\s|use\s|require\(|const\s+\w+\s*=\s*require\()")
_VERSION_LINE = re.compile(
    r"""(?ix)(version|__version__|"version"|release|tag)\W.*?\d+\.\d+|^\s*[\w.-]+\s*[=<>~!]=+\s*v?\d+(\.\d+)+|
    ^\s*"?[@\w./-]+"?\s*:\s*"[\^~>=<]*\d+\.\d+(\.\d+)?[\w.-]*"\s*,?\s*$""")
_VERSION_NUM = re.compile(r"v?\d+(\.\d+)+([-.+]?[\w]+)*")


_TRAILING_COMMA = re.compile(r",(?=[\)\]\}])")


def _formatless(lines: list[str]) -> str:
    text = "".join("".join(lines).split())  # no whitespace at all (str.split is C-speed)
    return _TRAILING_COMMA.sub("", text).replace("'", '"')


@dataclass(slots=True)
class ChangeKinds:
    """Which special kinds of change a set of files amounts to (all False for real work)."""

    whitespace_only: bool = False
    comment_only: bool = False
    import_order_only: bool = False
    version_string_only: bool = False
    rename_only: bool = False
    details: dict = field(default_factory=dict)


def change_kinds(files: list[tuple[str, str, str | None, int, int]],
                 code_lines: int | None = None,
                 sides: list[tuple[list[str], list[str]] | None] | None = None) -> ChangeKinds:
    """Classify a change from its files: (path, status, patch, additions, deletions).

    Only files with patch text are judged; a change with none gets all False except
    rename_only. ``code_lines``, when the caller already counted them, saves a recount;
    ``sides``, when given, holds each file's ``changed_lines`` (or None), saving a re-split.
    """
    kinds = ChangeKinds()
    if files and all(st == "renamed" and a == 0 and d == 0 for _, st, _, a, d in files):
        kinds.rename_only = True
        return kinds
    texts = []
    for i, (p, _, patch, _, _) in enumerate(files):
        if patch:
            known = sides[i] if sides else None
            texts.append((p, *(known if known is not None else changed_lines(patch))))
    if not any(a or r for _, a, r in texts):
        return kinds
    # formatting only: per file, the removed and the added text are the same once
    # whitespace, line wrapping, trailing commas and quote style are ignored (a formatter run)
    kinds.whitespace_only = all(_formatless(a) == _formatless(r) for _, a, r in texts)
    code = code_lines if code_lines is not None else sum(
        count_code_lines(p, patch).code for p, _, patch, _, _ in files if patch)
    kinds.comment_only = code == 0 and not kinds.whitespace_only

    def every(test) -> bool:
        """Some line changed (not blank), and every such line passes; stops at the first
        that does not (for real work, within a line or two)."""
        seen = False
        for _, a, r in texts:
            for ln in chain(a, r):
                if ln.strip():
                    if not test(ln):
                        return False
                    seen = True
        return seen

    def nonblank(side: int) -> list[str]:
        return [ln for t in texts for ln in t[side] if ln.strip()]

    # the same imports on both sides, reordered; the same lines but for version numbers
    if every(_IMPORT.match):
        kinds.import_order_only = (Counter(map(str.strip, nonblank(1)))
                                   == Counter(map(str.strip, nonblank(2))))
    if every(_VERSION_LINE.search):
        kinds.version_string_only = (
            Counter(_VERSION_NUM.sub("V", _WS.sub("", ln)) for ln in nonblank(1))
            == Counter(_VERSION_NUM.sub("V", _WS.sub("", ln)) for ln in nonblank(2)))
    return kinds
