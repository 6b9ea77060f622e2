"""Pure filtering: PullRequest + rules -> Decision with every reason code that fired.

Rules come from filters/*.toml (see filters/default.toml); this module has no I/O beyond
reading those files in ``load_rules``. ``decide`` never raises on odd input: a binary, huge or
undecodable patch is a reason code, not a crash.
"""

from __future__ import annotations

import hashlib
import json
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from .chains import ChainRules, chain_rules
from .diffs import (PathClassifier, change_kinds, changed_lines, count_code_lines,
                    patch_code_flags)
from .errors import ConfigError
from .models import INFO_CODES, Decision, PullRequest  # noqa: F401 (INFO_CODES: re-exported)
from .substance import analyse, file_lines

FILTER_CODE_VERSION = "8"  # bump when decide() changes meaning, so decisions re-run

# Codes that drop a PR. Everything else a decision carries is information.
DROP_CODES = frozenset({
    "bot_author", "release", "version_bump", "revert", "typo", "chore", "too_large",
    "too_small", "no_code", "empty_change", "whitespace_only", "comment_only",
    "import_order_only", "version_string_only", "rename_only", "excluded",
    # mechanical change that touches code (substance analysis, titles)
    "removal", "move_only", "symbol_rename", "pass_through", "lint_only", "coverage_only",
    "branch_merge",
    "triage_trivial",  # the optional LLM triage (rewrite/triage.py)
    # a PR whose files all fall in one trivial class: <class>_only
    "docs_only", "tests_only", "ci_only", "lockfile_only", "generated_only", "vendored_only",
    "build_only", "assets_only",
})

_SIZE_KEYS = {"max_files": 60, "max_changed_lines": 3000, "max_patch_bytes": 2_000_000}
_SUBSTANCE_KEYS = {"min_logic_lines": 10, "tested_min_logic_lines": 5,
                   "tested_min_test_lines": 10, "removal_ratio": 3.0, "mechanical_share": 0.5,
                   "max_mechanical_logic": 20, "branchless_min_logic_lines": 0}
_SECTIONS = {"size", "substance", "classes", "trivial_alone", "titles", "labels", "bots",
             "change_kinds", "chains"}
_KINDS = ("whitespace_only", "comment_only", "import_order_only", "version_string_only",
          "rename_only")


@dataclass(frozen=True)
class Rules:
    raw: dict
    version: str
    size: dict[str, int]
    substance: dict[str, float]
    classify: PathClassifier
    trivial_alone: frozenset[str]
    titles: tuple[tuple[str, re.Pattern], ...]
    labels: tuple[tuple[str, re.Pattern], ...]
    bots: re.Pattern | None
    kinds: frozenset[str]
    sources: tuple[str, ...] = field(default=())
    chains: "ChainRules | None" = None  # [chains]: how related PRs are linked (chains.py)


def default_rules_path() -> Path:
    from .paths import filters_dir
    return filters_dir() / "default.toml"


def load_rules(paths: list[str | Path] | None = None) -> Rules:
    """Read and merge rule files (later files override earlier keys, section by section)."""
    files = [Path(p) for p in (paths or [default_rules_path()])]
    merged: dict = {}
    for file in files:
        try:
            with open(file, "rb") as fh:
                data = tomllib.load(fh)
        except FileNotFoundError:
            raise ConfigError(f"filter rules not found: {file}") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"filter rules {file} are not valid TOML: {exc}") from None
        except UnicodeDecodeError:
            raise ConfigError(f"filter rules {file} are not UTF-8 text") from None
        for section, value in data.items():
            if section not in _SECTIONS:
                raise ConfigError(f"{file}: unknown section [{section}] "
                                  f"(known: {', '.join(sorted(_SECTIONS))})")
            if not isinstance(value, dict):
                raise ConfigError(f"{file}: [{section}] must be a table")
            merged.setdefault(section, {}).update(value)
    return compile_rules(merged, tuple(str(f) for f in files))


