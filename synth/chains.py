"""Pure: chains, series of related merged PRs of one repository, from PR metadata and files.

A link between an earlier PR A and a later PR B has a kind and a detail, in words:

    reference  B names A as what it continues: "follow-up to #A", "depends on #A", "part 2"
    issue      A and B close or reference the same issue
    stacked    B's base branch is A's head branch (GitHub's stacked PRs)
    fix        B fixes A: "regression from #A", or a fix that rewrites lines A added
    revert     B reverts part of A
    author     the same author, soon after, changing lines A added or using a name A defined,
               in files both touched

Links join PRs into chains, strongest links first, of ``min_prs`` to ``max_prs`` PRs spanning
at most ``max_days``. A chain is kept when it is substantive as a whole, even when a member
alone is small. The rules are ``[chains]`` in the filter rules (filters/default.toml).
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from bisect import bisect_left
from datetime import datetime, timedelta, timezone

from .diffs import changed_lines
from .errors import ConfigError
from .models import INFO_CODES, Chain, ChainLink, Decision, PullRequest

CHAIN_CODE_VERSION = "1"  # bump when detection changes meaning

DEFAULTS: dict = {
    "min_prs": 2, "max_prs": 5, "max_days": 90, "author_days": 30, "fix_days": 60,
    "min_logic_lines": 20, "max_changed_lines": 6000, "max_files": 150,
    "member_codes": ["too_small", "tests_only", "docs_only", "removal", "move_only",
                     "symbol_rename", "pass_through", "data_table", "coverage_only"],
    "long_lived_branches": [r"^(main|master|develop|devel|dev|trunk|next|stable|gh-pages)$",
                            r"^v?\d+(\.\d+)*(\.x)?$", r"^(release|releases|maint|maintenance|"
                            r"support|hotfix|backport)[-/_]"],
    "signals": ["reference", "issue", "stacked", "fix", "revert", "author"],
}
MIN_AUTHOR_LINES = 2  # lines of the earlier PR's that a same-author link must rewrite
FIX_SHARE = 0.25  # or this share of the lines a fix rewrites (else at least 3 lines)
AUTHOR_SHARE = 0.05  # and at least this share of the lines the later PR rewrites
RANK = {"stacked": 0, "reference": 1, "revert": 2, "fix": 3, "issue": 4, "author": 5}


@dataclass(frozen=True)
class ChainRules:
    min_prs: int
    max_prs: int
    max_days: float
    author_days: float
    fix_days: float
    min_logic_lines: int
    max_changed_lines: int
    max_files: int
    member_codes: frozenset[str]
    long_lived: re.Pattern
    signals: frozenset[str]
    version: str


def chain_rules(raw: dict | None) -> ChainRules:
    """``[chains]`` of the filter rules over the defaults; unknown keys are errors."""
    merged = dict(DEFAULTS)
    for key, value in (raw or {}).items():
        if key not in DEFAULTS:
            raise ConfigError(f"filter rules: unknown key chains.{key} "
                              f"(known: {', '.join(DEFAULTS)})")
        if isinstance(DEFAULTS[key], list) != isinstance(value, list):
            raise ConfigError(f"filter rules: chains.{key} must be "
                              + ("a list" if isinstance(DEFAULTS[key], list) else "a number"))
        merged[key] = value
    unknown = set(merged["signals"]) - set(RANK)
    if unknown:
        raise ConfigError(f"filter rules: chains.signals names unknown signals {sorted(unknown)}")
    if not 2 <= merged["min_prs"] <= merged["max_prs"]:
        raise ConfigError("filter rules: chains needs 2 <= min_prs <= max_prs")
    try:
        long_lived = re.compile("|".join(f"(?:{p})" for p in merged["long_lived_branches"]),
                               re.IGNORECASE)
    except re.error as exc:
        raise ConfigError(f"filter rules: bad chains.long_lived_branches: {exc}") from None
    version = hashlib.sha256((CHAIN_CODE_VERSION + json.dumps(merged, sort_keys=True))
                             .encode()).hexdigest()[:12]
    return ChainRules(merged["min_prs"], merged["max_prs"], merged["max_days"],
                      merged["author_days"], merged["fix_days"], merged["min_logic_lines"],
                      merged["max_changed_lines"], merged["max_files"],
                      frozenset(merged["member_codes"]), long_lived,
                      frozenset(merged["signals"]), version)


# ---------------------------------------------------------------- what a PR says and changes

_N = r"(?:pr\s*|pull request\s*)?(?:#|https?://github\.com/[\w.-]+/[\w.-]+/(?:pull|issues)/)(\d+)"
_PHRASES = [  # (kind, pattern ending in a PR or issue number)
    ("reference", r"follow(?:s|ing)?[- ]?ups?(?:\s+(?:to|of|on|for|from))?|follows(?:\s+up)?"
                  r"|continu(?:es|ation of|ing)|depends on|dependent on|based on|builds? (?:up)?on"
                  r"|stacked on|on top of|extends|completes|finishes|supersedes|split (?:out )?of"
                  r"|(?:second|next|final|last) (?:part|step) of|refs?|references|related to"
                  r"|relates to|part of|towards?"),
    ("fix", r"(?:introduced|added|caused|broken|regressed|regression|bug|issue|problem)"
            r"\s+(?:in|by|from|since|with|of)|fix(?:es|ed|ing)?(?:\s+(?:for|up|to))?"
            r"|close[sd]?|resolve[sd]?"),
    ("revert", r"(?:partial(?:ly)?\s+)?revert(?:s|ing|ed)?\s+(?:part|parts|some|pieces)\s+of"
               r"|partial(?:ly)?\s+revert(?:s|ing|ed)?"),
]
_REFS = [(kind, re.compile(rf"(?i)(?:^|[^\w#])(?:{rx})\s*:?\s*{_N}\b")) for kind, rx in _PHRASES]
_CLOSES = re.compile(rf"(?i)\b(?:close[sd]?|fix(?:e[sd])?|resolve[sd]?|refs?|see|part of|"
                     rf"towards?|addresses|related to|relates to)\s*:?\s*{_N}\b")
_NUMBER_MARK = re.compile(r"#\d|github\.com/[\w.-]+/[\w.-]+/(?:pull|issues)/\d")  # in every _N
_FULL_REVERT = re.compile(r'(?i)^revert\s+"')
_PART = re.compile(r"(?i)\b(?:part|pt\.?|step|phase)\s*(\d+)\b|[(\[](\d+)\s*/\s*\d+[)\]]")
_FIXY = re.compile(r"(?i)\b(fix(?:es|ed)?|bug|regression|broken|crash(?:es)?|correct|repair|"
                   r"restore)\b")
_NOT_FIX = re.compile(r"(?i)\b(docs?|documentation|change ?log|changes|typos?|release)\b")
# changes that sweep over the code base rewrite everyone's lines: no fix or author link
_SWEEPING = re.compile(r"(?i)\b(typing|type hints?|annotations?|mypy|pyright|coverage|"
                       r"lint(?:ing|er)?|formatting|formatter|reformat\w*|code style|"
                       r"style fix\w*|pre-commit|pyupgrade|ruff|"
                       r"black|flake8|isort|gofmt|golangci|modernize|ci)\b")
_DEF = re.compile(r"^\s*(?:async\s+)?(?:def|class|func(?:\s*\([^)]*\))?|type|fn|struct|function"
                  r"|interface|enum)\s+([A-Za-z_]\w{5,})")
_DEFS = re.compile(_DEF.pattern.replace("^\\s*", "^[ \\t]*"), re.M)  # _DEF over joined lines
_WORD = re.compile(r"[A-Za-z_]\w*")
_LONG_WORD = re.compile(r"[A-Za-z_]\w{7,}")  # the names _DISTINCT can accept, no shorter
_LETTER = re.compile(r"[A-Za-z]")
_DISTINCT = re.compile(r"^(?=\w{8})\w*(?:[a-z][A-Z]|[A-Za-z0-9]_[A-Za-z])")  # cacheGet, cache_get


class _Lines:
    """What a PR's code lines say, for the fix and author links."""

    def __init__(self, added: dict[str, set[str]], removed: dict[str, set[str]],
                 added_text: str, removed_text: str):
        self.added = added  # path -> lines it added (not moved), code files only
        self.removed = removed
        self._added_text = added_text
        self._removed_text = removed_text
        self._words: set[str] | None = None
        self._defines: set[str] | None = None

    @property
    def defines(self) -> set[str]:
        """The distinct names its added lines define (a def, class, func, type, ...) that
        no removed line names: new, not moved. Read when an author link asks."""
        if self._defines is None:
            found = {d for d in _DEFS.findall(self._added_text) if _DISTINCT.search(d)
                     and not d.lower().startswith("test") and not d.startswith("__")}
            if found and self._removed_text:
                found -= set(_LONG_WORD.findall(self._removed_text))
            self._defines = found
        return self._defines

    @property
    def words(self) -> set[str]:
        """The long names on added lines (a define is one: _DISTINCT), read when an author
        link asks whether this PR uses a name an earlier one defined."""
        if self._words is None:
            self._words = set(_LONG_WORD.findall(self._added_text))
        return self._words


