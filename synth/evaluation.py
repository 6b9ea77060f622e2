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
    commit: str = ""  # the merge or squash commit the PR's change is taken from
    category: str = ""
    split: str = ""  # tune | heldout


def read_labels(path: str | Path) -> list[Label]:
    """Tab-separated rows with a header: either repo, pr_number, label[, note], or the
    labelled-set form of LABEL_COLUMNS (repo, number, commit, label, category, split,
    reason)."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read labels {path}: {exc.strerror}") from None
    rows = list(csv.reader(text.splitlines(), delimiter="\t"))
    if not rows:
        raise ConfigError(f"{path} is empty")
    header = [h.strip().lower() for h in rows[0]]
    if tuple(header[:len(LABEL_COLUMNS)]) == LABEL_COLUMNS:
        return _read_labelled_set(path, rows[1:])
    if header[:3] != ["repo", "pr_number", "label"]:
        raise ConfigError(f"{path}: the first line must be the header repo<TAB>pr_number<TAB>label "
                          f"or {'<TAB>'.join(LABEL_COLUMNS)}")
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


def _read_labelled_set(path, rows: list[list[str]]) -> list[Label]:
    out = []
    for i, row in enumerate(rows, start=2):
        if not row or not "".join(row).strip() or row[0].startswith("#"):
            continue
        if len(row) < len(LABEL_COLUMNS) - 1:
            raise ConfigError(f"{path}:{i}: expected {', '.join(LABEL_COLUMNS)}")
        d = dict(zip(LABEL_COLUMNS, (c.strip() for c in row)))
        if not d["label"]:
            continue  # drawn, not labelled yet
        if d["label"] not in LABELS:
            raise ConfigError(f"{path}:{i}: label must be trivial or substantive, got {d['label']!r}")
        try:
            n = int(d["number"].lstrip("#"))
        except ValueError:
            raise ConfigError(f"{path}:{i}: number must be a number, got {d['number']!r}") from None
        out.append(Label(d["repo"], n, d["label"], d.get("reason", ""), d["commit"],
                         d["category"], d["split"]))
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
    by_repo: dict[str, "EvalReport"] = field(default_factory=dict)

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
        for r in (rep, rep.by_repo.setdefault(lab.repo, EvalReport())):
            _score(r, lab, d)
    return rep


def _score(rep: EvalReport, lab: Label, d: Decision) -> None:
    truth = lab.label == "substantive"
    what = f"[{lab.category}] {lab.note}" if lab.category else lab.note
    if d.kept and truth:
        rep.tp += 1
    elif d.kept:
        rep.fp += 1
        rep.false_positives.append((lab.repo, lab.number, what))
    elif truth:
        rep.fn += 1
        rep.false_negatives.append((lab.repo, lab.number,
                                    ",".join(d.reasons) + (f"; {what}" if what else "")))
    else:
        rep.tn += 1
    if not d.kept:
        for code in d.reasons:
            rep.dropped_by_code.setdefault(code, Counter())[lab.label] += 1


def format_report(rep: EvalReport, title: str = "", list_errors: bool = True) -> str:
    """The figures, and (``list_errors``) every false positive and false negative."""
    lines = [title] if title else []
    lines += [
        f"PRs evaluated: {rep.total}",
        f"precision: {rep.precision:.3f}   recall: {rep.recall:.3f}   F1: {rep.f1:.3f}",
        "",
        "                 labelled substantive   labelled trivial",
        f"kept             {rep.tp:>20}   {rep.fp:>16}",
        f"dropped          {rep.fn:>20}   {rep.tn:>16}",
        "",
    ]
    if len(rep.by_repo) > 1:
        lines += ["per repository                 PRs  subst.  kept  precision  recall     F1"]
        for name, r in sorted(rep.by_repo.items()):
            lines.append(f"  {name:<26} {r.total:>5} {r.tp + r.fn:>7} {r.tp + r.fp:>5} "
                         f"{r.precision:>10.3f} {r.recall:>7.3f} {r.f1:>6.3f}")
        lines.append("")
    lines += [
        "dropped, by reason code      trivial  substantive",
    ]
    for code, c in sorted(rep.dropped_by_code.items(), key=lambda kv: -sum(kv[1].values())):
        lines.append(f"  {code:<26} {c['trivial']:>7}  {c['substantive']:>11}")
    if not list_errors:
        if rep.false_positives or rep.false_negatives:
            lines += ["", f"({len(rep.false_positives)} kept but labelled trivial and "
                      f"{len(rep.false_negatives)} dropped but labelled substantive are not "
                      "listed: a held-out part's errors are for after the rules are final; "
                      "--list-heldout lists them)"]
        return "\n".join(lines)
    if rep.false_positives:
        lines += ["", "kept but labelled trivial:"]
        lines += [f"  {r}#{n}  {note}" for r, n, note in rep.false_positives]
    if rep.false_negatives:
        lines += ["", "dropped but labelled substantive:"]
        lines += [f"  {r}#{n}  ({codes})" for r, n, codes in rep.false_negatives]
    return "\n".join(lines)
