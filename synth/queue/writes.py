"""Writing batches: Arrow upserts in one transaction per batch, and the spool.

A batch becomes Arrow tables (rows.py), staged in DuckDB and upserted into the queue's
tables with idempotent statements, so ingesting the same batch twice gives the same rows. A
batch that finds the file busy past its wait is spooled to disk (Parquet, one file per table,
in a folder renamed into place when complete, fsynced) and ingested first by the next write,
in this run or the next. A crash at any point leaves either nothing or a whole batch.
"""

from __future__ import annotations

import contextlib
import gc
import json
import os
import shutil
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterable

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

from ..errors import QueueBusy, QueueError, Stopped
from ..models import Batch, merge_batches
from .rows import batch_columns
from .schema import TABLES, utcnow

if TYPE_CHECKING:
    from .store import Queue

OVERLAP_ROWS = 10_000  # a staged table this big is written while the next one is built


@dataclass(frozen=True)
class WriteResult:
    ingested: int  # batches ingested by this call (this one and older spooled ones)
    spooled: int  # batches left in the spool because the file was busy
    then: object = None  # what write_many's ``then`` answered


def write_many(queue: "Queue", batches: list[Batch], *, wait: float | None = None,
               then: Callable[[duckdb.DuckDBPyConnection], object] | None = None) -> WriteResult:
    """Write batches in one connection, after any batch still waiting in the spool, each in
    one transaction. Never loses a batch: when the file stays busy past ``wait`` (or a stop
    ends the wait), the batches are spooled to disk and a later write ingests them.
    ``then``, when given, runs in the same connection after the batches are in (not when
    they were spooled); its answer is WriteResult.then."""
    given = sum(1 for b in batches if len(b))
    batches = merge_batches([b for b in batches if len(b)])  # fewer, larger transactions
    try:
        with queue.connect(wait=wait) as con:
            done = ingest_pending(queue, con)  # older batches first, in order
            for batch in batches:
                ingest(queue, con, ((t, _arrow(c)) for t, c in batch_columns(batch)))
            if queue.journal.pending():  # review actions taken while the file was held
                from .curation import apply_journal
                apply_journal(queue, con)
            return WriteResult(done + given, 0, then(con) if then else None)
    except (QueueBusy, Stopped):
        for batch in batches:
            _fsync_folder(spool(queue, batch))  # the spool is now the only copy
        return WriteResult(0, len(pending_spool(queue)))
    except duckdb.Error as exc:
        raise QueueError(f"writing to the queue {queue.path} failed: {exc}") from None


def abandon_runs(con: duckdb.DuckDBPyConnection, current_run_id: str) -> int:
    """Runs still 'running' while we hold the run lock died without finishing: mark them
    interrupted (one statement, so atomic); how many there were."""
    row = con.execute("UPDATE runs SET status = 'interrupted' WHERE status = 'running' "
                      "AND run_id <> ?", [current_run_id]).fetchone()
    return int(row[0]) if row else 0


def save_http_cache(queue: "Queue", entries: dict[str, tuple[str, object]]) -> None:
    if not entries:
        return
    now = utcnow()
    with queue.transaction() as con:
        con.executemany("INSERT OR REPLACE INTO http_cache VALUES (?, ?, ?, ?)",
                        [[u, e, json.dumps(b), now] for u, (e, b) in entries.items()])


def spool(queue: "Queue", batch: Batch) -> Path:
    """Write a batch to the spool folder as Parquet files, one per table, renamed into
    place only when complete."""
    name = f"{time.time_ns():020d}-{uuid.uuid4().hex[:8]}"
    tmp = queue.spool_dir / f".tmp-{name}"
    try:
        tmp.mkdir(parents=True, exist_ok=True)
        for table, columns in batch_columns(batch):
            pq.write_table(_arrow(columns), tmp / f"{table}.parquet", compression="zstd")
        final = queue.spool_dir / name
        os.replace(tmp, final)
    except OSError as exc:
        raise QueueError(f"the queue {queue.path} is busy and its spool folder "
                         f"{queue.spool_dir} cannot be written ({exc.strerror}): this batch "
                         "is lost; the next run redoes it") from None
    return final


def pending_spool(queue: "Queue") -> list[Path]:
    if not queue.spool_dir.is_dir():
        return []
    return sorted(p for p in queue.spool_dir.iterdir()
                  if p.is_dir() and not p.name.startswith("."))


def ingest_pending(queue: "Queue", con: duckdb.DuckDBPyConnection) -> int:
    """Ingest every spooled batch, oldest first (listed while holding the file: no other
    process can be ingesting now)."""
    done = 0
    for folder in pending_spool(queue):
        ingest(queue, con, ((t, pq.read_table(folder / f"{t}.parquet")) for t in TABLES
                            if (folder / f"{t}.parquet").exists()))
        shutil.rmtree(folder, ignore_errors=True)
        done += 1
    _sweep_partial(queue)
    return done


