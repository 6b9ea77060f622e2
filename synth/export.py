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
    if style not in (None, "agencybench", "swebench"):
        raise ExportError(f"unknown style {style!r} (agencybench or swebench)")
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
        card.write_text(dataset_card(summary, fmt, files, style), encoding="utf-8")
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


def dataset_card(summary: dict, fmt: str, files: list[Path], style: str | None = None) -> str:
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
              "`merge_sha` holds the reference solution.", "",
              f"{summary.get('chains', 0)} of the tasks are chains: one task over a series of "
              f"related merged PRs ({summary.get('chain_prs', 0)} PRs in all), one subtask per "
              "PR in merge order, each stage with its own base commit and reference change "
              "(`stages`).", "",
              "Every task carries its reference change as execution-based datasets ship it: "
              "`patch` (non-test files) and `test_patch` (test files), git diffs that `git "
              "apply` accepts at the base commit, and `tests_added`, the tests the change adds "
              "or modifies (candidates for fail-to-pass checks, not verified by running them). "
              f"{summary.get('unappliable', 0)} task(s) have a change that cannot be applied "
              "as is (`applicable` false, the reasons in `apply_issues`, and the flag "
              "`unappliable`).", ""]
    if style == "swebench":
        lines += ["Records use SWE-bench's field names (`instance_id` as `owner__name-N`, "
                  "`owner__name-chain-N1-N2-...` for a chain; `FAIL_TO_PASS` and "
                  "`PASS_TO_PASS` as JSON text, as in SWE-bench), with synth's provenance "
                  "beside them.", ""]
    for title, key in (("Repository", "repo"), ("Kind", "kind"), ("Category", "category"),
                       ("Difficulty", "difficulty"), ("Rewriter", "rewriter"),
                       ("Split", "split"), ("Licence", "licence")):
        lines += [f"## By {title.lower()}", "", f"| {title} | Tasks |", "| --- | ---: |"]
        lines += [f"| {k} | {v} |" for k, v in summary[key]]
        lines.append("")
    lines += ["## Schema", "", "| Field | Meaning |", "| --- | --- |"]
    docs = SWEBENCH_DOCS if style == "swebench" else FIELD_DOCS
    lines += [f"| `{name}` | {meaning} |" for name, meaning in docs.items()]
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
    "kind": "pr (one PR) or chain (a series of related PRs)",
    "members": "the task's PRs in merge order",
    "patch": "reference change to non-test files: a git diff that applies at base_sha",
    "test_patch": "reference change to test files: a git diff that applies at base_sha",
    "tests_added": "tests the change adds or modifies, path::name (pytest ids for Python)",
    "applicable": "patch and test_patch apply at the base (false: see apply_issues)",
    "apply_issues": "why not: binary_files, patch_truncated, patches_missing, "
                    "secrets_redacted, stages_do_not_compose, ...",
    "stages": "a chain: per PR its number, base_commit, merge_commit, patch, test_patch, "
              "tests_added, applicable, issues",
    "text": "the task in AgencyBench text form, with --style agencybench",
}

SWEBENCH_DOCS = {
    "instance_id": "owner__name-N (a chain: owner__name-chain-N1-N2-...)",
    "repo": "source repository, owner/name",
    "base_commit": "commit to start from (a chain: its first stage's base)",
    "patch": "reference change to non-test files (git diff at base_commit)",
    "test_patch": "reference change to test files (git diff at base_commit)",
    "problem_statement": "the task's request with its subtasks",
    "hints_text": "the task's background",
    "created_at": "when the (first) PR was merged, UTC",
    "version": "null (set by the harness that builds environments)",
    "environment_setup_commit": "the base commit",
    "FAIL_TO_PASS": "JSON list: tests_added, candidates not yet verified by running them",
    "PASS_TO_PASS": "JSON list: empty",
    "task_id, kind, members, stages, merge_commit, pr_url, license, applicable, "
    "apply_issues, split": "synth's provenance (see the default style)",
}
