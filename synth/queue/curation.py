"""Curation: curator actions on tasks (select, approve/reject/needs-edit/skip, edit, with an
audit log), reviewer ratings, and near-duplicate flags.

Every action is first appended to the review journal (journal.py), then applied with every
other journaled action, in the order taken, by whichever process next writes the queue: this
one at once when the file is free, else a run's writer between batches or the next command.
An applied action changes status and appends to review_events in the same transaction, with
the time the curator acted. Status in
the tasks table is the truth: a curator who sets it with a raw UPDATE is respected, and the
next action records that status as ``status_before``.

With ``reviews_required`` N > 1, an approval only makes a task ``approved`` once N distinct
reviewers' latest action on it is an approval; until then it stays ``pending``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from typing import TYPE_CHECKING

from ..errors import QueueBusy, ReviewError, SQLError, Stopped
from ..models import ACTION_STATUS, DedupeResult
from .journal import JournalRecord

if TYPE_CHECKING:
    from .store import Queue


APPLY_WAIT = 5.0  # seconds a review action waits for the file before it waits in the journal


@dataclass(frozen=True)
class ReviewResult:
    action: str
    changed: int  # tasks whose status changed
    recorded: int  # actions recorded
    task_ids: list[str]
    journaled: bool = False  # recorded in the journal; applied when the queue is free



def select_task_ids(queue: "Queue", where: str | None, ids: list[str]) -> list[str]:
    if bool(where) == bool(ids):
        raise ReviewError("name the tasks either with --where \"SQL predicate\" or with task "
                          "ids, not both and not neither")
    if where:
        try:
            _, rows = queue.query(f"SELECT task_id FROM tasks WHERE ({where}) ORDER BY task_id",
                                  wait=queue.busy_timeout)
        except SQLError as exc:
            raise ReviewError(f"--where is not a valid predicate over the tasks table: "
                              f"{exc.message.removeprefix('SQL error: ')}") from None
        return [r[0] for r in rows]
    _, rows = queue.query("SELECT task_id FROM tasks WHERE task_id IN (SELECT unnest(?::VARCHAR[]))",
                          [ids], wait=queue.busy_timeout)
    found = {r[0] for r in rows}
    missing = [i for i in ids if i not in found]
    if missing:
        raise ReviewError(f"no task with id {', '.join(missing[:5])}"
                          + (f" (and {len(missing) - 5} more)" if len(missing) > 5 else ""))
    return list(dict.fromkeys(ids))


def apply_action(queue: "Queue", action: str, task_ids: list[str], reviewer: str,
                 note: str | None = None, reviews_required: int = 1,
                 wait: float = APPLY_WAIT) -> ReviewResult:
    """Record a review action on tasks: journaled first (never lost), then applied with
    every other journaled action if the file can be had within ``wait`` seconds; else the
    next process that writes the queue applies it (ReviewResult.journaled)."""
    if action not in ACTION_STATUS:
        raise ReviewError(f"unknown action {action!r} ({', '.join(ACTION_STATUS)})")
    if not reviewer or not reviewer.strip():
        raise ReviewError("--reviewer NAME is required: every action is recorded with who took it")
    records = queue.journal.append([JournalRecord(tid, reviewer.strip(), action, note=note,
                                                  reviews_required=reviews_required)
                                    for tid in task_ids])
    applied = apply_now(queue, wait)
    if applied is None:
        return ReviewResult(action, 0, len(task_ids), task_ids, journaled=True)
    changed = sum(1 for r in records if applied.get(r.journal_id))
    return ReviewResult(action, changed, len(task_ids), task_ids)


def apply_now(queue: "Queue", wait: float = APPLY_WAIT) -> dict[str, bool] | None:
    """Apply the journal if the file can be had for writing within ``wait`` seconds:
    journal id -> whether the task's status changed; None when the file stayed busy."""
    try:
        with queue.connect(wait=wait) as con:
            return apply_journal(queue, con)
    except (QueueBusy, Stopped):
        return None