def compile_rules(raw: dict, sources: tuple[str, ...] = ()) -> Rules:
    size = dict(_SIZE_KEYS)
    for key, value in raw.get("size", {}).items():
        if key not in _SIZE_KEYS:
            raise ConfigError(f"filter rules: unknown key size.{key}")
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise ConfigError(f"filter rules: size.{key} must be a whole number >= 0")
        size[key] = value
    substance = dict(_SUBSTANCE_KEYS)
    for key, value in raw.get("substance", {}).items():
        if key not in _SUBSTANCE_KEYS:
            raise ConfigError(f"filter rules: unknown key substance.{key} "
                              f"(known: {', '.join(_SUBSTANCE_KEYS)})")
        if not isinstance(value, (int, float)) or isinstance(value, bool) or value < 0:
            raise ConfigError(f"filter rules: substance.{key} must be a number >= 0")
        substance[key] = value
    classes = raw.get("classes", {})
    for name, pats in classes.items():
        if not isinstance(pats, list) or not all(isinstance(p, str) for p in pats):
            raise ConfigError(f"filter rules: classes.{name} must be a list of glob strings")
    trivial = raw.get("trivial_alone", {}).get("classes", [c for c in classes if c != "code"])
    unknown = set(trivial) - set(classes)
    if unknown:
        raise ConfigError(f"filter rules: trivial_alone names unknown classes {sorted(unknown)}")
    kinds = raw.get("change_kinds", {})
    for key in kinds:
        if key not in _KINDS:
            raise ConfigError(f"filter rules: unknown key change_kinds.{key}")
    bots = raw.get("bots", {}).get("patterns", [])
    # [chains] does not change any PR's decision: it has its own version (chains.py)
    canonical = json.dumps({k: v for k, v in raw.items() if k != "chains"}, sort_keys=True,
                           default=str)
    version = hashlib.sha256((FILTER_CODE_VERSION + canonical).encode()).hexdigest()[:12]
    return Rules(
        raw=raw, version=version, size=size, substance=substance,
        classify=PathClassifier(classes),
        trivial_alone=frozenset(trivial),
        titles=_compile_codes(raw.get("titles", {}), "titles"),
        labels=_compile_codes(raw.get("labels", {}), "labels"),
        bots=_compile_any(bots, "bots.patterns") if bots else None,
        kinds=frozenset(k for k in _KINDS if kinds.get(k, True)),
        sources=sources, chains=chain_rules(raw.get("chains")))


def _compile_codes(section: dict, where: str) -> tuple[tuple[str, re.Pattern], ...]:
    out = []
    for code, patterns in section.items():
        if code not in DROP_CODES:
            raise ConfigError(f"filter rules: {where}.{code} is not a known reason code "
                              f"({', '.join(sorted(DROP_CODES))})")
        out.append((code, _compile_any(patterns, f"{where}.{code}")))
    return tuple(out)


def _compile_any(patterns: list[str], where: str) -> re.Pattern:
    try:
        return re.compile("|".join(f"(?:{p})" for p in patterns), re.IGNORECASE)
    except re.error as exc:
        raise ConfigError(f"filter rules: bad regular expression in {where}: {exc}") from None


# ---------------------------------------------------------------- analysis

@dataclass(slots=True)
class Verdict:
    """One rule's verdict on one PR, for `synth explain`."""

    rule: str
    fired: bool
    code: str | None
    detail: str


class _Verdicts(list):
    """Verdicts as the rules are checked. Deciding (``every=False``) keeps only the rules
    that fired and never writes the others' details: explaining keeps every one."""

    def __init__(self, every: bool):
        super().__init__()
        self.every = every

    def add(self, rule: str, fired: bool, code: str | None, detail: Callable[[], str]) -> None:
        if fired or self.every:
            self.append(Verdict(rule, fired, code, detail()))


def analyze(pr: PullRequest, rules: Rules, full: bool = True) -> tuple[dict, list[Verdict]]:
    """The PR's figures and every rule's verdict. With ``full=False`` (``decide``), the
    patch text is not read when a rule that needs none already drops the PR."""
    files = pr.files
    classes: dict[str, int] = {}
    class_lines: dict[str, int] = {}
    binary = undecodable = truncated = missing = 0
    file_classes: dict[str, str] = {}
    for f in files:
        cls = "assets" if f.binary and rules.classify(f.path) == "code" else rules.classify(f.path)
        file_classes[f.path] = cls
        classes[cls] = classes.get(cls, 0) + 1
        class_lines[cls] = class_lines.get(cls, 0) + f.additions + f.deletions
        binary += f.binary
        undecodable += f.undecodable
        truncated += f.patch_truncated
        if f.patch is None and not f.binary and (f.additions or f.deletions):
            missing += 1
    patch_bytes = sum(f.patch_bytes for f in files)
    changed = pr.additions + pr.deletions
    v = _metadata_verdicts(pr, rules, classes, changed, patch_bytes, truncated, full)
    metrics = {
        "files": pr.changed_files, "additions": pr.additions, "deletions": pr.deletions,
        "changed_lines": changed, "patch_bytes": patch_bytes,
        "code_files": classes.get("code", 0), "code_lines": class_lines.get("code", 0),
        "files_by_class": dict(sorted(classes.items())),
        "lines_by_class": dict(sorted(class_lines.items())), "binary_files": binary,
        "undecodable_files": undecodable, "truncated_files": truncated,
        "patches_missing": missing,
    }
    if full or not any(x.fired for x in v):
        v += _patch_verdicts(pr, rules, file_classes, class_lines, metrics, full)
    metrics["file_classes"] = file_classes
    return metrics, v


