"""The DuckDB review queue: the only module that imports duckdb.

Connections are short: open, one transaction, close. DuckDB allows one writing process per
file and no readers beside it, so a write that finds the file busy retries with backoff and,
past a bound, leaves its batch in the spool folder to be ingested at the next chance.

Every batch goes through the spool: it is written to disk as JSON lines (one file per table,
in a folder renamed into place when complete), ingested in one transaction with idempotent
upserts, and deleted after the commit. A crash at any point leaves either nothing or a whole
batch on disk, and ingesting a batch twice gives the same rows.
"""

from __future__ import annotations

import contextlib
import gc
import json
import os
import shutil
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from importlib import resources
from pathlib import Path
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, Iterable, Iterator

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

from .errors import QueueBusy, QueueError, SQLError
from .models import Batch, DedupeResult, Failure, PullRequest, Repo, Task, merge_batches

SCHEMA_VERSION = 4
_ZERO = timedelta(0)
TABLES = ("repos", "pull_requests", "pr_files", "decisions", "tasks", "failures", "cursors", "runs",
          "resolved")


def utcnow() -> datetime:
    return datetime.now(timezone.utc).replace(tzinfo=None)


def _utc(value: datetime | None) -> datetime | None:
    """Naive UTC, as the TIMESTAMP columns hold it."""
    if value is None or value.tzinfo is None:
        return value
    if value.utcoffset() == _ZERO:
        return value.replace(tzinfo=None)
    return value.astimezone(timezone.utc).replace(tzinfo=None)


# ---------------------------------------------------------------- migrations

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
    con.execute("INSERT INTO pr_files SELECT * FROM pr_files_v3")
    con.execute("DROP TABLE pr_files_v3")


# (version, name, upgrade): a new file runs schema.sql and records every version; an older
# file runs the upgrades it lacks (new columns), in order, then schema.sql (new tables,
# views), in one transaction.
MIGRATIONS: list[tuple[int, str, Any]] = [
    (1, "initial schema", lambda con: None),
    (2, "curation: duplicates, revisions, http cache, reviewer_stats", _upgrade_2),
    (3, "tasks.pr_url; review_queue without a join", _upgrade_3),
    (4, "pr_files without a primary-key index", _upgrade_4),
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


# ---------------------------------------------------------------- batch -> rows

def batch_rows(batch: Batch, now: datetime | None = None) -> dict[str, dict[str, list]]:
    """The rows a batch writes, per table, as columns (name -> values), ready for Arrow."""
    return dict(batch_columns(batch, now))


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
    }


_FILE_FIELDS = ("path", "old_path", "status", "additions", "deletions", "binary", "patch",
                "patch_bytes", "patch_truncated", "undecodable")
_FILE_COLUMNS = ("path", "old_path", "status", "additions", "deletions", "is_binary", "patch",
                 "patch_bytes", "patch_truncated", "undecodable")


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
        "run_id": run_id, "pr_url": t.provenance.pr_url,
    }


def _failure_row(f: Failure, stamp: str, run_id: str | None) -> dict:
    return {"stage": f.stage, "repo": f.repo or "", "number": f.number or 0, "reason": f.reason,
            "message": f.message, "detail": f.detail[:4000], "transient": f.transient,
            "attempts": 1, "first_at": stamp, "last_at": stamp, "run_id": run_id,
            "resolved": False}


# What an ingest does per table: the conflict target and the columns a re-ingest updates.
# Columns not listed (first_seen_at, created_at, status, revision, ...) keep their first value.
_UPSERT: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "repos": (("repo",), ("stars", "language", "license", "default_branch", "archived", "fork",
                          "updated_at")),
    "pull_requests": (("repo", "number"), (
        "title", "body", "author", "author_is_bot", "merged_at", "base_sha", "merge_sha",
        "head_sha", "url", "labels", "linked_issues", "additions", "deletions", "changed_files",
        "updated_at")),
    "decisions": (("repo", "number", "filter_version"), ("kept", "reasons", "metrics")),
    "tasks": (("task_id",), ()),  # a stored task is never overwritten by a rewrite
    "cursors": (("repo", "source"), ("watermark", "cursor", "state", "updated_at")),
    "runs": (("run_id",), ("ended_at", "status", "counts", "errors", "config_hash")),
}


