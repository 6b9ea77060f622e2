"""Pure evaluation of the filter against hand labels: precision, recall, F1, confusion.

"Positive" means kept by the filter; the truth is the label ``substantive``.
"""

from __future__ import annotations

import csv
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from .errors import ConfigError
from .models import Decision

LABELS = ("trivial", "substantive")
# The labelled set of real PRs (data/labels/real_prs.tsv; filters/RUBRIC.md says how)
LABEL_COLUMNS = ("repo", "number", "commit", "label", "category", "split", "reason")


def find_clone(clones: str | Path, repo: str) -> Path:
    """A repository's clone under ``clones``: DIR/owner+name (with or without a /repo inside,
    as the search tool's fetch lays it out), DIR/owner/name[.git] or DIR/name[.git]."""
    owner, _, name = repo.partition("/")
    base = Path(clones)
    for cand in (base / f"{owner}+{name}" / "repo", base / f"{owner}+{name}",
                 base / owner / f"{name}.git", base / owner / name, base / f"{name}.git",
                 base / name):
        if cand.exists():
            return cand
    raise ConfigError(f"no clone of {repo} under {base} (looked for {owner}+{name}, "
                      f"{owner}/{name}[.git], {name}[.git])")


@dataclass(frozen=True)
class Label:
    repo: str
    number: int
    label: str
    note: str = ""


def read_labels(path: str | Path) -> list[Label]:
    """Rows of repo, pr_number, label (and an optional note), tab-separated, with a header."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read labels {path}: {exc.strerror}") from None
    rows = list(csv.reader(text.splitlines(), delimiter="\t"))
    if not rows:
        raise ConfigError(f"{path} is empty")
    header = [h.strip().lower() for h in rows[0]]
    if header[:3] != ["repo", "pr_number", "label"]:
        raise ConfigError(f"{path}: the first line must be the header repo<TAB>pr_number<TAB>label")
    out = []
    for i, row in enumerate(rows[1:], start=2):
        if not row or not "".join(row).strip() or row[0].startswith("#"):
            continue
        if len(row) < 3:
            raise ConfigError(f"{path}:{i}: expected repo, pr_number and label")
        repo, number, label = row[0].strip(), row[1].strip(), row[2].strip().lower()
        if label not in LABELS:
            raise ConfigError(f"{path}:{i}: label must be trivial or substantive, got {label!r}")
        try:
            n = int(number.lstrip("#"))
        except ValueError:
            raise ConfigError(f"{path}:{i}: pr_number must be a number, got {number!r}") from None
        out.append(Label(repo, n, label, row[3].strip() if len(row) > 3 else ""))
    return out


@dataclass
class EvalReport:
    tp: int = 0
    fp: int = 0
    tn: int = 0
    fn: int = 0
    # reason code -> Counter(label): which codes dropped which kind of PR
    dropped_by_code: dict[str, Counter] = field(default_factory=dict)
    false_positives: list[tuple[str, int, str]] = field(default_factory=list)
    false_negatives: list[tuple[str, int, str]] = field(default_factory=list)

    @property
    def precision(self) -> float:
        return self.tp / (self.tp + self.fp) if self.tp + self.fp else 0.0

    @property
    def recall(self) -> float:
        return self.tp / (self.tp + self.fn) if self.tp + self.fn else 0.0

    @property
    def f1(self) -> float:
        p, r = self.precision, self.recall
        return 2 * p * r / (p + r) if p + r else 0.0

    @property
    def total(self) -> int:
        return self.tp + self.fp + self.tn + self.fn


def evaluate(labels: list[Label], decisions: dict[tuple[str, int], Decision]) -> EvalReport:
    rep = EvalReport()
    for lab in labels:
        d = decisions[(lab.repo, lab.number)]
        truth = lab.label == "substantive"
        if d.kept and truth:
            rep.tp += 1
        elif d.kept:
            rep.fp += 1
            rep.false_positives.append((lab.repo, lab.number, lab.note))
        elif truth:
            rep.fn += 1
            rep.false_negatives.append((lab.repo, lab.number, ",".join(d.reasons)))
        else:
            rep.tn += 1
        if not d.kept:
            for code in d.reasons:
                rep.dropped_by_code.setdefault(code, Counter())[lab.label] += 1
    return rep


def format_report(rep: EvalReport) -> str:
    lines = [
        f"PRs evaluated: {rep.total}",
        f"precision: {rep.precision:.3f}   recall: {rep.recall:.3f}   F1: {rep.f1:.3f}",
        "",
        "                 labelled substantive   labelled trivial",
        f"kept             {rep.tp:>20}   {rep.fp:>16}",
        f"dropped          {rep.fn:>20}   {rep.tn:>16}",
        "",
        "dropped, by reason code      trivial  substantive",
    ]
    for code, c in sorted(rep.dropped_by_code.items(), key=lambda kv: -sum(kv[1].values())):
        lines.append(f"  {code:<26} {c['trivial']:>7}  {c['substantive']:>11}")
    if rep.false_positives:
        lines += ["", "kept but labelled trivial:"]
        lines += [f"  {r}#{n}  {note}" for r, n, note in rep.false_positives]
    if rep.false_negatives:
        lines += ["", "dropped but labelled substantive:"]
        lines += [f"  {r}#{n}  ({codes})" for r, n, codes in rep.false_negatives]
    return "\n".join(lines)
