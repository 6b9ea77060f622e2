"""Approved tasks -> JSONL / Parquet, a dataset card and a manifest.

The same approved set gives byte-identical files: records are sorted by task id, keys are
sorted, and the card's date is the newest review, not the time of export.
"""

from __future__ import annotations

import hashlib
import json
import random
from collections import Counter
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path

from . import queue as q
from .errors import ExportError
from .rewrite.guards import scrub

EXPORT_FIELDS = [
    "task_id", "repo", "pr_number", "pr_url", "base_sha", "merge_sha", "merged_at", "license",
    "title", "category", "difficulty", "background", "query", "subtasks", "modified_files",
    "related_files", "flags", "confidence", "judge_score", "rewriter", "model",
    "prompt_version", "revision", "review", "split", "text",
]
PARQUET_COLUMNS = {
    "task_id": "VARCHAR", "repo": "VARCHAR", "pr_number": "INTEGER", "pr_url": "VARCHAR",
    "base_sha": "VARCHAR", "merge_sha": "VARCHAR", "merged_at": "VARCHAR", "license": "VARCHAR",
    "title": "VARCHAR", "category": "VARCHAR", "difficulty": "VARCHAR", "background": "VARCHAR",
    "query": "VARCHAR",
    "subtasks": "STRUCT(title VARCHAR, goal VARCHAR, constraints VARCHAR[], "
                "deliverables VARCHAR[], acceptance_criteria VARCHAR[])[]",
    "modified_files": "VARCHAR[]", "related_files": "VARCHAR[]", "flags": "VARCHAR[]",
    "confidence": "DOUBLE", "judge_score": "DOUBLE", "rewriter": "VARCHAR", "model": "VARCHAR",
    "prompt_version": "VARCHAR", "revision": "INTEGER",
    "review": "STRUCT(approvals INTEGER, reviewers VARCHAR[], last_reviewed_at VARCHAR, notes VARCHAR[])",
    "split": "VARCHAR", "text": "VARCHAR",
}


@dataclass(frozen=True)
class ExportResult:
    count: int
    files: list[Path]
    by_split: dict[str, int]


def load_approved(queue: q.Queue, since: date | None = None,
                  exclude: set[tuple[str, int]] | None = None) -> list[dict]:
    cols, rows = queue.query("SELECT * FROM approved_tasks ORDER BY task_id",
                             wait=queue.busy_timeout)
    _, events = queue.query(
        "SELECT task_id, reviewer, action, note, acted_at FROM review_events "
        "WHERE task_id IN (SELECT task_id FROM approved_tasks) ORDER BY event_id",
        wait=queue.busy_timeout)
    reviews: dict[str, list[tuple]] = {}
    for ev in events:
        reviews.setdefault(ev[0], []).append(ev[1:])
    out = []
    for row in rows:
        t = dict(zip(cols, row))
        if exclude and (t["repo"], t["number"]) in exclude:
            continue
        evs = reviews.get(t["task_id"], [])
        last = max((e[3] for e in evs), default=None)
        if since and (last is None or last.date() < since):
            continue
        approvers = sorted({e[0] for e in evs if e[1] == "approve"})
        out.append(_record(t, approvers, last, [e[2] for e in evs if e[2]]))
    return out


def _record(t: dict, approvers: list[str], last: datetime | None, notes: list[str]) -> dict:
    merged = t.get("merged_at")
    return {
        "task_id": t["task_id"], "repo": t["repo"], "pr_number": t["number"],
        "pr_url": t["pr_url"], "base_sha": t["base_sha"], "merge_sha": t["merge_sha"],
        "merged_at": merged.isoformat() if merged else None, "license": t.get("license"),
        "title": t["title"], "category": t["category"], "difficulty": t["difficulty"],
        "background": scrub(t["background"]), "query": scrub(t["query"]),
        "subtasks": json.loads(t["subtasks"]) if isinstance(t["subtasks"], str) else t["subtasks"],
        "modified_files": list(t["modified_files"] or []),
        "related_files": list(t["related_files"] or []), "flags": list(t["flags"] or []),
        "confidence": t["confidence"], "judge_score": t["judge_score"],
        "rewriter": t["rewriter"], "model": t["model"], "prompt_version": t["prompt_version"],
        "revision": t["revision"],
        "review": {"approvals": len(approvers), "reviewers": approvers,
                   "last_reviewed_at": last.isoformat() if last else None, "notes": notes},
    }


def agencybench_text(r: dict) -> str:
    """A task in AgencyBench's text form."""
    lines = [f"# {r['title']}", "", r["background"].strip(), "", r["query"].strip(), ""]
    for i, st in enumerate(r["subtasks"], 1):
        lines += [f"Subtask {i}: {st['title']}", f"Goal: {st['goal']}", "Constraints:"]
        lines += [f"- {c}" for c in st["constraints"]]
        lines += ["Deliverables:"] + [f"- {d}" for d in st["deliverables"]]
        lines += ["Acceptance Criteria:"] + [f"- {a}" for a in st["acceptance_criteria"]]
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"


