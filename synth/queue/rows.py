"""A batch as rows: each table a batch writes, as columns (name -> values) ready for Arrow.

Pure: no DuckDB here. JSON columns hold JSON text; timestamps are naive UTC.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from typing import Iterator

from ..models import Batch, Chain, Failure, PullRequest, Repo, Task
from .schema import utcnow

_ZERO = timedelta(0)


def _utc(value: datetime | None) -> datetime | None:
    """Naive UTC, as the TIMESTAMP columns hold it."""
    if value is None or value.tzinfo is None:
        return value
    if value.utcoffset() == _ZERO:
        return value.replace(tzinfo=None)
    return value.astimezone(timezone.utc).replace(tzinfo=None)


def batch_columns(batch: Batch, now: datetime | None = None) -> Iterator[tuple[str, dict[str, list]]]:
    """(table, columns) for each table the batch writes, in TABLES order, built lazily so the
    next table is built while the previous one is written. The big tables (pull_requests,
    pr_files, decisions) are built column by column; JSON columns hold JSON text; timestamps
    are naive UTC."""
    stamp = now or utcnow()  # naive UTC
    run_id = batch.run_id
    if batch.repos:
        yield "repos", _columns_of([_repo_row(r, stamp) for r in _dedupe(batch.repos, lambda r: r.full_name)])
    prs = _dedupe(batch.pull_requests, lambda p: p.key)
    if prs:
        yield "pull_requests", _pr_columns(prs, stamp)
        files = _file_columns(prs)
        if files["repo"]:
            yield "pr_files", files
    decisions = _dedupe(batch.decisions, lambda d: (d.repo, d.number, d.filter_version))
    if decisions:
        n = len(decisions)
        yield "decisions", {
            "repo": [d.repo for d in decisions], "number": [d.number for d in decisions],
            "filter_version": [d.filter_version for d in decisions],
            "kept": [d.kept for d in decisions], "reasons": [list(d.reasons) for d in decisions],
            "metrics": [json.dumps(d.metrics) for d in decisions],
            "decided_at": [stamp] * n, "run_id": [run_id] * n}
    if batch.chain_repos:
        yield "chain_repos", {"repo": sorted(set(batch.chain_repos))}
    if batch.chains:
        yield "chains", _columns_of([_chain_row(c, stamp, run_id)
                                     for c in _dedupe(batch.chains, lambda c: c.chain_id)])
    if batch.tasks:
        yield "tasks", _columns_of([_task_row(t, stamp, run_id)
                                    for t in _dedupe(batch.tasks, lambda t: t.task_id)])
    if batch.failures:
        yield "failures", _columns_of([_failure_row(f, stamp, run_id) for f in _dedupe(
            batch.failures, lambda f: (f.stage, f.repo or "", f.number or 0))])
    if batch.cursors:
        yield "cursors", _columns_of([
            {"repo": c.repo, "source": c.source, "watermark": c.watermark, "cursor": c.cursor,
             "state": json.dumps(c.state), "updated_at": stamp}
            for c in _dedupe(batch.cursors, lambda c: (c.repo, c.source))])
    if batch.run:
        run = dict(batch.run)
        for key in ("counts", "errors"):
            if not isinstance(run.get(key), (str, type(None))):
                run[key] = json.dumps(run[key])
        yield "runs", _columns_of([run])
    if batch.resolved:
        yield "resolved", _columns_of([{"stage": st, "repo": r, "number": n}
                                       for st, r, n in sorted(set(batch.resolved))])


def _columns_of(items: list[dict]) -> dict[str, list]:
    return {name: [r.get(name) for r in items] for name in items[0]}


def _pr_columns(prs: list[PullRequest], stamp) -> dict[str, list]:
    n = len(prs)
    return {
        "repo": [p.repo for p in prs], "number": [p.number for p in prs],
        "title": [p.title for p in prs], "body": [p.body for p in prs],
        "author": [p.author for p in prs], "author_is_bot": [p.author_is_bot for p in prs],
        "merged_at": [_utc(p.merged_at) for p in prs],
        "base_sha": [p.base_sha for p in prs], "merge_sha": [p.merge_sha for p in prs],
        "head_sha": [p.head_sha for p in prs], "url": [p.url for p in prs],
        "labels": [list(p.labels) for p in prs],
        "linked_issues": [json.dumps([{"number": i.number, "title": i.title, "body": i.body}
                                      for i in p.linked_issues]) if p.linked_issues else "[]"
                          for p in prs],
        "additions": [p.additions_total if p.additions_total is not None
                      else sum([f.additions for f in p.files]) for p in prs],
        "deletions": [p.deletions_total if p.deletions_total is not None
                      else sum([f.deletions for f in p.files]) for p in prs],
        "changed_files": [p.changed_files_total if p.changed_files_total is not None
                          else len(p.files) for p in prs],
        "source": [p.source for p in prs],
        "first_seen_at": [stamp] * n, "updated_at": [stamp] * n,
        "head_ref": [p.head_ref for p in prs], "base_ref": [p.base_ref for p in prs],
    }


_FILE_FIELDS = ("path", "old_path", "status", "additions", "deletions", "binary", "patch",
                "patch_bytes", "patch_truncated", "undecodable", "old_mode", "new_mode")
_FILE_COLUMNS = ("path", "old_path", "status", "additions", "deletions", "is_binary", "patch",
                 "patch_bytes", "patch_truncated", "undecodable", "old_mode", "new_mode")


def _file_columns(prs: list[PullRequest]) -> dict[str, list]:
    repo: list = []
    number: list = []
    flat: list = []
    for p in prs:
        files = p.files
        if len(files) > 1 and len({f.path for f in files}) != len(files):
            seen: set[str] = set()  # a path twice: the first one wins
            files = tuple(f for f in files if not (f.path in seen or seen.add(f.path)))
        k = len(files)
        repo += [p.repo] * k
        number += [p.number] * k
        flat += files
    return {"repo": repo, "number": number,
            **{col: [getattr(f, field) for f in flat] for col, field in zip(_FILE_COLUMNS, _FILE_FIELDS)}}


def _dedupe(items, key):
    seen: dict = {}
    for item in items:
        seen[key(item)] = item  # the last one wins
    return list(seen.values())


def _repo_row(r: Repo, stamp: str) -> dict:
    return {"repo": r.full_name, "owner": r.owner, "name": r.name, "stars": r.stars,
            "language": r.language, "license": r.license, "default_branch": r.default_branch,
            "archived": r.archived, "fork": r.fork, "source": r.source,
            "first_seen_at": stamp, "updated_at": stamp}


def _chain_row(c: Chain, stamp, run_id: str | None) -> dict:
    return {"chain_id": c.chain_id, "repo": c.repo, "members": list(c.members),
            "links": json.dumps([{"earlier": lk.earlier, "later": lk.later, "kind": lk.kind,
                                  "detail": lk.detail} for lk in c.links]),
            "link_kinds": sorted({lk.kind for lk in c.links}), "kept": c.kept,
            "reasons": list(c.reasons), "figures": json.dumps(c.figures, default=str),
            "first_merged_at": _utc(c.first_merged_at), "last_merged_at": _utc(c.last_merged_at),
            "rules_version": c.rules_version, "detected_at": stamp, "run_id": run_id}


def _reference_columns(t: Task) -> dict:
    ref = t.reference
    members = list(t.members) or [t.provenance.pr_number]
    if ref is None:
        return {"kind": t.kind, "members": members, "chain_id": t.chain_id, "patch": None,
                "test_patch": None, "tests_added": None, "applicable": None,
                "apply_issues": None, "stages": None}
    stages = json.dumps([{"number": s.number, "base_commit": s.base_commit,
                          "merge_commit": s.merge_commit, "patch": s.patch,
                          "test_patch": s.test_patch, "tests_added": list(s.tests_added),
                          "applicable": s.applicable, "issues": list(s.issues)}
                         for s in ref.stages]) if ref.stages else None
    return {"kind": t.kind, "members": members, "chain_id": t.chain_id, "patch": ref.patch,
            "test_patch": ref.test_patch, "tests_added": list(ref.tests_added),
            "applicable": ref.applicable, "apply_issues": list(ref.issues), "stages": stages}


def _task_row(t: Task, stamp: str, run_id: str | None) -> dict:
    s = t.spec
    return {
        "task_id": t.task_id, "repo": t.provenance.repo, "number": t.provenance.pr_number,
        "title": s.title, "category": s.category, "background": s.background, "query": s.query,
        "subtasks": json.dumps([st.model_dump() for st in s.subtasks]),
        "modified_files": s.modified_files, "related_files": s.related_files,
        "difficulty": s.difficulty, "flags": s.flags, "confidence": s.confidence,
        "rewriter": t.rewriter, "model": t.model, "prompt_version": t.prompt_version,
        "status": "pending", "judge_score": t.judge_score,
        "judge": json.dumps(t.judge) if t.judge is not None else None,
        "prompt_tokens": t.usage.prompt_tokens, "completion_tokens": t.usage.completion_tokens,
        "cost_usd": t.usage.cost_usd, "revision": 0, "created_at": stamp, "updated_at": stamp,
        "run_id": run_id, "pr_url": t.provenance.pr_url, **_reference_columns(t),
    }


def _failure_row(f: Failure, stamp: str, run_id: str | None) -> dict:
    return {"stage": f.stage, "repo": f.repo or "", "number": f.number or 0, "reason": f.reason,
            "message": f.message, "detail": f.detail[:4000], "transient": f.transient,
            "attempts": 1, "first_at": stamp, "last_at": stamp, "run_id": run_id,
            "resolved": False}
