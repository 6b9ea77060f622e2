"""Approved tasks -> JSONL / Parquet, a dataset card and a manifest.

The records are assembled and written by DuckDB (queue/exports.py), so the same approved set
gives byte-identical files. The card's date is the newest review, not the time of export.
Task text was scrubbed of secrets when it was stored (by the rewriters and by `review edit`),
so nothing is scrubbed here.
"""

from __future__ import annotations

import hashlib
import json
import random
from dataclasses import dataclass
from datetime import date
from pathlib import Path

from . import queue as q
from .errors import ExportError
from .queue.exports import Records, approved_repos


@dataclass(frozen=True)
class ExportResult:
    count: int
    files: list[Path]
    by_split: dict[str, int]


def split_repos(repos: list[str], test_fraction: float) -> list[str]:
    """Whole repositories for the test split (stable for the same set of repos)."""
    repos = sorted(repos)
    if not test_fraction or len(repos) < 2:
        return []
    rng = random.Random(hashlib.sha256("\n".join(repos).encode()).hexdigest())
    rng.shuffle(repos)
    return sorted(repos[:max(1, round(len(repos) * test_fraction))])


def export(queue: q.Queue, out: Path, fmt: str = "jsonl", since: date | None = None,
           test_fraction: float | None = None, style: str | None = None,
           exclude: set[tuple[str, int]] | None = None) -> ExportResult:
    if fmt not in ("jsonl", "parquet"):
        raise ExportError(f"unknown format {fmt!r} (jsonl or parquet)")
    if test_fraction is not None and not 0 <= test_fraction < 1:
        raise ExportError("--split-by-repo takes a test fraction between 0 and 1")
    test = split_repos(approved_repos(queue), test_fraction) if test_fraction else []
    records = Records(test, since, exclude, style)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ExportError(f"cannot create the export folder {out}: {exc.strerror}") from None
    counts = records.counts(queue)
    files: list[Path] = []
    for split in sorted(counts) or ["train"]:
        path = out / f"{split}.{fmt}"
        records.write(queue, split, path, fmt)
        files.append(path)
    summary = records.summary(queue)
    card = out / "README.md"
    manifest = out / "manifest.json"
    try:
        card.write_text(dataset_card(summary, fmt, files), encoding="utf-8")
        files.append(card)
        manifest.write_text(json.dumps(_manifest(files, sum(counts.values())), indent=2,
                                       sort_keys=True) + "\n", encoding="utf-8")
    except OSError as exc:
        raise ExportError(f"cannot write the export's card or manifest in {out}: "
                          f"{exc.strerror}") from None
    files.append(manifest)
    return ExportResult(sum(counts.values()), files, counts)


def _manifest(files: list[Path], count: int) -> dict:
    entries = {f.name: hashlib.sha256(f.read_bytes()).hexdigest() for f in files}
    content = hashlib.sha256("".join(f"{k}:{v}\n" for k, v in sorted(entries.items())).encode())
    return {"records": count, "files": entries, "content_hash": content.hexdigest()}


def dataset_card(summary: dict, fmt: str, files: list[Path]) -> str:
    newest = summary["newest"] or ""
    lines = [
        "---", "pretty_name: synth long-horizon coding tasks", "task_categories:",
        "- text-generation", "configs:", "- config_name: default", "  data_files:",
    ]
    lines += [f"  - split: {f.stem}\n    path: {f.name}" for f in files]
    lines += ["---", "", "# synth: long-horizon coding tasks from merged pull requests", "",
              f"{summary['count']} approved tasks, {fmt.upper()}, as of {newest[:10] or 'n/a'} "
              "(date of the newest review).", "",
              "Each task was rewritten from a merged GitHub pull request into a developer's "
              "request with subtasks (goal, constraints, deliverables, acceptance criteria) and "
              "approved by a human reviewer. `base_sha` is the commit to start from; "
              "`merge_sha` holds the reference solution.", ""]
    for title, key in (("Repository", "repo"), ("Category", "category"),
                       ("Difficulty", "difficulty"), ("Rewriter", "rewriter"),
                       ("Split", "split"), ("Licence", "licence")):
        lines += [f"## By {title.lower()}", "", f"| {title} | Tasks |", "| --- | ---: |"]
        lines += [f"| {k} | {v} |" for k, v in summary[key]]
        lines.append("")
    lines += ["## Schema", "", "| Field | Meaning |", "| --- | --- |"]
    lines += [f"| `{name}` | {meaning} |" for name, meaning in FIELD_DOCS.items()]
    lines += ["", "## Licence", "",
              "Each record carries its source repository's licence (`license`, an SPDX id when "
              "known). The task text is derived from that repository's pull request; use each "
              "record under the terms of its repository's licence. Tasks written by the offline "
              "template rewriter have `rewriter = \"template\"` and no `model`.", ""]
    return "\n".join(lines)


FIELD_DOCS = {
    "task_id": "stable id: hash of (repo, PR number, prompt version, rewriter, model)",
    "repo": "source repository, owner/name",
    "pr_number": "pull request number", "pr_url": "pull request URL",
    "base_sha": "commit the task starts from (the PR's base)",
    "merge_sha": "commit holding the merged change (reference solution)",
    "merged_at": "when the PR was merged (UTC)", "license": "repository licence (SPDX id)",
    "title": "task title", "category": "task category", "difficulty": "easy, medium or hard",
    "background": "context a developer would give", "query": "the whole request",
    "subtasks": "2-6 subtasks: title, goal, constraints, deliverables, acceptance_criteria",
    "modified_files": "files the reference change modifies",
    "related_files": "files or folders worth reading", "flags": "rewriter's flags",
    "confidence": "rewriter's confidence (0-1)", "judge_score": "judge score when judged",
    "rewriter": "template (offline) or llm", "model": "the LLM used, if any",
    "prompt_version": "prompt template version", "revision": "curator edits (0: none)",
    "review": "approvals, reviewers, last review time, notes",
    "split": "train or test (whole repositories per split)",
    "text": "the task in AgencyBench text form, with --style agencybench",
}