def _metadata_verdicts(pr: PullRequest, rules: Rules, classes: dict[str, int], changed: int,
                       patch_bytes: int, truncated: int, every: bool = True) -> list[Verdict]:
    """The rules that need no patch text: author, title, labels, size, file classes."""
    v = _Verdicts(every)
    s = rules.size
    is_bot = pr.author_is_bot or bool(rules.bots and rules.bots.search(pr.author or ""))
    v.add("bots", is_bot, "bot_author", lambda: f"author {pr.author!r}")
    title = pr.title or ""
    for code, rx in rules.titles:
        m = rx.search(title)
        if m or every:  # (names and details only for what is kept)
            v.add(f"titles.{code}", bool(m), code,
                  lambda: f"title matches {m.group(0)!r}" if m else "title does not match")
    for code, rx in rules.labels:
        hit = next((lb for lb in pr.labels if rx.search(lb)), None) if pr.labels else None
        if hit is not None or every:
            v.add(f"labels.{code}", hit is not None, code,
                  lambda: f"label {hit!r}" if hit else f"labels {list(pr.labels)}")
    too_large = (pr.changed_files > s["max_files"] or changed > s["max_changed_lines"]
                 or patch_bytes > s["max_patch_bytes"] or truncated > 0)
    v.add("size.max", too_large, "too_large",
          lambda: f"{pr.changed_files} files (max {s['max_files']}), {changed} lines "
                  f"(max {s['max_changed_lines']}), {patch_bytes} patch bytes "
                  f"(max {s['max_patch_bytes']})")
    v.add("files.present", not pr.files and pr.changed_files == 0, "empty_change",
          lambda: f"{len(pr.files)} files")
    present = set(classes)
    only = None
    if present and present <= rules.trivial_alone:
        only = f"{next(iter(present))}_only" if len(present) == 1 else "no_code"
    v.add("trivial_alone", only is not None, only or "no_code",
          lambda: f"file classes {sorted(present)}")
    return v


def _patch_verdicts(pr: PullRequest, rules: Rules, file_classes: dict[str, str],
                    class_lines: dict[str, int], metrics: dict,
                    every: bool = True) -> list[Verdict]:
    """The rules that read the patch text: substance and change kinds (adds their figures
    to ``metrics``)."""
    files = pr.files
    code_lines = 0
    judged_code = 0  # code lines among files with patch text, not docs (for change kinds)
    sides: list[tuple[list[str], list[str]] | None] = [None] * len(files)
    code_parts = []  # code files' code lines, for the substance analysis
    others = []  # non-code files with patch text: counted only if the code files hold none
    for i, f in enumerate(files):
        cls = file_classes[f.path]
        counted = None
        if f.patch and cls != "docs":
            sides[i] = changed_lines(f.patch)  # split once: counted here, kinds below
            if cls == "code":
                flags = patch_code_flags(f.path, f.patch, sides[i])
                counted = sum(flags[0]) + sum(flags[1])
                code_parts.append(file_lines(f.path, f.patch, sides[i], flags))
                judged_code += counted
            else:
                others.append(i)
        if cls == "code":
            if counted is not None and not f.patch_truncated:
                code_lines += counted
            else:
                code_lines += f.additions + f.deletions
    if judged_code == 0:  # only then do other files' code lines matter (comment_only)
        judged_code = sum(count_code_lines(files[i].path, files[i].patch, sides[i]).code
                          for i in others)
    sub = analyse(code_parts)
    if metrics["patches_missing"] or metrics["truncated_files"]:
        # code without patch text: its lines count as logic, unseen
        sub.logic_lines += sum(f.additions + f.deletions for f in files
                               if file_classes[f.path] == "code"
                               and (f.patch is None or f.patch_truncated))
    metrics["code_lines"] = code_lines
    metrics.update(sub.as_metrics())
    v = _Verdicts(every)
    if metrics["code_files"]:
        v += _substance_verdicts(sub, rules.substance, class_lines.get("tests", 0), every)
    judged = [i for i, f in enumerate(files) if file_classes[f.path] != "docs"]
    k = change_kinds([(files[i].path, files[i].status, files[i].patch, files[i].additions,
                       files[i].deletions) for i in judged], judged_code, [sides[i] for i in judged])
    for kind in sorted(rules.kinds):
        fired = getattr(k, kind)
        if fired or every:
            v.add(f"change_kinds.{kind}", fired, kind, lambda: kind.replace("_", " "))
    return v