# ---------------------------------------------------------------- the queue

@dataclass(frozen=True)
class WriteResult:
    ingested: int  # batches ingested by this call (this one and older spooled ones)
    spooled: int  # batches left in the spool because the file was busy
    then: object = None  # what write_many's ``then`` answered


class Queue:
    """A queue file: short connections, migrations on first write, spool-then-ingest."""

    def __init__(self, path: str | os.PathLike, *, busy_timeout: float = 30.0,
                 spool_dir: str | os.PathLike | None = None):
        self.path = Path(path)
        self.busy_timeout = busy_timeout
        self.spool_dir = Path(spool_dir) if spool_dir else (
            self.path.parent / "spool" / self.path.stem)
        self._migrated = False
        self._held: HeldConnection | None = None

    # -- connections

    def _open(self, read_only: bool) -> duckdb.DuckDBPyConnection:
        try:
            return duckdb.connect(str(self.path), read_only=read_only)
        except duckdb.IOException as exc:
            text = str(exc)
            if "lock" in text.lower():
                raise QueueBusy(
                    f"the queue {self.path} is in use by another process "
                    f"({_lock_holder(text)}); try again when it is closed") from None
            raise QueueError(f"cannot open the queue {self.path}: {text}") from None
        except duckdb.Error as exc:
            raise QueueError(f"cannot open the queue {self.path}: {exc}") from None

    def _acquire(self, read_only: bool, wait: float | None) -> duckdb.DuckDBPyConnection:
        """Open the file, waiting up to ``wait`` seconds while another process holds it."""
        if read_only and not self.path.exists():
            raise QueueError(f"no queue at {self.path}: run `synth run` first, or name one "
                             "with --db or SYNTH_DB")
        if not read_only:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        deadline = time.monotonic() + (self.busy_timeout if wait is None else wait)
        delay = 0.05
        while True:
            try:
                con = self._open(read_only)
                break
            except QueueBusy:
                if time.monotonic() + delay > deadline:
                    raise
                time.sleep(delay)
                delay = min(delay * 2, 2.0)
        if not read_only and not self._migrated:
            try:
                migrate(con)
            except BaseException:
                con.close()
                raise
            self._migrated = True
        return con

    @contextlib.contextmanager
    def connect(self, read_only: bool = False, wait: float | None = None
                ) -> Iterator[duckdb.DuckDBPyConnection]:
        """A short connection; waits up to ``wait`` seconds while another process holds it.
        Inside ``holding()`` every connection of this process is the one held connection."""
        held = self._held
        if held is not None:
            with held.use(wait, read_only) as con:
                yield con
            return
        con = self._acquire(read_only, wait)
        try:
            yield con
        finally:
            con.close()

    @contextlib.contextmanager
    def holding(self, max_hold: float = 3.0) -> Iterator["HeldConnection"]:
        """Keep one read-write connection open across back-to-back uses (a run that writes
        a batch every few hundred milliseconds opens and checkpoints the file once, not once
        a batch). It is closed after ``max_hold`` seconds, whenever ``release`` is called
        (a writer that found nothing to do), and when the block ends, so other processes
        still get their turn."""
        held = self._held = HeldConnection(self, max_hold)
        try:
            yield held
        finally:
            self._held = None
            held.release()

    @contextlib.contextmanager
    def transaction(self, wait: float | None = None) -> Iterator[duckdb.DuckDBPyConnection]:
        with self.connect(wait=wait) as con:
            con.execute("BEGIN TRANSACTION")
            try:
                yield con
            except BaseException:
                con.execute("ROLLBACK")
                raise
            con.execute("COMMIT")

    # -- reads

    def query(self, sql: str, params: list | None = None, *, read_only: bool = True,
              wait: float = 0.0) -> tuple[list[str], list[tuple]]:
        """Run one statement and return (column names, rows); SQL errors become SQLError."""
        with self.connect(read_only=read_only, wait=wait) as con:
            try:
                cur = con.execute(sql, params or [])
                if cur.description is None:
                    return [], []
                cols = [d[0] for d in cur.description]
                return cols, cur.fetchall()
            except duckdb.Error as exc:
                raise SQLError(f"SQL error: {exc}") from None

    def copy_to(self, sql: str, params: list, dest: Path, fmt: str) -> None:
        """Write a query's rows to a file with DuckDB (one thread: same rows, same bytes)."""
        options = "FORMAT parquet, COMPRESSION zstd" if fmt == "parquet" else "FORMAT json"
        target = str(dest).replace("'", "''")
        with self.connect(read_only=True, wait=self.busy_timeout) as con:
            try:
                con.execute("SET threads = 1")
                con.execute(f"COPY ({sql}) TO '{target}' ({options})", params)
            except duckdb.Error as exc:
                raise SQLError(f"export failed: {exc}") from None

    def ensure(self) -> None:
        """Create the file and apply migrations."""
        with self.connect():
            pass

    # -- writes

    def write(self, batch: Batch, *, wait: float | None = None) -> WriteResult:
        """Write a batch in one transaction (after any batch still waiting in the spool).
        Never loses a batch: when the file stays busy past ``wait`` the batch is spooled to
        disk (WriteResult.spooled) and a later write ingests it."""
        return self.write_many([batch], wait=wait)

    def write_many(self, batches: list[Batch], *, wait: float | None = None,
                   then: Callable[[duckdb.DuckDBPyConnection], object] | None = None
                   ) -> WriteResult:
        """Like write, for several batches in one connection. ``then``, when given, runs in
        the same connection after the batches are in (not when they were spooled); its
        answer is WriteResult.then."""
        given = sum(1 for b in batches if len(b))
        batches = merge_batches([b for b in batches if len(b)])  # fewer, larger transactions
        try:
            with self.connect(wait=wait) as con:
                done = self._ingest_pending(con)  # older batches first, in order
                for batch in batches:
                    self._ingest(con, ((t, _arrow(c)) for t, c in batch_columns(batch)))
                return WriteResult(done + given, 0, then(con) if then else None)
        except QueueBusy:
            for batch in batches:
                _fsync_folder(self.spool(batch))  # the spool is now the only copy
            return WriteResult(0, len(self.pending_spool()))
        except duckdb.Error as exc:
            raise QueueError(f"writing to the queue {self.path} failed: {exc}") from None

    def spool(self, batch: Batch) -> Path:
        """Write a batch to the spool folder as Parquet files, one per table, renamed into
        place only when complete."""
        name = f"{time.time_ns():020d}-{uuid.uuid4().hex[:8]}"
        tmp = self.spool_dir / f".tmp-{name}"
        tmp.mkdir(parents=True, exist_ok=True)
        for table, columns in batch_columns(batch):
            pq.write_table(_arrow(columns), tmp / f"{table}.parquet", compression="zstd")
        final = self.spool_dir / name
        os.replace(tmp, final)
        return final

    def pending_spool(self) -> list[Path]:
        if not self.spool_dir.is_dir():
            return []
        return sorted(p for p in self.spool_dir.iterdir() if p.is_dir() and not p.name.startswith("."))

    def ingest_spool(self, *, wait: float | None = None) -> WriteResult:
        """Ingest every spooled batch, if the file can be had within ``wait``."""
        return self.write_many([], wait=wait)

    def _ingest_pending(self, con: duckdb.DuckDBPyConnection) -> int:
        # listed while holding the file: no other process can be ingesting now
        done = 0
        for folder in self.pending_spool():
            self._ingest(con, ((t, pq.read_table(folder / f"{t}.parquet")) for t in TABLES
                               if (folder / f"{t}.parquet").exists()))
            shutil.rmtree(folder, ignore_errors=True)
            done += 1
        self._sweep_partial()
        return done

    def _sweep_partial(self, older_than: float = 3600.0) -> None:
        """Remove half-written spool folders a killed process left (never ingested)."""
        if not self.spool_dir.is_dir():
            return
        now = time.time()
        for p in self.spool_dir.glob(".tmp-*"):
            try:
                if now - p.stat().st_mtime > older_than:
                    shutil.rmtree(p, ignore_errors=True)
            except OSError:
                pass

    def _ingest(self, con: duckdb.DuckDBPyConnection,
                tables: Iterable[tuple[str, "pa.Table"]]) -> None:
        """One batch, one transaction: idempotent upserts from Arrow tables, taken in order.

        Statements go to DuckDB as few scripts as possible: DuckDB lets go of the GIL for
        a whole script, and taking it back between statements costs a thread switch interval
        whenever another thread is busy in Python (a filter thread, say). A staged table of
        OVERLAP_ROWS rows or more is written on a helper thread while the next one is built
        (large batches gain more from that overlap than they lose in handovers)."""
        _columns_all(con)  # before any statement runs on the helper thread
        script = ["BEGIN TRANSACTION"]
        pending = None
        with ThreadPoolExecutor(max_workers=1) as pool, _no_gc():
            try:
                for table, arrow in tables:  # the next table is built while `pending` runs
                    if pending is not None:
                        pending.result()
                        pending = None
                    staged = f"staged_{table}"
                    con.register(staged, arrow)
                    script += _statements(con, table, staged, arrow.column_names)
                    if arrow.num_rows >= OVERLAP_ROWS:
                        pending = pool.submit(con.execute, ";\n".join(script))
                        script = []
                if pending is not None:
                    pending.result()
                    pending = None
                script.append("COMMIT")
                con.execute(";\n".join(script))
            except BaseException:
                if pending is not None:
                    pending.exception()  # wait for it; its error, if any, is this one
                try:
                    con.execute("ROLLBACK")
                except duckdb.Error:  # the transaction never began, or is already gone
                    pass
                raise