def apply_journal(queue: "Queue", con) -> dict[str, bool]:
    """Every journaled action, in the order taken, in one transaction (an action already in
    review_events is skipped), then the journal emptied: journal id -> status changed."""
    if not queue.journal.pending():
        return {}
    with queue.journal.locked():
        records = queue.journal.read()
        if not records:
            return {}
        done = {r[0] for r in con.execute(
            "SELECT journal_id FROM review_events WHERE journal_id IN (SELECT unnest(?::VARCHAR[]))",
            [[r.journal_id for r in records]]).fetchall()}
        out: dict[str, bool] = {}
        con.execute("BEGIN TRANSACTION")
        try:
            for r in records:
                if r.journal_id in done:
                    continue
                out[r.journal_id] = (_apply_edit(con, r) if r.action == "edit"
                                     else _apply_verdict(con, r))
            con.execute("COMMIT")
        except BaseException:
            con.execute("ROLLBACK")
            raise
        queue.journal.clear()
    return out


def _apply_verdict(con, r: JournalRecord) -> bool:
    row = con.execute("SELECT status FROM tasks WHERE task_id = ?", [r.task_id]).fetchone()
    if row is None:  # the id was checked when the curator acted; tasks are never deleted
        return False
    before = row[0]
    after = ACTION_STATUS[r.action]
    if r.action == "approve" and r.reviews_required > 1:
        approvers = con.execute(
            "SELECT count(*) FROM (SELECT reviewer, arg_max(action, event_id) AS last "
            "FROM review_events WHERE task_id = ? AND reviewer <> ? GROUP BY reviewer) "
            "WHERE last = 'approve'", [r.task_id, r.reviewer]).fetchone()[0] + 1
        if approvers < r.reviews_required:
            after = "pending" if before in ("pending", "approved") else before
    _event(con, r, before, after)
    if after != before:
        con.execute("UPDATE tasks SET status = ?, updated_at = ? WHERE task_id = ?",
                    [after, r.acted, r.task_id])
    return after != before


def _event(con, r: JournalRecord, before: str, after: str) -> None:
    con.execute("INSERT INTO review_events (task_id, reviewer, action, note, status_before, "
                "status_after, acted_at, journal_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                [r.task_id, r.reviewer, r.action, r.note, before, after, r.acted, r.journal_id])


# ---------------------------------------------------------------- list, show, edit

LIST_COLUMNS = ("task_id", "repo", "number", "title", "category", "difficulty", "status",
                "judge_score", "confidence", "rewriter", "dup_of")


def list_tasks(queue: "Queue", where: str | None = None, limit: int = 50) -> tuple[list[str], list[tuple]]:
    """Tasks best first: those of review_queue (pending, not flagged trivial or not_code, no
    superseded chain), or with ``where`` any task of the tasks table it selects."""
    sql = (f"SELECT {', '.join(LIST_COLUMNS)} FROM "
           + (f"tasks WHERE ({where})" if where else "review_queue")
           + " ORDER BY judge_score DESC NULLS LAST, confidence DESC NULLS LAST, created_at, task_id"
           + f" LIMIT {int(limit)}")
    try:
        return queue.query(sql, wait=queue.busy_timeout)
    except SQLError as exc:
        raise ReviewError(f"--where is not a valid predicate over the tasks table: "
                          f"{exc.message.removeprefix('SQL error: ')}") from None


def show_task(queue: "Queue", task_id: str) -> dict:
    cols, rows = queue.query("SELECT t.*, p.url AS pr_url, p.base_sha, p.merge_sha FROM tasks t "
                             "JOIN pull_requests p USING (repo, number) WHERE t.task_id = ?",
                             [task_id], wait=queue.busy_timeout)
    if not rows:
        raise ReviewError(f"no task with id {task_id}")
    task = dict(zip(cols, rows[0]))
    _, drows = queue.query("SELECT kept, reasons, filter_version FROM candidates "
                           "WHERE repo = ? AND number = ?", [task["repo"], task["number"]])
    members = list(task.get("members") or [task["number"]])
    _, files = queue.query("SELECT path, status, additions, deletions FROM pr_files "
                           "WHERE repo = ? AND list_contains(?::INTEGER[], number) "
                           "ORDER BY list_position(?::INTEGER[], number), path",
                           [task["repo"], members, members])
    # a chain task and its members' own tasks (and other tasks over the same PRs) are
    # related, not near-duplicates: the curator sees them side by side
    _, related = queue.query("SELECT task_id, coalesce(kind, 'pr'), coalesce(members, [number]), "
                             "status, title FROM tasks WHERE repo = ? AND task_id <> ? AND "
                             "list_has_any(coalesce(members, [number]), ?::INTEGER[]) "
                             "ORDER BY kind DESC, number, task_id",
                             [task["repo"], task_id, members])
    task["related"] = related
    _, events = queue.query("SELECT acted_at, reviewer, action, status_before, status_after, note "
                            "FROM review_events WHERE task_id = ? ORDER BY event_id", [task_id])
    task["decision"] = dict(zip(("kept", "reasons", "filter_version"), drows[0])) if drows else None
    task["files"] = files
    task["events"] = events
    return task


EDITABLE = ("title", "category", "background", "query", "subtasks", "modified_files",
            "related_files", "difficulty", "flags", "confidence")


def task_content(task: dict) -> dict:
    """The editable task fields as a TaskSpec-shaped dict."""
    out = {k: task[k] for k in EDITABLE}
    if isinstance(out["subtasks"], str):
        out["subtasks"] = json.loads(out["subtasks"])
    for k in ("modified_files", "related_files", "flags"):
        out[k] = list(out[k] or [])
    return out


def save_edit(queue: "Queue", task_id: str, edited_text: str, editor: str,
              note: str | None = None) -> int | None:
    """Validate an edited task (JSON) and record it as a new revision, keeping the one it
    replaces in task_revisions (through the journal, like every review action). Returns the
    task's revision now, or None when the edit waits in the journal."""
    from pydantic import ValidationError
    from ..models import TaskSpec
    from ..rewrite.guards import scrub_spec
    try:
        data = json.loads(edited_text)
    except ValueError as exc:
        raise ReviewError(f"the edited task is not valid JSON: {exc}") from None
    try:
        spec = scrub_spec(TaskSpec.model_validate(data))
    except ValidationError as exc:
        errs = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()[:8])
        raise ReviewError(f"the edited task does not validate: {errs}") from None
    if not editor or not editor.strip():
        raise ReviewError("--reviewer NAME is required: every edit is recorded with who made it")
    if queue.path.exists():
        _, rows = queue.query("SELECT 1 FROM tasks WHERE task_id = ?", [task_id],
                              wait=queue.busy_timeout)
        if not rows:
            raise ReviewError(f"no task with id {task_id}")
    queue.journal.append([JournalRecord(task_id, editor.strip(), "edit", note=note,
                                        content=spec.model_dump())])
    if apply_now(queue) is None:
        return None
    _, rows = queue.query("SELECT revision FROM tasks WHERE task_id = ?", [task_id],
                          wait=queue.busy_timeout)
    return rows[0][0] if rows else None