def _substance_verdicts(sub, cfg: dict, test_lines: int, every: bool = True) -> list[Verdict]:
    """The rules on how much of a change's code is new logic (see substance.py)."""
    changed = max(1, sub.code_added + sub.code_deleted - sub.syntax_lines)
    tested = test_lines >= cfg["tested_min_test_lines"]
    need = cfg["tested_min_logic_lines"] if tested else cfg["min_logic_lines"]
    branchless = sub.logic_branches == 0 and sub.logic_lines < cfg["branchless_min_logic_lines"]
    low = sub.logic_lines < need or branchless
    few = sub.logic_lines < cfg["max_mechanical_logic"]
    share = cfg["mechanical_share"]
    out = _Verdicts(every)
    out.add("substance.min_logic_lines", low, "too_small",
            lambda: f"{sub.logic_lines} lines of new logic (min {need:g}"
            + (f", as the change brings {test_lines} test lines" if tested else "")
            + (f"; {cfg['branchless_min_logic_lines']:g} as it opens no new branch or "
               "loop" if branchless else "")
            + f"); "
            f"of {sub.code_added} code lines added and {sub.code_deleted} deleted, "
            f"{sub.moved_lines} moved, {sub.renamed_lines} renamed, "
            f"{sub.plumbing_lines} plumbing, {sub.data_lines} literal data, "
            f"{sub.syntax_lines} punctuation")
    removal = ((sub.code_deleted >= cfg["removal_ratio"] * max(1, sub.code_added)
                or sub.logic_deleted >= cfg["removal_ratio"] * max(1, sub.logic_added))
               and sub.logic_added < cfg["min_logic_lines"])
    out.add("substance.removal", removal, "removal",
            lambda: f"{sub.code_deleted} code lines deleted, {sub.code_added} added; "
            f"{sub.logic_deleted} lines of logic deleted, {sub.logic_added} added "
            f"(removal: {cfg['removal_ratio']:g}x as many deleted, code or logic, and "
            f"fewer than {cfg['min_logic_lines']:g} lines of new logic added)")
    for rule, code, n, what in (
            ("substance.moved", "move_only", 2 * sub.moved_lines, "moved"),
            ("substance.renamed", "symbol_rename", 2 * sub.renamed_lines, None),
            ("substance.plumbing", "pass_through", sub.plumbing_lines,
             "declaring or forwarding names, imports, type expressions and annotations"),
            ("substance.data", "data_table", sub.data_lines,
             "literal data: strings and numbers in lists and tables")):
        out.add(rule, n / changed >= share and few, code,
                lambda n=n, what=what: f"{n} of {changed} changed code lines "
                + (what or "renamed (" + ", ".join(f"{a}->{b}" for a, b, _ in sub.renames[:3])
                   + ")")
                + f" (fires at {share:.0%} with fewer than {cfg['max_mechanical_logic']:g} "
                "lines of logic)")
    return out


def worth_patches(pr: PullRequest, rules: Rules) -> bool:
    """The metadata pre-filter a source asks before it fetches a PR's patches: False when a
    rule that needs no patch text drops the PR anyway (a bot, a title or label, too many
    files or lines, only docs or CI files). The PR is decided once, with its patches, by
    ``decide``; this only saves fetching what cannot be kept."""
    if pr.author_is_bot or (rules.bots and rules.bots.search(pr.author or "")):
        return False
    if any(rx.search(pr.title or "") for _, rx in rules.titles):
        return False
    if any(rx.search(lb) for _, rx in rules.labels for lb in pr.labels):
        return False
    s = rules.size
    if pr.changed_files > s["max_files"] or pr.additions + pr.deletions > s["max_changed_lines"]:
        return False
    if not pr.files:
        return pr.changed_files > 0  # the file list is unknown: fetch and see
    classes = {rules.classify(f.path) for f in pr.files}
    return not classes <= rules.trivial_alone


def decide(pr: PullRequest, rules: Rules) -> Decision:
    metrics, verdicts = analyze(pr, rules, full=False)
    codes = [x.code for x in verdicts if x.fired and x.code]
    dropped = sorted(set(codes))  # every rule that fires drops the PR
    info = []
    if metrics["files_by_class"].get("tests"):
        info.append("has_tests")
    if metrics["binary_files"]:
        info.append("binary_files")
    if metrics["undecodable_files"]:
        info.append("non_utf8_patch")
    if metrics["truncated_files"]:
        info.append("patch_truncated")
    if metrics["patches_missing"]:
        info.append("patches_missing")
    kept = not dropped
    metrics = {k: v for k, v in metrics.items() if k != "file_classes"}  # per file: explain only
    reasons = (["substantive"] if kept else dropped) + info
    return Decision(repo=pr.repo, number=pr.number, kept=kept, reasons=tuple(reasons),
                    filter_version=rules.version, metrics=metrics)
