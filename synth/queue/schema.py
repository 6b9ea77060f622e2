"""The queue's schema and its migrations: schema.sql is the whole current schema; each
migration is a named function recorded in ``schema_migrations``."""

from __future__ import annotations

from datetime import datetime, timezone
from importlib import resources
from typing import Any

import duckdb

SCHEMA_VERSION = 10
TABLES = ("repos", "pull_requests", "pr_files", "decisions", "chain_repos", "chains", "tasks",
          "failures", "cursors", "runs", "resolved")  # what a batch writes, in order
# ("resolved" updates failures; "chain_repos" clears the chains of repositories re-detected)


def utcnow() -> datetime:
    """Naive UTC, as the TIMESTAMP columns hold it."""
    return datetime.now(timezone.utc).replace(tzinfo=None)


def _schema(con: duckdb.DuckDBPyConnection) -> None:
    """schema.sql is the whole current schema, every statement idempotent."""
    con.execute(resources.files("synth").joinpath("schema.sql").read_text())


def _upgrade_2(con: duckdb.DuckDBPyConnection) -> None:
    """Curation: near-duplicate flags on tasks, task revisions, the HTTP cache,
    reviewer_stats."""
    for col, typ in (("dup_of", "VARCHAR"), ("dup_kind", "VARCHAR"), ("dup_similarity", "DOUBLE")):
        con.execute(f"ALTER TABLE tasks ADD COLUMN IF NOT EXISTS {col} {typ}")


def _upgrade_3(con: duckdb.DuckDBPyConnection) -> None:
    """tasks.pr_url, so review_queue needs no join and its top rows come fast."""
    con.execute("ALTER TABLE tasks ADD COLUMN IF NOT EXISTS pr_url VARCHAR")
    con.execute("UPDATE tasks SET pr_url = p.url FROM pull_requests p "
                "WHERE p.repo = tasks.repo AND p.number = tasks.number AND tasks.pr_url IS NULL")


def _upgrade_4(con: duckdb.DuckDBPyConnection) -> None:
    """pr_files without its primary-key index (faster bulk ingest; uniqueness is kept by
    replacing a PR's files whole). DuckDB cannot drop a key in place: rebuild the table."""
    con.execute("ALTER TABLE pr_files RENAME TO pr_files_v3")
    ddl = resources.files("synth").joinpath("schema.sql").read_text()
    start = ddl.index("CREATE TABLE IF NOT EXISTS pr_files")
    con.execute(ddl[start:ddl.index(");", start) + 2])
    con.execute("INSERT INTO pr_files BY NAME SELECT * FROM pr_files_v3")
    con.execute("DROP TABLE pr_files_v3")


def _upgrade_6(con: duckdb.DuckDBPyConnection) -> None:
    """The review journal's id on each event it applied (applied exactly once)."""
    con.execute("ALTER TABLE review_events ADD COLUMN IF NOT EXISTS journal_id VARCHAR")


def _upgrade_7(con: duckdb.DuckDBPyConnection) -> None:
    """Chains and reference changes: branch names on PRs, file modes, and on tasks their
    kind, members and reference change (patch, test_patch, tests_added, applicability,
    stages). The chains table comes with schema.sql."""
    for table, col, typ in (
            ("pull_requests", "head_ref", "VARCHAR"), ("pull_requests", "base_ref", "VARCHAR"),
            ("pr_files", "old_mode", "VARCHAR"), ("pr_files", "new_mode", "VARCHAR"),
            ("tasks", "kind", "VARCHAR DEFAULT 'pr'"), ("tasks", "members", "INTEGER[]"),
            ("tasks", "chain_id", "VARCHAR"), ("tasks", "patch", "VARCHAR"),
            ("tasks", "test_patch", "VARCHAR"), ("tasks", "tests_added", "VARCHAR[]"),
            ("tasks", "applicable", "BOOLEAN"), ("tasks", "apply_issues", "VARCHAR[]"),
            ("tasks", "stages", "JSON")):
        con.execute(f"ALTER TABLE {table} ADD COLUMN IF NOT EXISTS {col} {typ}")
    con.execute("UPDATE tasks SET kind = coalesce(kind, 'pr'), members = [number] "
                "WHERE members IS NULL")


def _upgrade_9(con: duckdb.DuckDBPyConnection) -> None:
    """Query signatures were taken over the template rewriter's fixed sentences too, so two
    template tasks with short titles looked like twins: drop every signature; the next
    dedupe (every run's last step) signs each task again and sets the flags afresh."""
    con.execute("DROP TABLE IF EXISTS task_signatures")  # schema.sql makes it again, empty


def _upgrade_10(con: duckdb.DuckDBPyConnection) -> None:
    """tasks.pr_dropped, set from each PR's latest decision (later decisions keep it)."""
    con.execute("ALTER TABLE tasks ADD COLUMN IF NOT EXISTS pr_dropped BOOLEAN DEFAULT false")
    con.execute("UPDATE tasks SET pr_dropped = NOT d.kept FROM (SELECT repo, number, "
                "arg_max(kept, decided_at) AS kept FROM decisions GROUP BY repo, number) d "
                "WHERE tasks.repo = d.repo AND tasks.number = d.number "
                "AND coalesce(tasks.kind, 'pr') = 'pr'")


# (version, name, upgrade): a new file runs schema.sql and records every version; an older
# file runs the upgrades it lacks (new columns), in order, then schema.sql (new tables,
# views), in one transaction.
MIGRATIONS: list[tuple[int, str, Any]] = [
    (1, "initial schema", lambda con: None),
    (2, "curation: duplicates, revisions, http cache, reviewer_stats", _upgrade_2),
    (3, "tasks.pr_url; review_queue without a join", _upgrade_3),
    (4, "pr_files without a primary-key index", _upgrade_4),
    (5, "review_queue leaves out tasks flagged trivial or not_code", lambda con: None),
    (6, "review_events.journal_id: actions applied from the review journal", _upgrade_6),
    (7, "chains; tasks' kind, members and reference change; file modes, branch names", _upgrade_7),
    (8, "review_queue leaves out chain tasks whose chain is gone (superseded)", lambda con: None),
    (9, "near-duplicate signatures signed again, queries without the template's fixed sentences",
     _upgrade_9),
    (10, "tasks.pr_dropped: review_queue leaves out PR tasks whose PR the rules now drop",
     _upgrade_10),
]


def migrate(con: duckdb.DuckDBPyConnection) -> int:
    """Bring the file to the current schema. Returns the schema version."""
    con.execute("CREATE TABLE IF NOT EXISTS schema_migrations ("
                "version INTEGER PRIMARY KEY, name VARCHAR, applied_at TIMESTAMP)")
    done = {v for (v,) in con.execute("SELECT version FROM schema_migrations").fetchall()}
    pending = [m for m in MIGRATIONS if m[0] not in done]
    if not pending:
        return SCHEMA_VERSION
    con.execute("BEGIN TRANSACTION")
    try:
        if done:  # an older file: new columns first, then the tables and views of today
            for _, _, upgrade in pending:
                upgrade(con)
        _schema(con)
        for version, name, _ in pending:
            con.execute("INSERT INTO schema_migrations VALUES (?, ?, ?)", [version, name, utcnow()])
        con.execute("COMMIT")
    except Exception:
        con.execute("ROLLBACK")
        raise
    return SCHEMA_VERSION