def _apply_edit(con, r: JournalRecord) -> bool:
    """A new revision of the task (the one it replaces kept in task_revisions); an edit of a
    needs_edit task puts it back to pending. Returns whether the status changed."""
    row = con.execute(f"SELECT revision, status, {', '.join(EDITABLE)} FROM tasks "
                      "WHERE task_id = ?", [r.task_id]).fetchone()
    if row is None:
        return False
    revision, status = row[0], row[1]
    old = task_content(dict(zip(EDITABLE, row[2:])))
    new = r.content or {}
    if new == old:
        return False
    now = r.acted
    con.execute("INSERT OR IGNORE INTO task_revisions VALUES (?, ?, ?, ?, ?, ?)",
                [r.task_id, revision, json.dumps(old), None, None, now])
    con.execute(
        "UPDATE tasks SET title = ?, category = ?, background = ?, query = ?, subtasks = ?, "
        "modified_files = ?, related_files = ?, difficulty = ?, flags = ?, confidence = ?, "
        "revision = ?, updated_at = ? WHERE task_id = ?",
        [new["title"], new["category"], new["background"], new["query"],
         json.dumps(new["subtasks"]), new["modified_files"], new["related_files"],
         new["difficulty"], new["flags"], new["confidence"], revision + 1, now, r.task_id])
    con.execute("INSERT INTO task_revisions VALUES (?, ?, ?, ?, ?, ?)",
                [r.task_id, revision + 1, json.dumps(new), r.reviewer, r.note, now])
    con.execute("DELETE FROM task_signatures WHERE task_id = ?", [r.task_id])
    after = "pending" if status == "needs_edit" else status  # edited: back for review
    if after != status:
        con.execute("UPDATE tasks SET status = ? WHERE task_id = ?", [after, r.task_id])
    _event(con, r, status, after)
    return after != status