@dataclass
class _Profile:
    pr: PullRequest
    author: str
    refs: list[tuple[str, int]]  # (kind, number) the text names
    issues: set[int]
    part: tuple[int, frozenset[str]] | None
    fixy: bool
    sweeping: bool
    full_revert: bool
    same: str  # the title without markers: two PRs with the same are one change, ported
    files: dict[str, str]  # code and test files -> their class
    _lines: _Lines | None = None

    @property
    def lines(self) -> _Lines:
        """Read from the patch when first needed: most PRs are never compared line by line
        (no earlier PR of theirs is in reach), and their patches are most of the work."""
        if self._lines is None:
            self._lines = _lines_of(self.pr, self.files)
        return self._lines


def _line_keys(lines: list[str]) -> set[str]:
    """The lines worth matching: long enough once spaces are squeezed, not boilerplate."""
    squeezed = (" ".join(line.split()) for line in lines if len(line) >= 12)
    return {s for s in squeezed if len(s) >= 12 and not s.startswith(("#", "//", "*", "/*"))
            and _LETTER.search(s)}


def _profile(pr: PullRequest, classify, numbers: set[int]) -> _Profile:
    text = f"{pr.title}\n{pr.body or ''}"
    named = _NUMBER_MARK.search(text) is not None  # every reference names a number so
    refs = [(kind, int(m.group(1))) for kind, rx in _REFS for m in rx.finditer(text)] \
        if named else []
    refs = [(k, n) for k, n in refs if n != pr.number]
    issues = {i.number for i in pr.linked_issues}
    if named:
        issues |= {int(m.group(1)) for m in _CLOSES.finditer(text)}
    issues = {n for n in issues if n not in numbers and n != pr.number}
    part = None
    m = _PART.search(pr.title or "")
    if m:
        stem = _PART.sub(" ", pr.title).lower()
        part = (int(m.group(1) or m.group(2)), frozenset(_WORD.findall(stem)))
    files = {f.path: cls for f in pr.files if (cls := classify(f.path)) in ("code", "tests")}
    return _Profile(pr, (pr.author or "").strip().lower(), refs, issues, part,
                    bool(_FIXY.search(pr.title or "")) and not _NOT_FIX.search(pr.title or ""),
                    bool(_SWEEPING.search(pr.title or "")),
                    bool(_FULL_REVERT.match(pr.title or "")),
                    _port_key(pr.title), files)