OVERLAP_ROWS = 10_000


def _statements(con: duckdb.DuckDBPyConnection, table: str, staged: str,
                names: list[str]) -> list[str]:
    """The SQL that upserts one staged table into its queue table."""
    src = "failures" if table == "resolved" else table
    cols = _columns(con, src)
    # typed view of the staged rows: Arrow's guesses (null columns, strings for JSON and
    # timestamps) cast to the table's own column types
    reader = "(SELECT " + ", ".join(f"CAST({n} AS {cols[n]}) AS {n}" for n in names) + \
             f" FROM {staged})"
    if table == "resolved":
        return [f"UPDATE failures SET resolved = true FROM {reader} r "
                "WHERE failures.stage = r.stage AND failures.repo = r.repo "
                "AND failures.number = r.number"]
    if table == "pr_files":  # a PR's file list is replaced whole
        return [f"DELETE FROM pr_files WHERE (repo, number) IN "
                f"(SELECT DISTINCT repo, number FROM {staged})",
                f"INSERT INTO pr_files BY NAME SELECT * FROM {reader}"]
    if table == "failures":
        return [f"INSERT INTO failures BY NAME SELECT * FROM {reader} "
                "ON CONFLICT (stage, repo, number) DO UPDATE SET reason = excluded.reason, "
                "message = excluded.message, detail = excluded.detail, "
                "transient = excluded.transient, attempts = failures.attempts + 1, "
                "last_at = excluded.last_at, run_id = excluded.run_id, resolved = false"]
    keys, updates = _UPSERT[table]
    action = ("DO UPDATE SET " + ", ".join(f"{c} = excluded.{c}" for c in updates)
              if updates else "DO NOTHING")
    return [f"INSERT INTO {table} BY NAME SELECT * FROM {reader} "
            f"ON CONFLICT ({', '.join(keys)}) {action}"]


