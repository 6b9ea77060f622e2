"""Approved tasks -> JSONL / Parquet, a dataset card and a manifest.

The records are assembled and written by DuckDB (one query, sorted by task id, written with
one thread), so the same approved set gives byte-identical files, at C speed. The card's date
is the newest review, not the time of export. Task text was scrubbed of secrets when it was
stored (by the rewriters and by `review edit`), so nothing is scrubbed here.
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

SUBTASK_TYPE = ("STRUCT(title VARCHAR, goal VARCHAR, constraints VARCHAR[], deliverables VARCHAR[], "
                "acceptance_criteria VARCHAR[])[]")
NL = "chr(10)"

# the AgencyBench text form of a task, rendered in SQL from the record's columns
_AGENCYBENCH = f"""
    '# ' || title || {NL} || {NL} || trim(background) || {NL} || {NL} || trim(query) || {NL} || {NL} ||
    (SELECT string_agg(
        'Subtask ' || i || ': ' || s.title || {NL} || 'Goal: ' || s.goal || {NL} ||
        'Constraints:' || {NL} || '- ' || array_to_string(s.constraints, {NL} || '- ') || {NL} ||
        'Deliverables:' || {NL} || '- ' || array_to_string(s.deliverables, {NL} || '- ') || {NL} ||
        'Acceptance Criteria:' || {NL} || '- ' || array_to_string(s.acceptance_criteria, {NL} || '- '),
        {NL} || {NL} ORDER BY i)
     FROM (SELECT unnest(subtasks) AS s, generate_subscripts(subtasks, 1) AS i)) || {NL}"""

RECORDS = """
WITH rev AS (
    SELECT task_id,
           count(DISTINCT reviewer) FILTER (WHERE action = 'approve') AS approvals,
           list(DISTINCT reviewer ORDER BY reviewer) FILTER (WHERE action = 'approve') AS reviewers,
           max(acted_at) AS last_reviewed_at,
           list(note ORDER BY event_id) FILTER (WHERE note IS NOT NULL) AS notes
    FROM review_events GROUP BY task_id
), rec AS (
    SELECT t.task_id, t.repo, t.number AS pr_number, t.pr_url, t.base_sha, t.merge_sha,
           strftime(t.merged_at, '%Y-%m-%dT%H:%M:%S') AS merged_at, t.license,
           t.title, t.category, t.difficulty, t.background, t.query,
           CAST(t.subtasks AS {subtask_type}) AS subtasks,
           t.modified_files, t.related_files, t.flags, t.confidence, t.judge_score,
           t.rewriter, t.model, t.prompt_version, t.revision,
           {{'approvals': coalesce(r.approvals, 0),
             'reviewers': coalesce(r.reviewers, []::VARCHAR[]),
             'last_reviewed_at': strftime(r.last_reviewed_at, '%Y-%m-%dT%H:%M:%S'),
             'notes': coalesce(r.notes, []::VARCHAR[])}} AS review,
           CASE WHEN list_contains(?::VARCHAR[], t.repo) THEN 'test' ELSE 'train' END AS split,
           r.last_reviewed_at AS reviewed
    FROM approved_tasks t LEFT JOIN rev r USING (task_id)
    WHERE ({since}) AND NOT list_contains(?::VARCHAR[], t.repo || '#' || t.number)
)
SELECT * EXCLUDE (reviewed), {text} AS text FROM rec
"""


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
    test = []
    if test_fraction:
        _, rows = queue.query("SELECT DISTINCT repo FROM approved_tasks", wait=queue.busy_timeout)
        test = split_repos([r[0] for r in rows], test_fraction)
    sql = RECORDS.format(subtask_type=SUBTASK_TYPE,
                         since="r.last_reviewed_at >= ?::DATE" if since else "?::DATE IS NULL",
                         text=_AGENCYBENCH if style == "agencybench" else "NULL::VARCHAR")
    params = [test, since.isoformat() if since else None,
              sorted(f"{r}#{n}" for r, n in (exclude or ()))]
    out.mkdir(parents=True, exist_ok=True)
    counts = dict(queue.query(f"SELECT split, count(*) FROM ({sql}) GROUP BY split", params,
                              wait=queue.busy_timeout)[1])
    files: list[Path] = []
    for split in sorted(counts) or ["train"]:
        path = out / f"{split}.{fmt}"
        queue.copy_to(f"SELECT * EXCLUDE (split), '{split}' AS split FROM ({sql}) "
                      f"WHERE split = '{split}' ORDER BY task_id", params, path, fmt)
        files.append(path)
    summary = _summary(queue, sql, params)
    card = out / "README.md"
    card.write_text(dataset_card(summary, fmt, files), encoding="utf-8")
    files.append(card)
    manifest = out / "manifest.json"
    manifest.write_text(json.dumps(_manifest(files, sum(counts.values())), indent=2,
                                   sort_keys=True) + "\n", encoding="utf-8")
    files.append(manifest)
    return ExportResult(sum(counts.values()), files, counts)


def _summary(queue: q.Queue, sql: str, params: list) -> dict:
    out: dict = {}
    for key, expr in (("repo", "repo"), ("category", "category"), ("difficulty", "difficulty"),
                      ("rewriter", "rewriter"), ("split", "split"),
                      ("licence", "coalesce(license, 'unknown')")):
        _, rows = queue.query(f"SELECT {expr} AS k, count(*) FROM ({sql}) GROUP BY k "
                              "ORDER BY count(*) DESC, k", params, wait=queue.busy_timeout)
        out[key] = rows
    _, rows = queue.query(f"SELECT count(*), max(review.last_reviewed_at) FROM ({sql})", params,
                          wait=queue.busy_timeout)
    out["count"], out["newest"] = rows[0]
    return out


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