def _lines_of(pr: PullRequest, files: dict[str, str]) -> _Lines:
    added: dict[str, set[str]] = {}
    removed: dict[str, set[str]] = {}
    gone_text: list[str] = []  # removed lines: a name on one is not new, only moved
    added_text: list[str] = []
    for f in pr.files:
        cls = files.get(f.path)
        if cls is None or not f.patch:
            continue
        plus, minus = changed_lines(f.patch)
        added_text.append("\n".join(plus))  # one regex pass over all lines, when asked
        gone_text.extend(minus)
        if cls == "code":  # a line removed and added again (moved, re-spaced) is neither
            gone = _line_keys(minus)
            new = _line_keys(plus)
            added[f.path] = new - gone
            removed[f.path] = gone - new
    return _Lines(added, removed, "\n".join(added_text), "\n".join(gone_text))


_PORT_NOISE = re.compile(r"(?i)\(#\d+\)|\[[^\]]*\]|\b(back|forward)[- ]?port(ed|s)?\b|"
                         r"\bcherry[- ]pick(ed)?\b|\bto (main|master|\d+\.\d+(\.x)?)\b")


def _port_key(title: str) -> str:
    return " ".join(re.findall(r"\w+", _PORT_NOISE.sub(" ", title or "").lower()))


# ---------------------------------------------------------------- links


