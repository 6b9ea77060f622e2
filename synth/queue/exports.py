"""The SQL of an export: approved tasks as records, assembled and written by DuckDB.

One query, sorted by task id, written with one thread, so the same approved set gives
byte-identical files, at C speed. export.py decides what to write where; this module says
how the records are made.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .store import Queue

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


class Records:
    """The export query with its parameters: which repositories go to the test split, since
    when, which PRs are excluded, and whether the AgencyBench text is rendered."""

    def __init__(self, test_repos: list[str], since: date | None,
                 exclude: set[tuple[str, int]] | None, style: str | None):
        self.sql = RECORDS.format(subtask_type=SUBTASK_TYPE,
                                  since="r.last_reviewed_at >= ?::DATE" if since else "?::DATE IS NULL",
                                  text=_AGENCYBENCH if style == "agencybench" else "NULL::VARCHAR")
        self.params = [test_repos, since.isoformat() if since else None,
                       sorted(f"{r}#{n}" for r, n in (exclude or ()))]

    def counts(self, queue: "Queue") -> dict[str, int]:
        """Records per split."""
        _, rows = queue.query(f"SELECT split, count(*) FROM ({self.sql}) GROUP BY split",
                              self.params, wait=queue.busy_timeout)
        return dict(rows)

    def write(self, queue: "Queue", split: str, path: Path, fmt: str) -> None:
        """One split's records, sorted by task id, to ``path`` (jsonl or parquet)."""
        queue.copy_to(f"SELECT * EXCLUDE (split), '{split}' AS split FROM ({self.sql}) "
                      f"WHERE split = '{split}' ORDER BY task_id", self.params, path, fmt)

    def summary(self, queue: "Queue") -> dict:
        """Counts by repository, category, difficulty, rewriter, split and licence; the
        record count and the newest review, for the dataset card."""
        out: dict = {}
        for key, expr in (("repo", "repo"), ("category", "category"), ("difficulty", "difficulty"),
                          ("rewriter", "rewriter"), ("split", "split"),
                          ("licence", "coalesce(license, 'unknown')")):
            _, rows = queue.query(f"SELECT {expr} AS k, count(*) FROM ({self.sql}) GROUP BY k "
                                  "ORDER BY count(*) DESC, k", self.params, wait=queue.busy_timeout)
            out[key] = rows
        _, rows = queue.query(f"SELECT count(*), max(review.last_reviewed_at) FROM ({self.sql})",
                              self.params, wait=queue.busy_timeout)
        out["count"], out["newest"] = rows[0]
        return out


def approved_repos(queue: "Queue") -> list[str]:
    _, rows = queue.query("SELECT DISTINCT repo FROM approved_tasks ORDER BY repo",
                          wait=queue.busy_timeout)
    return [r[0] for r in rows]