def _sweep_partial(queue: "Queue", older_than: float = 3600.0) -> None:
    """Remove half-written spool folders a killed process left (never ingested)."""
    if not queue.spool_dir.is_dir():
        return
    now = time.time()
    for p in queue.spool_dir.glob(".tmp-*"):
        try:
            if now - p.stat().st_mtime > older_than:
                shutil.rmtree(p, ignore_errors=True)
        except OSError:
            pass


def ingest(queue: "Queue", con: duckdb.DuckDBPyConnection,
           tables: Iterable[tuple[str, "pa.Table"]]) -> None:
    """One batch, one transaction: idempotent upserts from Arrow tables, taken in order.

    Statements go to DuckDB as few scripts as possible: DuckDB lets go of the GIL for a
    whole script, and taking it back between statements costs a thread switch interval
    whenever another thread is busy in Python (a filter thread, say). A staged table of
    OVERLAP_ROWS rows or more is written on a helper thread while the next one is built
    (large batches gain more from that overlap than they lose in handovers)."""
    columns = queue.column_types(con)  # before any statement runs on the helper thread
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
                script += _statements(columns, table, staged, arrow.column_names)
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


# What an ingest does per table: the conflict target and the columns a re-ingest updates.
# Columns not listed (first_seen_at, created_at, status, revision, ...) keep their first value.
UPSERT: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "repos": (("repo",), ("stars", "language", "license", "default_branch", "archived", "fork",
                          "updated_at")),
    "pull_requests": (("repo", "number"), (
        "title", "body", "author", "author_is_bot", "merged_at", "base_sha", "merge_sha",
        "head_sha", "url", "labels", "linked_issues", "additions", "deletions", "changed_files",
        "updated_at", "head_ref", "base_ref")),
    "decisions": (("repo", "number", "filter_version"), ("kept", "reasons", "metrics")),
    "chains": (("chain_id",), ("repo", "members", "links", "link_kinds", "kept", "reasons",
                               "figures", "first_merged_at", "last_merged_at", "rules_version",
                               "detected_at", "run_id")),
    "tasks": (("task_id",), ()),  # a stored task is never overwritten by a rewrite
    "cursors": (("repo", "source"), ("watermark", "cursor", "state", "updated_at")),
    "runs": (("run_id",), ("ended_at", "status", "counts", "errors", "config_hash")),
}




def _statements(columns: dict[str, dict[str, str]], table: str, staged: str,
                names: list[str]) -> list[str]:
    """The SQL that upserts one staged table into its queue table."""
    src = {"resolved": "failures", "chain_repos": "chains"}.get(table, table)
    cols = columns[src]
    # typed view of the staged rows: Arrow's guesses (null columns, strings for JSON and
    # timestamps) cast to the table's own column types
    reader = "(SELECT " + ", ".join(f"CAST({n} AS {cols[n]}) AS {n}" for n in names) + \
             f" FROM {staged})"
    if table == "resolved":
        return [f"UPDATE failures SET resolved = true FROM {reader} r "
                "WHERE failures.stage = r.stage AND failures.repo = r.repo "
                "AND failures.number = r.number"]
    if table == "chain_repos":  # a repository's chains are replaced whole
        return [f"DELETE FROM chains WHERE repo IN (SELECT repo FROM {staged})"]
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
    keys, updates = UPSERT[table]
    action = ("DO UPDATE SET " + ", ".join(f"{c} = excluded.{c}" for c in updates)
              if updates else "DO NOTHING")
    out = [f"INSERT INTO {table} BY NAME SELECT * FROM {reader} "
           f"ON CONFLICT ({', '.join(keys)}) {action}"]
    if table == "decisions":  # a PR's tasks follow its latest decision (review_queue)
        out.append(f"UPDATE tasks SET pr_dropped = NOT d.kept FROM {staged} d "
                   "WHERE tasks.repo = d.repo AND tasks.number = d.number "
                   "AND coalesce(tasks.kind, 'pr') = 'pr' "
                   "AND tasks.pr_dropped IS DISTINCT FROM (NOT d.kept)")
    return out


@contextlib.contextmanager
def _no_gc():
    """No cyclic garbage collection while a batch becomes Arrow columns and is written:
    the batch's many small objects would trigger several full collections, which cost
    more than the write (measured in tests/benchmarks/bench_curation.py)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _arrow(columns: dict[str, list]) -> "pa.Table":
    """Columns as an Arrow table (C-speed conversion of each column)."""
    return pa.table({n: _array(v) for n, v in columns.items()})


def _array(values: list) -> "pa.Array":
    """One column, its Arrow type told from its first value: left to pyarrow, the type is
    inferred from every value first, which costs twenty times the conversion on a batch's
    patch texts. A column that does not fit the type its first value suggests (an int
    among floats) is inferred after all."""
    first = next((x for x in values if x is not None), None)
    typ = _ARROW_TYPES.get(type(first))
    if typ is not None:
        try:
            return pa.array(values, type=typ)
        except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError):
            pass
    return pa.array(values)


_ARROW_TYPES = {str: pa.string(), bool: pa.bool_(), int: pa.int64(), float: pa.float64(),
                datetime: pa.timestamp("us")}


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