def _days(a: datetime | None, b: datetime | None) -> float:
    if a is None or b is None:
        return float("inf")
    return abs((b - a).total_seconds()) / 86400


_DAY = timedelta(days=1)
_MICRO = timedelta(microseconds=1)


def _micros(when: datetime) -> int:
    """A merge time as whole microseconds: gaps between two are exact integers."""
    return (when - (_EPOCH if when.tzinfo else _NAIVE_EPOCH)) // _MICRO


_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_NAIVE_EPOCH = datetime(1970, 1, 1)
_DAY_US = _DAY // _MICRO


def _shared_lines(a: _Profile, removed: list[tuple[str, set[str]]]) -> tuple[int, str | None]:
    """How many lines A added does B change (B's ``removed``, by file), and in which file."""
    best, where = 0, None
    added = a.lines.added
    for path, gone in removed:
        mine = added.get(path)
        if mine:
            n = len(gone & mine)
            if n > best:
                best, where = n, path
    return best, where


def links(prs: list[PullRequest], classify, rules: ChainRules,
          numbers: set[int] | None = None) -> list[ChainLink]:
    """Every link between the PRs (earlier merge first), strongest kinds first. ``numbers``
    are every PR number of the repository (a "#N" naming one is not an issue)."""
    prs = sorted((p for p in prs if p.merged_at is not None), key=lambda p: (p.merged_at, p.number))
    numbers = (numbers or set()) | {p.number for p in prs}
    window = max(rules.fix_days, rules.author_days)
    prof = {p.number: _profile(p, classify, numbers) for p in prs}
    order = {p.number: i for i, p in enumerate(prs)}
    found: dict[tuple[int, int, str], str] = {}
    on = rules.signals

    def add(a: int, b: int, kind: str, detail: str) -> None:
        if a == b or kind not in on or (prof[a].same and prof[a].same == prof[b].same):
            return  # the same change twice (a back- or forward-port) is not a series
        if order[a] > order[b]:
            a, b = b, a
        if _days(prof[a].pr.merged_at, prof[b].pr.merged_at) <= rules.max_days:
            found.setdefault((a, b, kind), detail)

    heads: dict[str, int] = {}
    for p in prs:
        if p.head_ref and not rules.long_lived.search(p.head_ref):
            heads.setdefault(p.head_ref, p.number)
    last_with_issue: dict[int, int] = {}
    by_author: dict[str, list[int]] = {}
    by_file: dict[str, list[int]] = {}
    file_times: dict[str, list[int]] = {}  # beside by_file: each PR's merge, in microseconds
    when = {p.number: _micros(p.merged_at) for p in prs}
    reach = window * _DAY_US
    for p in prs:
        b = prof[p.number]
        if b.full_revert:
            continue
        for kind, n in b.refs:  # explicit references to an earlier PR
            if n in prof and order[n] < order[p.number] and not prof[n].full_revert:
                phrase = "revert" if kind == "revert" else kind
                add(n, p.number, phrase, f"#{p.number} says it {_VERB[phrase]} #{n}")
        if p.base_ref and p.base_ref in heads and heads[p.base_ref] != p.number:
            a = heads[p.base_ref]
            add(a, p.number, "stacked", f"#{p.number} was merged into the branch of #{a} "
                f"({p.base_ref})")
        for issue in sorted(b.issues):
            if issue in last_with_issue:
                add(last_with_issue[issue], p.number, "issue",
                    f"#{last_with_issue[issue]} and #{p.number} both name issue #{issue}")
            last_with_issue[issue] = p.number
        if b.part and b.part[0] >= 2:
            for n in reversed(by_author.get(b.author, [])):
                a = prof[n]
                if (a.part and a.part[0] == b.part[0] - 1 and _similar(a.part[1], b.part[1])
                        and a.files.keys() & b.files.keys()):  # a like title alone is not enough
                    add(n, p.number, "reference", f"#{p.number} is part {b.part[0]} after "
                        f"#{n}, part {a.part[0]}, with a like title, in files both change")
                    break
        now = when[p.number]
        earlier: set[int] = set()
        for path in b.files:  # the PRs in reach that changed one of b's files
            if path in by_file:
                earlier.update(by_file[path][bisect_left(file_times[path], now - reach):])
        fix, author = None, None  # the best implicit link of each kind: one earlier PR each
        removed = None  # lines b removes: counted when an earlier PR is compared
        gone: list[tuple[str, set[str]]] = []  # and by file
        free = None  # the names b uses and does not define
        for n in sorted(earlier, key=order.get, reverse=True) if not b.sweeping else ():
            a = prof[n]
            gap = (now - when[n]) / _DAY_US
            same_author = a.author and a.author == b.author and not p.author_is_bot
            if a.full_revert or a.sweeping or not ((gap <= rules.fix_days and b.fixy)
                                                   or (same_author and gap <= rules.author_days)):
                continue
            if removed is None:
                gone = [(path, lines) for path, lines in b.lines.removed.items() if lines]
                removed = sum(len(lines) for _, lines in gone)
            shared, where = _shared_lines(a, gone) if gone else (0, None)
            if (b.fixy and gap <= rules.fix_days and shared
                    and (shared >= 3 or shared >= FIX_SHARE * removed)
                    and (fix is None or shared > fix[0])):
                fix = (shared, n, f"#{p.number}, a fix {gap:.0f} days later, rewrites "
                       f"{shared} line(s) #{n} added in {where}")
            if same_author and gap <= rules.author_days:
                if (shared >= MIN_AUTHOR_LINES and shared >= AUTHOR_SHARE * removed
                        and (author is None or shared > author[0])):
                    author = (shared, n, f"same author ({p.author}), {gap:.0f} days later, "
                              f"rewrites {shared} line(s) #{n} added in {where}")
                    continue
                if author is not None or not a.lines.defines:
                    continue
                if free is None:
                    free = b.lines.words - b.lines.defines
                uses = sorted(a.lines.defines & free)
                if uses:
                    author = (0, n, f"same author ({p.author}), {gap:.0f} days later, in files "
                              f"both change, uses {', '.join(uses[:3])} that #{n} added")
        for kind, best in (("fix", fix), ("author", author)):
            if best is not None:
                add(best[1], p.number, kind, best[2])
        by_author.setdefault(b.author, []).append(p.number)
        for path in b.files:  # in merge order: times never decrease along a file's list
            by_file.setdefault(path, []).append(p.number)
            file_times.setdefault(path, []).append(now)
    out = [ChainLink(a, b, kind, detail) for (a, b, kind), detail in found.items()]
    return sorted(out, key=lambda lk: (RANK[lk.kind], order[lk.later] - order[lk.earlier],
                                       lk.earlier, lk.later))