def split_by_repo(records: list[dict], test_fraction: float) -> None:
    """Assign whole repositories to train or test (stable for the same set of repos)."""
    repos = sorted({r["repo"] for r in records})
    rng = random.Random(hashlib.sha256("\n".join(repos).encode()).hexdigest())
    rng.shuffle(repos)
    n_test = max(1, round(len(repos) * test_fraction)) if test_fraction > 0 and len(repos) > 1 else 0
    test = set(repos[:n_test])
    for r in records:
        r["split"] = "test" if r["repo"] in test else "train"


def export(queue: q.Queue, out: Path, fmt: str = "jsonl", since: date | None = None,
           test_fraction: float | None = None, style: str | None = None,
           exclude: set[tuple[str, int]] | None = None) -> ExportResult:
    if fmt not in ("jsonl", "parquet"):
        raise ExportError(f"unknown format {fmt!r} (jsonl or parquet)")
    if test_fraction is not None and not 0 <= test_fraction < 1:
        raise ExportError("--split-by-repo takes a test fraction between 0 and 1")
    records = load_approved(queue, since, exclude)
    for r in records:
        r["split"] = "train"
        r["text"] = agencybench_text(r) if style == "agencybench" else None
    if test_fraction:
        split_by_repo(records, test_fraction)
    out.mkdir(parents=True, exist_ok=True)
    files: list[Path] = []
    splits = sorted({r["split"] for r in records}) or ["train"]
    for split in splits:
        part = [r for r in records if r["split"] == split]
        jsonl = out / f"{split}.jsonl"
        _write_jsonl(jsonl, part)
        if fmt == "parquet":
            pq = out / f"{split}.parquet"
            q.jsonl_to_parquet(jsonl, pq, columns=PARQUET_COLUMNS)
            jsonl.unlink()
            files.append(pq)
        else:
            files.append(jsonl)
    card = out / "README.md"
    card.write_text(dataset_card(records, fmt, files), encoding="utf-8")
    files.append(card)
    manifest = out / "manifest.json"
    manifest.write_text(json.dumps(_manifest(files, len(records)), indent=2, sort_keys=True) + "\n",
                        encoding="utf-8")
    files.append(manifest)
    return ExportResult(len(records), files, dict(Counter(r["split"] for r in records)))


def _write_jsonl(path: Path, records: list[dict]) -> None:
    with open(path, "w", encoding="utf-8", newline="\n") as fh:
        for r in records:
            fh.write(json.dumps({k: r.get(k) for k in EXPORT_FIELDS}, ensure_ascii=False,
                                sort_keys=True))
            fh.write("\n")


def _manifest(files: list[Path], count: int) -> dict:
    entries = {f.name: hashlib.sha256(f.read_bytes()).hexdigest() for f in files}
    content = hashlib.sha256("".join(f"{k}:{v}\n" for k, v in sorted(entries.items())).encode())
    return {"records": count, "files": entries, "content_hash": content.hexdigest()}


def dataset_card(records: list[dict], fmt: str, files: list[Path]) -> str:
    newest = max((r["review"]["last_reviewed_at"] or "" for r in records), default="")
    by = lambda key: Counter(r[key] for r in records)  # noqa: E731
    licenses = Counter(r["license"] or "unknown" for r in records)
    lines = [
        "---", "pretty_name: synth long-horizon coding tasks", "task_categories:",
        "- text-generation", "configs:", "- config_name: default", "  data_files:",
    ]
    lines += [f"  - split: {f.stem}\n    path: {f.name}" for f in files]
    lines += ["---", "", "# synth: long-horizon coding tasks from merged pull requests", "",
              f"{len(records)} approved tasks, {fmt.upper()}, as of {newest[:10] or 'n/a'} "
              "(date of the newest review).", "",
              "Each task was rewritten from a merged GitHub pull request into a developer's "
              "request with subtasks (goal, constraints, deliverables, acceptance criteria) and "
              "approved by a human reviewer. `base_sha` is the commit to start from; "
              "`merge_sha` holds the reference solution.", ""]
    for title, counter in (("Repository", by("repo")), ("Category", by("category")),
                           ("Difficulty", by("difficulty")), ("Rewriter", by("rewriter")),
                           ("Split", by("split")), ("Licence", licenses)):
        lines += [f"## By {title.lower()}", "", f"| {title} | Tasks |", "| --- | ---: |"]
        lines += [f"| {k} | {v} |" for k, v in sorted(counter.items(), key=lambda kv: (-kv[1], str(kv[0])))]
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