class HeldConnection:
    """The connection ``Queue.holding`` keeps: used by one thread at a time (a lock), opened
    on first use, closed after ``max_hold`` seconds of being open, on ``release``, and after
    an error (a fresh connection is opened for the next use)."""

    def __init__(self, queue: Queue, max_hold: float):
        self.queue = queue
        self.max_hold = max_hold
        self._con: duckdb.DuckDBPyConnection | None = None
        self._since = 0.0
        self._lock = threading.RLock()

    @property
    def is_open(self) -> bool:
        return self._con is not None

    @contextlib.contextmanager
    def use(self, wait: float | None, read_only: bool = False
            ) -> Iterator[duckdb.DuckDBPyConnection]:
        """A cursor of the held connection: a handle of its own (its own pending result,
        transaction and staged tables, all gone when the use ends), the file opened once.
        A read while nothing is held opens the file read-only, as outside a run, so that
        it can share the file with another process that is only reading."""
        with self._lock:
            if self._con is None and read_only:
                con = self.queue._acquire(True, wait)
                try:
                    yield con
                finally:
                    con.close()
                return
            if self._con is None:
                self._con = self.queue._acquire(False, wait)
                self._since = time.monotonic()
            cur = self._con.cursor()
            try:
                yield cur
            except BaseException:
                cur.close()
                self._close()
                raise
            cur.close()
            if time.monotonic() - self._since > self.max_hold:
                self._close()

    def release(self) -> None:
        with self._lock:
            self._close()

    def _close(self) -> None:
        con, self._con = self._con, None
        if con is not None:
            con.close()