_VERB = {"reference": "continues", "fix": "fixes", "revert": "reverts part of"}


def _similar(a: frozenset[str], b: frozenset[str]) -> bool:
    return bool(a | b) and len(a & b) / len(a | b) >= 0.5


# ---------------------------------------------------------------- chains


def eligible(d: Decision, rules: ChainRules) -> bool:
    """A PR may be a chain member when kept, or dropped only for being small of its kind."""
    drops = [r for r in d.reasons if r not in INFO_CODES]
    return d.kept or (bool(drops) and set(drops) <= rules.member_codes)


def detect(repo: str, prs: list[PullRequest], decisions: dict[int, Decision], classify,
           rules: ChainRules, exclude: set[int] | frozenset = frozenset()) -> list[Chain]:
    """The chains among a repository's PRs. ``decisions`` holds each PR's latest decision;
    only eligible PRs (see ``eligible``) not in ``exclude`` become members."""
    members = [p for p in prs if p.number in decisions and p.number not in exclude
               and eligible(decisions[p.number], rules) and p.merged_at is not None]
    by_number = {p.number: p for p in members}
    all_links = links(members, classify, rules, set(decisions))
    parent = {n: n for n in by_number}
    groups = {n: [n] for n in by_number}

    def find(n: int) -> int:
        while parent[n] != n:
            parent[n] = parent[parent[n]]
            n = parent[n]
        return n

    for lk in all_links:  # strongest first; a merge must keep the chain within bounds
        ra, rb = find(lk.earlier), find(lk.later)
        if ra == rb:
            continue
        joined = groups[ra] + groups[rb]
        times = [by_number[n].merged_at for n in joined]
        if len(joined) > rules.max_prs or _days(min(times), max(times)) > rules.max_days:
            continue
        parent[rb] = ra
        groups[ra] = joined
        del groups[rb]
    out = []
    for nums in groups.values():
        if len(nums) < rules.min_prs:
            continue
        chain_prs = sorted((by_number[n] for n in nums), key=lambda p: (p.merged_at, p.number))
        inside = set(nums)
        chain_links = tuple(lk for lk in all_links if lk.earlier in inside and lk.later in inside)
        out.append(_verdict(repo, chain_prs, chain_links, decisions, classify, rules))
    return sorted(out, key=lambda c: (c.first_merged_at, c.members))