def ratings(queue: "Queue") -> dict[str, dict[str, str]]:
    """Each reviewer's latest verdict per task: {task_id: {reviewer: action}}."""
    _, rows = queue.query(
        "SELECT task_id, reviewer, arg_max(action, event_id) FROM review_events "
        "WHERE action IN ('approve', 'reject', 'needs-edit', 'skip') GROUP BY task_id, reviewer",
        wait=queue.busy_timeout)
    out: dict[str, dict[str, str]] = {}
    for task_id, reviewer, action in rows:
        out.setdefault(task_id, {})[reviewer] = action
    return out


# ---------------------------------------------------------------- near-duplicates

def dedupe_tasks(queue: "Queue", threshold: float = 0.8):
    """Sign tasks that have no MinHash signature yet, then flag every task whose query or
    patch is a near-copy of an older task's. Signatures are stored, so a run pays only for
    its new tasks."""
    from ..dedupe import shingles, signature, twins_from_signatures
    from ..diffs import changed_lines
    from ..rewrite.template import distinctive
    res = DedupeResult()
    if not queue.path.exists():
        return res
    with queue.connect(wait=queue.busy_timeout) as con:
        todo = con.execute(
            "SELECT t.task_id, t.query, t.repo, coalesce(t.members, [t.number]) FROM tasks t "
            "WHERE NOT EXISTS (SELECT 1 FROM task_signatures s WHERE s.task_id = t.task_id)"
        ).fetchall()
        patches: dict[tuple[str, int], list[str]] = {}
        if todo:
            rows = con.execute(
                "SELECT f.repo, f.number, f.patch FROM pr_files f JOIN (SELECT DISTINCT repo, "
                "unnest(coalesce(members, [number])) AS number FROM tasks t WHERE NOT EXISTS ("
                "SELECT 1 FROM task_signatures s WHERE s.task_id = t.task_id)) "
                "USING (repo, number) WHERE f.patch IS NOT NULL").fetchall()
            for repo, number, patch in rows:
                patches.setdefault((repo, number), []).extend(changed_lines(patch)[0])
        new_rows = []
        for task_id, query, repo, members in todo:  # a chain: all its PRs' patches
            new_rows.append((task_id, "query", signature(shingles(distinctive(query)))))
            new_rows.append((task_id, "patch", signature(shingles("\n".join(
                line for n in members for line in patches.get((repo, n), []))))))
        con.execute("BEGIN TRANSACTION")
        try:
            if new_rows:
                con.executemany("INSERT OR REPLACE INTO task_signatures VALUES (?, ?, ?)",
                                [[t, k, list(s) if s else None] for t, k, s in new_rows])
            res.signed = len(todo)
            best: dict[str, tuple[str, str, float]] = {}
            # a chain task and its members' tasks are related (review show lists them side
            # by side), never near-duplicates: tasks are compared within their kind
            for kind, task_kind in (("query", "pr"), ("patch", "pr"), ("query", "chain"),
                                    ("patch", "chain")):
                items = con.execute(
                    "SELECT s.task_id, s.sig FROM task_signatures s JOIN tasks t USING (task_id) "
                    "LEFT JOIN pull_requests p ON p.repo = t.repo AND p.number = t.number "
                    "WHERE s.kind = ? AND coalesce(t.kind, 'pr') = ? "
                    "ORDER BY p.merged_at NULLS LAST, t.created_at, t.task_id",
                    [kind, task_kind]).fetchall()
                for tw in twins_from_signatures(items, threshold):
                    if tw.item not in best or tw.similarity > best[tw.item][2]:
                        best[tw.item] = (tw.twin_of, kind, tw.similarity)
            con.execute("UPDATE tasks SET dup_of = NULL, dup_kind = NULL, dup_similarity = NULL "
                        "WHERE dup_of IS NOT NULL")
            if best:
                con.executemany("UPDATE tasks SET dup_of = ?, dup_kind = ?, dup_similarity = ? "
                                "WHERE task_id = ?", [[a, k, s, t] for t, (a, k, s) in best.items()])
            con.execute("COMMIT")
        except BaseException:
            con.execute("ROLLBACK")
            raise
        for _, kind, _ in best.values():
            res.flagged[kind] = res.flagged.get(kind, 0) + 1
    return res