@contextlib.contextmanager
def _no_gc():
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _arrow(columns: dict[str, list]) -> "pa.Table":
    """Columns as an Arrow table (C-speed conversion of each column)."""
    return pa.table({n: pa.array(v) for n, v in columns.items()})


def _arrow_tables(columns: dict[str, dict[str, list]]) -> dict[str, "pa.Table"]:
    return {table: _arrow(cols) for table, cols in columns.items()}


_COLUMNS: dict[str, dict[str, str]] = {}


def _fsync_folder(folder: Path) -> None:
    """Flush a spooled batch to disk (files, then the folder entry)."""
    try:
        for f in folder.iterdir():
            with open(f, "rb") as fh:
                os.fsync(fh.fileno())
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError:
        pass


def _columns(con: duckdb.DuckDBPyConnection, table: str) -> dict[str, str]:
    """A table's column types (cached: the schema is fixed once migrated)."""
    if table not in _COLUMNS:
        _COLUMNS[table] = _columns_uncached(con, table)
    return _COLUMNS[table]


def _columns_all(con: duckdb.DuckDBPyConnection) -> None:
    """Fill the column-type cache for every queue table, in one query."""
    if all(t in _COLUMNS for t in TABLES if t != "resolved"):
        return
    rows = con.execute("SELECT table_name, column_name, data_type FROM information_schema.columns "
                       "WHERE table_schema = 'main' ORDER BY table_name, ordinal_position").fetchall()
    found: dict[str, dict[str, str]] = {}
    for table, name, dtype in rows:
        found.setdefault(table, {})[name] = dtype
    _COLUMNS.update(found)


def _columns_uncached(con: duckdb.DuckDBPyConnection, table: str) -> dict[str, str]:
    rows = con.execute("SELECT column_name, data_type FROM information_schema.columns "
                       "WHERE table_name = ? ORDER BY ordinal_position", [table]).fetchall()
    return {name: dtype for name, dtype in rows}


def _lock_holder(text: str) -> str:
    marker = "Conflicting lock is held in"
    if marker in text:
        return "held by " + text.split(marker, 1)[1].strip().rstrip(".")
    return "locked"


# ---------------------------------------------------------------- reads the pipeline needs

def _pr_from_row(row: dict, files: list[dict]) -> PullRequest:
    from .models import FileChange, LinkedIssue
    issues = row["linked_issues"]
    issues = json.loads(issues) if isinstance(issues, str) else (issues or [])
    return PullRequest(
        repo=row["repo"], number=row["number"], title=row["title"], body=row["body"],
        author=row["author"] or "", merged_at=row["merged_at"], base_sha=row["base_sha"] or "",
        merge_sha=row["merge_sha"] or "", url=row["url"] or "", labels=tuple(row["labels"] or ()),
        linked_issues=tuple(LinkedIssue(i["number"], i.get("title", ""), i.get("body", ""))
                            for i in issues),
        files=tuple(FileChange(
            path=f["path"], status=f["status"], additions=f["additions"],
            deletions=f["deletions"], patch=f["patch"], binary=f["is_binary"],
            old_path=f["old_path"], patch_bytes=f["patch_bytes"] or 0,
            patch_truncated=f["patch_truncated"], undecodable=f["undecodable"]) for f in files),
        author_is_bot=row["author_is_bot"], head_sha=row["head_sha"], source=row["source"],
        additions_total=row["additions"], deletions_total=row["deletions"],
        changed_files_total=row["changed_files"])


