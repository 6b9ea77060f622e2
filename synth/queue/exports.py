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
STAGE_TYPE = ("STRUCT(number INTEGER, base_commit VARCHAR, merge_commit VARCHAR, patch VARCHAR, "
              "test_patch VARCHAR, tests_added VARCHAR[], applicable BOOLEAN, issues VARCHAR[])[]")
NL = "chr(10)"

# the subtasks as text (AgencyBench's form), rendered in SQL from the record's columns
_SUBTASKS = f"""
    (SELECT string_agg(
        'Subtask ' || i || ': ' || s.title || {NL} || 'Goal: ' || s.goal || {NL} ||
        'Constraints:' || {NL} || '- ' || array_to_string(s.constraints, {NL} || '- ') || {NL} ||
        'Deliverables:' || {NL} || '- ' || array_to_string(s.deliverables, {NL} || '- ') || {NL} ||
        'Acceptance Criteria:' || {NL} || '- ' || array_to_string(s.acceptance_criteria, {NL} || '- '),
        {NL} || {NL} ORDER BY i)
     FROM (SELECT unnest(subtasks) AS s, generate_subscripts(subtasks, 1) AS i))"""
# the AgencyBench text form of a task
_AGENCYBENCH = f"""
    '# ' || title || {NL} || {NL} || trim(background) || {NL} || {NL} || trim(query) || {NL} || {NL} ||
    {_SUBTASKS} || {NL}"""

# SWE-bench's field names over the records (a harness that loads SWE-bench loads these):
# one instance per task, FAIL_TO_PASS / PASS_TO_PASS as JSON text as in SWE-bench itself;
# a chain's instance starts at its first stage's base, its stages beside it
SWEBENCH = f"""
SELECT CASE WHEN count(*) OVER (PARTITION BY iid) > 1 THEN iid || '-' || left(task_id, 8)
            ELSE iid END AS instance_id,
       repo, base_commit, patch, test_patch, problem_statement, hints_text, created_at,
       NULL::VARCHAR AS version, base_commit AS environment_setup_commit,
       to_json(coalesce(tests_added, []::VARCHAR[]))::VARCHAR AS FAIL_TO_PASS,
       '[]' AS PASS_TO_PASS,
       task_id, kind, members, stages, merge_commit, pr_url, license, applicable, apply_issues,
       split
FROM (SELECT *, replace(repo, '/', '__') || '-' ||
             CASE WHEN kind = 'chain' THEN 'chain-' || array_to_string(members, '-')
                  ELSE CAST(pr_number AS VARCHAR) END AS iid,
             base_sha AS base_commit, merge_sha AS merge_commit,
             trim(query) || {NL} || {NL} || {_SUBTASKS} || {NL} AS problem_statement,
             background AS hints_text, merged_at AS created_at
      FROM ({{records}}) r)
"""

RECORDS = """
WITH rev AS (
    SELECT task_id,
           count(DISTINCT reviewer) FILTER (WHERE action = 'approve') AS approvals,
           list(DISTINCT reviewer ORDER BY reviewer) FILTER (WHERE action = 'approve') AS reviewers,
           max(acted_at) AS last_reviewed_at,
           list(note ORDER BY event_id) FILTER (WHERE note IS NOT NULL) AS notes
    FROM review_events GROUP BY task_id
), rec AS (
    SELECT t.task_id, t.repo, t.number AS pr_number, t.pr_url, t.base_sha,
           CASE WHEN t.kind = 'chain' THEN json_extract_string(t.stages, '$[#-1].merge_commit')
                ELSE t.merge_sha END AS merge_sha,
           strftime(t.merged_at, '%Y-%m-%dT%H:%M:%S') AS merged_at, t.license,
           t.title, t.category, t.difficulty, t.background, t.query,
           CAST(t.subtasks AS {subtask_type}) AS subtasks,
           t.modified_files, t.related_files, t.flags, t.confidence, t.judge_score,
           t.rewriter, t.model, t.prompt_version, t.revision,
           coalesce(t.kind, 'pr') AS kind, coalesce(t.members, [t.number]) AS members,
           t.patch, t.test_patch, t.tests_added, t.applicable, t.apply_issues,
           CAST(t.stages AS {stage_type}) AS stages,
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
    when, which PRs are excluded, and the style (AgencyBench text; SWE-bench's fields)."""

    def __init__(self, test_repos: list[str], since: date | None,
                 exclude: set[tuple[str, int]] | None, style: str | None):
        self.base = RECORDS.format(subtask_type=SUBTASK_TYPE, stage_type=STAGE_TYPE,
                                   since="r.last_reviewed_at >= ?::DATE" if since else "?::DATE IS NULL",
                                   text=_AGENCYBENCH if style == "agencybench" else "NULL::VARCHAR")
        self.sql = SWEBENCH.replace("{records}", self.base) if style == "swebench" else self.base
        self.params = [test_repos, since.isoformat() if since else None,
                       sorted(f"{r}#{n}" for r, n in (exclude or ()))]

    def counts(self, queue: "Queue") -> dict[str, int]:
        """Records per split."""
        _, rows = queue.query(f"SELECT split, count(*) FROM ({self.base}) GROUP BY split",
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
        for key, expr in (("repo", "repo"), ("kind", "kind"), ("category", "category"),
                          ("difficulty", "difficulty"), ("rewriter", "rewriter"),
                          ("split", "split"), ("licence", "coalesce(license, 'unknown')")):
            _, rows = queue.query(f"SELECT {expr} AS k, count(*) FROM ({self.base}) GROUP BY k "
                                  "ORDER BY count(*) DESC, k", self.params, wait=queue.busy_timeout)
            out[key] = rows
        _, rows = queue.query(f"SELECT count(*), max(review.last_reviewed_at), "
                              "count(*) FILTER (WHERE kind = 'chain'), "
                              "coalesce(sum(len(members)) FILTER (WHERE kind = 'chain'), 0), "
                              "count(*) FILTER (WHERE applicable IS NOT DISTINCT FROM false) "
                              f"FROM ({self.base})", self.params, wait=queue.busy_timeout)
        out["count"], out["newest"], out["chains"], out["chain_prs"], out["unappliable"] = rows[0]
        return out


def approved_repos(queue: "Queue") -> list[str]:
    _, rows = queue.query("SELECT DISTINCT repo FROM approved_tasks ORDER BY repo",
                          wait=queue.busy_timeout)
    return [r[0] for r in rows]