def _verdict(repo: str, prs: list[PullRequest], chain_links: tuple[ChainLink, ...],
             decisions: dict[int, Decision], classify, rules: ChainRules) -> Chain:
    metrics = [decisions[p.number].metrics or {} for p in prs]
    files = {f.path for p in prs for f in p.files}
    logic = sum(int(m.get("logic_lines") or 0) for m in metrics)
    changed = sum(p.additions + p.deletions for p in prs)
    tested = sum(1 for p in prs if any(classify(f.path) == "tests" for f in p.files))
    figures = {
        "members": len(prs), "span_days": round(_days(prs[0].merged_at, prs[-1].merged_at), 1),
        "authors": sorted({p.author for p in prs if p.author}), "files": len(files),
        "changed_lines": changed, "code_lines": sum(int(m.get("code_lines") or 0) for m in metrics),
        "logic_lines": logic, "members_kept": sum(decisions[p.number].kept for p in prs),
        "members_with_tests": tested,
        "links": {k: sum(lk.kind == k for lk in chain_links) for k in RANK
                  if any(lk.kind == k for lk in chain_links)},
    }
    reasons = []
    if logic < rules.min_logic_lines:
        reasons.append("chain_too_small")
    if changed > rules.max_changed_lines or len(files) > rules.max_files:
        reasons.append("chain_too_large")
    kept = not reasons
    reasons = (["substantive"] if kept else reasons) + (["has_tests"] if tested else [])
    return Chain(repo=repo, members=tuple(p.number for p in prs), links=chain_links, kept=kept,
                 reasons=tuple(reasons), rules_version=rules.version, figures=figures,
                 first_merged_at=prs[0].merged_at, last_merged_at=prs[-1].merged_at)