def load_pull_requests(queue: Queue, keys: list[tuple[str, int]]) -> list[PullRequest]:
    """Full PRs (with files) for the given keys, in the order given."""
    if not keys:
        return []
    with queue.connect(read_only=True) as con:
        wanted = ("(SELECT unnest(?::VARCHAR[]) AS repo, unnest(?::INTEGER[]) AS number)")
        params = [[k[0] for k in keys], [k[1] for k in keys]]
        cur = con.execute(f"SELECT p.* FROM pull_requests p JOIN {wanted} w USING (repo, number)",
                          params)
        cols = [d[0] for d in cur.description]
        prs = {(r[0], r[1]): dict(zip(cols, r)) for r in cur.fetchall()}
        cur = con.execute(f"SELECT f.* FROM pr_files f JOIN {wanted} w USING (repo, number) "
                          "ORDER BY f.repo, f.number, f.path", params)
        fcols = [d[0] for d in cur.description]
        files: dict[tuple[str, int], list[dict]] = {}
        for r in cur.fetchall():
            d = dict(zip(fcols, r))
            files.setdefault((d["repo"], d["number"]), []).append(d)
    return [_pr_from_row(prs[k], files.get(k, [])) for k in keys if k in prs]


def crawl_state(queue: Queue, repo: str, filter_version: str, source: str
                ) -> tuple[set[int] | None, "Cursor | None"]:
    """What a crawl of one repository starts from, in one connection: the PR numbers already
    decided with this filter version (None when the queue is busy: the caller then re-reads
    everything, as writes are idempotent), and the source's saved cursor."""
    from .models import Cursor
    if not queue.path.exists():
        return set(), None
    try:
        with queue.connect(read_only=True, wait=queue.busy_timeout) as con:
            known = {r[0] for r in con.execute(
                "SELECT number FROM decisions WHERE repo = ? AND filter_version = ?",
                [repo, filter_version]).fetchall()}
            row = con.execute("SELECT watermark, cursor, state FROM cursors WHERE repo = ? "
                              "AND source = ?", [repo, source]).fetchone()
    except QueueBusy:
        return None, None
    if not row:
        return known, None
    watermark, cur, state = row
    state = json.loads(state) if isinstance(state, str) else (state or {})
    return known, Cursor(repo, source, watermark, cur, state)


def pending_rewrites(queue: Queue, rewriter: str, model: str | None, prompt_version: str,
                     repos: list[str] | None = None, limit: int = 0) -> list[tuple[str, int]]:
    """Kept PRs (by their latest decision) that have no task for this rewriter yet."""
    if not queue.path.exists():
        return []
    sql = ("SELECT c.repo, c.number FROM candidates c WHERE c.kept AND NOT EXISTS ("
           "SELECT 1 FROM tasks t WHERE t.repo = c.repo AND t.number = c.number "
           "AND t.prompt_version = ? AND t.rewriter = ? AND coalesce(t.model, '') = ?)")
    params: list = [prompt_version, rewriter, model or ""]
    if repos:
        sql += " AND c.repo IN (SELECT unnest(?::VARCHAR[]))"
        params.append(repos)
    sql += " ORDER BY c.merged_at DESC NULLS LAST, c.repo, c.number"
    if limit:
        sql += f" LIMIT {int(limit)}"
    _, rows = queue.query(sql, params, wait=queue.busy_timeout)
    return [(r[0], r[1]) for r in rows]


