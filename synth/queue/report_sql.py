"""Report aggregates: every query `synth report` runs, in one place.

Each answer is a GROUP BY (or a short LIMIT) over the queue, so what reaches Python is a few
hundred rows whatever the queue's size; nothing here pulls PRs or tasks row by row. All of
it runs in one read-only connection. The scope (``since``, ``repos``) is held in temporary
tables, so values never enter the SQL text:

    PRs          first seen on or after ``since`` (pull_requests.first_seen_at)
    tasks        created on or after ``since``
    review       actions taken on or after ``since``, on tasks of the chosen repositories
    runs         started on or after ``since`` (runs are queue-wide: ``repos`` does not apply)
    failures     last seen on or after ``since``
    repositories rows of ``repos`` (``since`` does not apply)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import duckdb

    from .store import Queue

LAST_RUNS = 20      # runs in the runs and per-run tables
REASON_RUNS = 10    # runs in "dropped by reason, over the last runs"
TOP_REPOS = 25      # repositories in the per-repository funnel
OLDEST = 15         # oldest pending tasks listed
DAYS = 30           # review days shown (the most recent days with any action)
TOP_LABELS = 20     # flags, categories and reviewer pairs listed (most tasks first)
VERDICTS = ("approve", "reject", "needs-edit", "skip")


@dataclass
class Table:
    cols: list[str]
    rows: list[tuple]
    more: int = 0  # rows left off past a LIMIT


@dataclass
class ReportData:
    totals: dict[str, object]
    tables: dict[str, Table] = field(default_factory=dict)
    fleiss: float | None = None


def _counter(key: str, name: str | None = None) -> str:
    """A run counter (slash key) as a BIGINT column, 0 when absent."""
    return f"coalesce((counts->>'{key}')::BIGINT, 0) AS \"{name or key}\""


def _scope(con: "duckdb.DuckDBPyConnection", since: datetime | None,
           repos: list[str] | None) -> None:
    """Temporary tables and views that every query below reads instead of the tables."""
    con.execute("CREATE TEMP TABLE r_scope AS SELECT ?::TIMESTAMP AS since", [since])
    con.execute("CREATE TEMP TABLE r_repos AS SELECT unnest(?::VARCHAR[]) AS repo", [repos or []])
    in_repos = "repo IN (SELECT repo FROM r_repos)" if repos else "true"
    after = (lambda col: f"{col} >= (SELECT since FROM r_scope)") if since else (lambda col: "true")
    con.execute(f"CREATE TEMP VIEW r_pull_requests AS SELECT repo, number FROM pull_requests "
                f"WHERE {in_repos} AND {after('first_seen_at')}")
    # Each PR's latest decision, by the candidates view's rule (newest decided_at, then the
    # smallest filter_version), counted by (repo, kept, reasons): the one materialised table,
    # small (a row per repository and reason set). The view runs a window over every
    # decision; at a million PRs it costs twice what this does: count every decision, then
    # take away the superseded ones, which only PRs with several decisions (a rescore after
    # a rule change) have.
    decisions = ("(SELECT d.* FROM decisions d SEMI JOIN r_pull_requests USING (repo, number))"
                 if since else f"(SELECT * FROM decisions WHERE {in_repos})")
    con.execute(f"""CREATE TEMP TABLE r_prs AS
        WITH d AS NOT MATERIALIZED {decisions},
             every AS (SELECT repo, kept, reasons, count(*) AS n FROM d GROUP BY ALL),
             several AS (SELECT repo, number FROM d GROUP BY repo, number HAVING count(*) > 1),
             superseded AS (
                 SELECT repo, kept, reasons, count(*) AS n
                 FROM (SELECT d.* FROM d SEMI JOIN several USING (repo, number)
                       QUALIFY row_number() OVER (PARTITION BY repo, number
                                                  ORDER BY decided_at DESC, filter_version) > 1)
                 GROUP BY ALL)
        SELECT e.repo, e.kept, CASE WHEN NOT e.kept THEN e.reasons END AS reasons,
               e.n - coalesce(s.n, 0) AS n
        FROM every e LEFT JOIN superseded s
             ON e.repo = s.repo AND e.kept = s.kept AND e.reasons = s.reasons
        WHERE e.n > coalesce(s.n, 0)""")
    con.execute(f"CREATE TEMP VIEW r_repo_rows AS SELECT * FROM repos WHERE {in_repos}")
    con.execute(f"CREATE TEMP VIEW r_tasks AS SELECT * FROM tasks WHERE {in_repos} "
                f"AND {after('created_at')}")
    con.execute(f"""CREATE TEMP VIEW r_events AS SELECT e.* FROM review_events e
        WHERE {after('e.acted_at')} AND """ + (
        "e.task_id IN (SELECT task_id FROM tasks WHERE repo IN (SELECT repo FROM r_repos))"
        if repos else "true"))
    con.execute(f"CREATE TEMP VIEW r_waiting AS SELECT * FROM review_queue WHERE {in_repos} "
                f"AND {after('created_at')}")
    con.execute(f"CREATE TEMP VIEW r_runs AS SELECT * FROM runs WHERE {after('started_at')}")
    con.execute(f"CREATE TEMP VIEW r_failures AS SELECT * FROM failures WHERE {in_repos} "
                f"AND {after('last_at')}")


def _table(con, sql: str, params: list | None = None, limit: int | None = None) -> Table:
    """Rows of one query; with ``limit``, the first ``limit`` rows and how many were left."""
    if limit is not None:
        sql = f"SELECT *, count(*) OVER () AS __n FROM ({sql}) LIMIT {int(limit)}"
    cur = con.execute(sql, params or [])
    cols = [d[0] for d in cur.description]
    rows = cur.fetchall()
    if limit is None:
        return Table(cols, rows)
    n = rows[0][-1] if rows else 0
    return Table(cols[:-1], [r[:-1] for r in rows], max(0, n - len(rows)))


def collect(queue: "Queue", since: datetime | None = None, repos: list[str] | None = None,
            info_codes: frozenset[str] | set[str] = frozenset(),
            now: datetime | None = None) -> ReportData:
    """Every figure of the report. ``info_codes`` are reason codes that never drop a PR
    (left out of "dropped by reason", as `synth stats` does); ``now`` (naive UTC) dates the
    age of pending tasks."""
    with queue.connect(read_only=True, wait=queue.busy_timeout) as con:
        _scope(con, since, repos)
        data = ReportData(totals=_totals(con))
        t = data.tables
        t["status"] = _table(con, "SELECT status, count(*) AS tasks FROM r_tasks "
                                  "GROUP BY status ORDER BY status")
        _funnel(con, t)
        _drops(con, t, sorted(info_codes))
        _llm(con, t)
        _quality(con, t)
        data.fleiss = _review(con, t, now)
        _runs(con, t)
        return data


def _totals(con) -> dict[str, object]:
    row = con.execute("""
        SELECT (SELECT count(*) FROM r_repo_rows),
               (SELECT count(*) FROM r_pull_requests),
               (SELECT coalesce(sum(n) FILTER (WHERE kept), 0) FROM r_prs),
               (SELECT coalesce(sum(n) FILTER (WHERE NOT kept), 0) FROM r_prs),
               (SELECT count(*) FROM r_tasks),
               (SELECT count(*) FROM r_failures WHERE NOT resolved),
               (SELECT count(*) FROM r_runs),
               (SELECT coalesce(sum(prompt_tokens), 0) FROM r_tasks),
               (SELECT coalesce(sum(completion_tokens), 0) FROM r_tasks),
               (SELECT coalesce(sum(cost_usd), 0) FROM r_tasks),
               (SELECT count(*) FROM r_events)""").fetchone()
    keys = ["repos", "pull_requests", "kept", "dropped", "tasks", "open_failures", "runs",
            "tokens_in", "tokens_out", "cost_usd", "review_actions"]
    return dict(zip(keys, row))


def _funnel(con, t: dict[str, Table]) -> None:
    t["funnel_repos"] = _table(con, """
        WITH d AS (SELECT repo, sum(n) FILTER (WHERE kept) AS kept,
                          sum(n) FILTER (WHERE NOT kept) AS dropped FROM r_prs GROUP BY repo),
             p AS (SELECT repo, count(*) AS prs, any_value(d.kept) AS kept,
                          any_value(d.dropped) AS dropped
                   FROM r_pull_requests LEFT JOIN d USING (repo) GROUP BY repo),
             k AS (SELECT repo, count(*) AS tasks,
                          count(*) FILTER (WHERE status = 'approved') AS approved,
                          count(*) FILTER (WHERE status = 'rejected') AS rejected,
                          count(*) FILTER (WHERE status = 'pending') AS pending,
                          count(*) FILTER (WHERE status NOT IN ('approved', 'rejected', 'pending'))
                              AS other
                   FROM r_tasks GROUP BY repo),
             names AS (SELECT repo FROM r_repo_rows UNION SELECT repo FROM p
                       UNION SELECT repo FROM k)
        SELECT n.repo, coalesce(p.prs, 0) AS prs, coalesce(p.kept, 0) AS kept,
               coalesce(p.dropped, 0) AS dropped, coalesce(k.tasks, 0) AS tasks,
               coalesce(k.approved, 0) AS approved, coalesce(k.rejected, 0) AS rejected,
               coalesce(k.pending, 0) AS pending, coalesce(k.other, 0) AS other
        FROM names n LEFT JOIN p USING (repo) LEFT JOIN k USING (repo)
        ORDER BY prs DESC, tasks DESC, n.repo""", limit=TOP_REPOS)


def _drops(con, t: dict[str, Table], info: list[str]) -> None:
    t["reasons"] = _table(con, """
        SELECT r AS reason, sum(n)::BIGINT AS prs
        FROM (SELECT unnest(reasons) AS r, n FROM r_prs WHERE NOT kept)
        WHERE r NOT IN (SELECT unnest(?::VARCHAR[]))
        GROUP BY r ORDER BY prs DESC, r""", [info])
    # long form (run, reason, PRs) over the last runs; the page pivots it
    t["reasons_by_run"] = _table(con, f"""
        SELECT run_id, started_at, substr(k, 16) AS reason, (counts->>k)::BIGINT AS prs
        FROM (SELECT run_id, started_at, counts, unnest(json_keys(counts)) AS k
              FROM (SELECT * FROM r_runs ORDER BY started_at DESC LIMIT {REASON_RUNS}))
        WHERE starts_with(k, 'filter/dropped/')
        ORDER BY started_at, run_id, reason""")


def _llm(con, t: dict[str, Table]) -> None:
    t["rewriters"] = _table(con, """
        SELECT rewriter, coalesce(model, '') AS model, count(*) AS tasks,
               sum(prompt_tokens) AS tokens_in, sum(completion_tokens) AS tokens_out,
               sum(cost_usd) AS cost_usd, avg(judge_score) AS avg_judge
        FROM r_tasks GROUP BY ALL ORDER BY tasks DESC, rewriter, model""")
    t["llm_runs"] = _table(con, f"""
        SELECT run_id, started_at, {_counter('llm/calls', 'calls')},
               {_counter('llm/tokens/in', 'tokens_in')}, {_counter('llm/tokens/out', 'tokens_out')},
               {_counter('llm/cost_microusd', 'cost_microusd')}, {_counter('filter/kept', 'kept')},
               {_counter('rewrite/tasks', 'tasks')}
        FROM r_runs ORDER BY started_at DESC, run_id LIMIT {LAST_RUNS}""")
    t["failures"] = _table(con, """
        SELECT stage, reason, count(*) FILTER (WHERE NOT resolved) AS open,
               count(*) FILTER (WHERE resolved) AS resolved,
               count(*) FILTER (WHERE transient AND NOT resolved) AS transient,
               max(last_at) AS last_at
        FROM r_failures GROUP BY ALL ORDER BY open DESC, resolved DESC, stage, reason""")


def _quality(con, t: dict[str, Table]) -> None:
    t["judge"] = _table(con, """
        SELECT floor(judge_score * 2) / 2 AS score_from, count(*) AS tasks
        FROM r_tasks WHERE judge_score IS NOT NULL GROUP BY ALL ORDER BY score_from""")
    t["confidence"] = _table(con, """
        SELECT least(floor(confidence * 10), 9) / 10 AS confidence_from, count(*) AS tasks
        FROM r_tasks WHERE confidence IS NOT NULL GROUP BY ALL ORDER BY confidence_from""")
    t["unscored"] = _table(con, "SELECT count(*) FILTER (WHERE judge_score IS NULL) AS unjudged, "
                                "count(*) FILTER (WHERE confidence IS NULL) AS no_confidence "
                                "FROM r_tasks")
    t["flags"] = _table(con, """
        SELECT f AS flag, count(*) AS tasks FROM (SELECT unnest(flags) AS f FROM r_tasks)
        GROUP BY f ORDER BY tasks DESC, f""", limit=TOP_LABELS)
    t["duplicates"] = _table(con, """
        SELECT dup_kind AS kind, count(*) AS tasks, avg(dup_similarity) AS avg_similarity,
               count(*) FILTER (WHERE status = 'pending') AS pending
        FROM r_tasks WHERE dup_of IS NOT NULL GROUP BY ALL ORDER BY tasks DESC, kind""")
    t["categories"] = _table(con, "SELECT category, count(*) AS tasks FROM r_tasks "
                                  "GROUP BY ALL ORDER BY tasks DESC, category", limit=TOP_LABELS)
    t["difficulty"] = _table(con, """
        SELECT difficulty, count(*) AS tasks FROM r_tasks GROUP BY difficulty
        ORDER BY CASE difficulty WHEN 'easy' THEN 0 WHEN 'medium' THEN 1 WHEN 'hard' THEN 2
                 ELSE 3 END, difficulty""")


def _review(con, t: dict[str, Table], now: datetime | None) -> float | None:
    t["review_days"] = _table(con, f"""
        SELECT acted_at::DATE AS day, reviewer, count(*) AS actions,
               count(*) FILTER (WHERE action = 'approve') AS approvals,
               count(*) FILTER (WHERE action = 'reject') AS rejections,
               count(*) FILTER (WHERE action NOT IN ('approve', 'reject')) AS other
        FROM r_events
        WHERE acted_at::DATE IN (SELECT DISTINCT acted_at::DATE FROM r_events
                                 ORDER BY 1 DESC LIMIT {DAYS})
        GROUP BY ALL ORDER BY day, reviewer""")
    t["reviewers"] = _table(con, """
        SELECT reviewer, count(*) AS actions, count(DISTINCT task_id) AS tasks,
               count(*) FILTER (WHERE action = 'approve') AS approvals,
               count(*) FILTER (WHERE action = 'reject') AS rejections,
               count(*) FILTER (WHERE action = 'needs-edit') AS needs_edit,
               count(*) FILTER (WHERE action = 'skip') AS skips,
               count(*) FILTER (WHERE action = 'edit') AS edits,
               max(acted_at) AS last_action_at
        FROM r_events GROUP BY reviewer ORDER BY actions DESC, reviewer""")
    # agreement over each reviewer's latest verdict per task (as `synth review agreement`):
    # Cohen's kappa per pair that shares tasks, from its confusion counts; Fleiss' overall
    verdicts = "', '".join(VERDICTS)
    con.execute(f"""CREATE TEMP TABLE r_verdicts AS
        SELECT task_id, reviewer, arg_max(action, event_id) AS v FROM r_events
        WHERE action IN ('{verdicts}') GROUP BY task_id, reviewer""")
    t["kappa"] = _table(con, """
        WITH pairs AS (SELECT x.reviewer AS a, y.reviewer AS b, x.v AS va, y.v AS vb
                       FROM r_verdicts x JOIN r_verdicts y
                       ON x.task_id = y.task_id AND x.reviewer < y.reviewer),
             n AS (SELECT a, b, count(*) AS n, count(*) FILTER (WHERE va = vb) AS agree
                   FROM pairs GROUP BY a, b),
             ma AS (SELECT a, b, va AS v, count(*) AS c FROM pairs GROUP BY ALL),
             mb AS (SELECT a, b, vb AS v, count(*) AS c FROM pairs GROUP BY ALL),
             pe AS (SELECT ma.a, ma.b, sum(ma.c * mb.c) AS s FROM ma JOIN mb USING (a, b, v)
                    GROUP BY ALL),
             k AS (SELECT a, b, n, agree / n AS po, coalesce(s, 0) / (n * n) AS pe
                   FROM n LEFT JOIN pe USING (a, b))
        SELECT a AS reviewer_a, b AS reviewer_b, n AS shared_tasks, po AS observed,
               CASE WHEN pe < 1 THEN (po - pe) / (1 - pe) WHEN po = 1 THEN 1.0 END AS kappa
        FROM k ORDER BY n DESC, a, b""", limit=TOP_LABELS)
    fleiss = con.execute("""
        WITH per AS (SELECT task_id, v, count(*) AS c FROM r_verdicts GROUP BY ALL),
             items AS (SELECT task_id, sum(c) AS n, sum(c * c) AS ss FROM per GROUP BY task_id
                       HAVING sum(c) >= 2),
             pj AS (SELECT v, sum(c) / (SELECT sum(n) FROM items) AS p FROM per
                    WHERE task_id IN (SELECT task_id FROM items) GROUP BY v),
             f AS (SELECT (SELECT avg((ss - n) / (n * (n - 1))) FROM items) AS pbar,
                          (SELECT sum(p * p) FROM pj) AS pe)
        SELECT CASE WHEN pe < 1 THEN (pbar - pe) / (1 - pe) WHEN pbar = 1 THEN 1.0 END
        FROM f WHERE pbar IS NOT NULL""").fetchone()
    t["oldest"] = _table(con, """
        SELECT task_id, repo, number, title, created_at,
               date_diff('day', created_at, coalesce(?::TIMESTAMP, now()::TIMESTAMP)) AS age_days
        FROM r_waiting ORDER BY created_at, task_id""", [now],
                         limit=OLDEST)
    return fleiss[0] if fleiss else None


def _runs(con, t: dict[str, Table]) -> None:
    t["runs"] = _table(con, f"""
        SELECT run_id, started_at, status, source,
               epoch(ended_at - started_at) AS seconds, {_counter('source/prs', 'prs')},
               {_counter('filter/kept', 'kept')}, {_counter('rewrite/tasks', 'tasks')},
               {_counter('github/requests', 'github_requests')},
               coalesce(json_array_length(errors), 0) AS errors
        FROM r_runs ORDER BY started_at DESC, run_id LIMIT {LAST_RUNS}""")
    t["run_status"] = _table(con, "SELECT status, count(*) AS runs FROM r_runs "
                                  "GROUP BY status ORDER BY runs DESC, status")
