"""Curator actions on tasks: select, approve/reject/needs-edit/skip, with an audit log.

Every action changes status and appends to review_events in the same transaction. Status in
the tasks table is the truth: a curator who sets it with a raw UPDATE is respected, and the
next action records that status as ``status_before``.

With ``reviews_required`` N > 1, an approval only makes a task ``approved`` once N distinct
reviewers' latest action on it is an approval; until then it stays ``pending``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone

from .errors import ReviewError, SQLError
from .models import ACTION_STATUS
from .queue import Queue


@dataclass(frozen=True)
class ReviewResult:
    action: str
    changed: int  # tasks whose status changed
    recorded: int  # events appended
    task_ids: list[str]


def select_task_ids(queue: Queue, where: str | None, ids: list[str]) -> list[str]:
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


def apply_action(queue: Queue, action: str, task_ids: list[str], reviewer: str,
                 note: str | None = None, reviews_required: int = 1) -> ReviewResult:
    if action not in ACTION_STATUS:
        raise ReviewError(f"unknown action {action!r} ({', '.join(ACTION_STATUS)})")
    if not reviewer or not reviewer.strip():
        raise ReviewError("--reviewer NAME is required: every action is recorded with who took it")
    now = datetime.now(timezone.utc).replace(tzinfo=None)
    changed = 0
    with queue.transaction() as con:
        for tid in task_ids:
            row = con.execute("SELECT status FROM tasks WHERE task_id = ?", [tid]).fetchone()
            if row is None:
                raise ReviewError(f"no task with id {tid}")
            before = row[0]
            after = ACTION_STATUS[action]
            if action == "approve" and reviews_required > 1:
                approvers = con.execute(
                    "SELECT count(*) FROM (SELECT reviewer, arg_max(action, event_id) AS last "
                    "FROM review_events WHERE task_id = ? AND reviewer <> ? GROUP BY reviewer) "
                    "WHERE last = 'approve'", [tid, reviewer]).fetchone()[0] + 1
                if approvers < reviews_required:
                    after = "pending" if before in ("pending", "approved") else before
            con.execute("INSERT INTO review_events (task_id, reviewer, action, note, "
                        "status_before, status_after, acted_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                        [tid, reviewer.strip(), action, note, before, after, now])
            if after != before:
                con.execute("UPDATE tasks SET status = ?, updated_at = ? WHERE task_id = ?",
                            [after, now, tid])
                changed += 1
    return ReviewResult(action, changed, len(task_ids), task_ids)