def repo_licenses(queue: Queue) -> dict[str, str | None]:
    if not queue.path.exists():
        return {}
    _, rows = queue.query("SELECT repo, license FROM repos", wait=queue.busy_timeout)
    return dict(rows)


def abandon_runs(con: duckdb.DuckDBPyConnection, current_run_id: str) -> int:
    """Runs still 'running' while we hold the run lock died without finishing: mark them
    interrupted (one statement, so atomic); how many there were."""
    row = con.execute("UPDATE runs SET status = 'interrupted' WHERE status = 'running' "
                      "AND run_id <> ?", [current_run_id]).fetchone()
    return int(row[0]) if row else 0


def dedupe_tasks(queue: Queue, threshold: float = 0.8):
    """Sign tasks that have no MinHash signature yet, then flag every task whose query or
    patch is a near-copy of an older task's. Signatures are stored, so a run pays only for
    its new tasks."""
    from .dedupe import shingles, signature, twins_from_signatures
    from .diffs import changed_lines
    res = DedupeResult()
    if not queue.path.exists():
        return res
    with queue.connect(wait=queue.busy_timeout) as con:
        todo = con.execute(
            "SELECT t.task_id, t.query, t.repo, t.number FROM tasks t WHERE NOT EXISTS ("
            "SELECT 1 FROM task_signatures s WHERE s.task_id = t.task_id)").fetchall()
        patches: dict[tuple[str, int], list[str]] = {}
        if todo:
            rows = con.execute(
                "SELECT f.repo, f.number, f.patch FROM pr_files f JOIN (SELECT DISTINCT repo, number "
                "FROM tasks t WHERE NOT EXISTS (SELECT 1 FROM task_signatures s WHERE "
                "s.task_id = t.task_id)) USING (repo, number) WHERE f.patch IS NOT NULL").fetchall()
            for repo, number, patch in rows:
                patches.setdefault((repo, number), []).extend(changed_lines(patch)[0])
        new_rows = []
        for task_id, query, repo, number in todo:
            new_rows.append((task_id, "query", signature(shingles(query or ""))))
            new_rows.append((task_id, "patch", signature(shingles("\n".join(
                patches.get((repo, number), []))))))
        con.execute("BEGIN TRANSACTION")
        try:
            if new_rows:
                con.executemany("INSERT OR REPLACE INTO task_signatures VALUES (?, ?, ?)",
                                [[t, k, list(s) if s else None] for t, k, s in new_rows])
            res.signed = len(todo)
            best: dict[str, tuple[str, str, float]] = {}
            for kind in ("query", "patch"):
                items = con.execute(
                    "SELECT s.task_id, s.sig FROM task_signatures s JOIN tasks t USING (task_id) "
                    "LEFT JOIN pull_requests p ON p.repo = t.repo AND p.number = t.number "
                    "WHERE s.kind = ? ORDER BY p.merged_at NULLS LAST, t.created_at, t.task_id",
                    [kind]).fetchall()
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


def load_http_cache(queue: Queue, prefix: str) -> dict[str, tuple[str, object]]:
    if not queue.path.exists():
        return {}
    _, rows = queue.query("SELECT url, etag, body FROM http_cache WHERE starts_with(url, ?)",
                          [prefix], wait=queue.busy_timeout)
    return {u: (e, json.loads(b) if isinstance(b, str) else b) for u, e, b in rows}


def save_http_cache(queue: Queue, entries: dict[str, tuple[str, object]]) -> None:
    if not entries:
        return
    now = utcnow()
    with queue.transaction() as con:
        con.executemany("INSERT OR REPLACE INTO http_cache VALUES (?, ?, ?, ?)",
                        [[u, e, json.dumps(b), now] for u, (e, b) in entries.items()])


def github_repos(queue: Queue, min_stars: int) -> list[str]:
    """Discovered repositories to crawl."""
    if not queue.path.exists():
        return []
    _, rows = queue.query("SELECT repo FROM repos WHERE source = 'github' AND NOT archived AND "
                          "NOT fork AND coalesce(stars, 0) >= ? ORDER BY stars DESC, repo",
                          [min_stars], wait=queue.busy_timeout)
    return [r[0] for r in rows]
