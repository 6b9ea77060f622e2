"""The queue file and its connections: the only place that opens DuckDB.

DuckDB allows one writing process per file and no readers beside it. Connections are short:
open, one transaction, close. A connection that finds the file busy waits (through the run's
clock, so a stop ends the wait) up to its bound; past it the caller gets QueueBusy (a write
then spools, see writes.py). During a run, ``holding`` keeps one read-write connection open
across back-to-back uses and lets go of it often, so curators get their turn.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterator

import duckdb

from ..clock import Clock
from ..errors import QueueBusy, QueueError, SQLError
from .journal import Journal
from .schema import migrate
from .turns import MAX_YIELD, Turns

log = logging.getLogger("synth.queue")

if TYPE_CHECKING:
    from ..models import Batch
    from .writes import WriteResult


class Queue:
    """A queue file: short connections, migrations on first write, spool-then-ingest."""

    def __init__(self, path: str | os.PathLike, *, busy_timeout: float = 30.0,
                 spool_dir: str | os.PathLike | None = None, clock: Clock | None = None):
        self.path = Path(path)
        self.busy_timeout = busy_timeout
        self.spool_dir = Path(spool_dir) if spool_dir else (
            self.path.parent / "spool" / self.path.stem)
        self.clock = clock or Clock()
        self.turns = Turns(self.path)  # curators and a run take turns (turns.py)
        self.journal = Journal(self.path)  # review actions waiting for the file (journal.py)
        self._migrated = False
        self._held: HeldConnection | None = None
        self._column_types: dict[str, dict[str, str]] | None = None

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
        """Open the file, waiting up to ``wait`` seconds while another process holds it
        (Stopped when the run is asked to stop meanwhile)."""
        if read_only and not self.path.exists():
            raise QueueError(f"no queue at {self.path}: run `synth run` first, or name one "
                             "with --db or SYNTH_DB")
        if not read_only:
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise QueueError(f"cannot create the folder of the queue {self.path}: "
                                 f"{exc.strerror}") from None
        clock = self.clock
        limit = self.busy_timeout if wait is None else wait
        deadline = clock.monotonic() + limit
        delay = 0.05
        told = False
        while True:
            try:
                con = self._open(read_only)
                break
            except QueueBusy as exc:
                left = deadline - clock.monotonic()
                if left <= 0:
                    raise
                if not told and limit >= 5:
                    log.info("%s; waiting up to %.0f s", exc, limit)
                    told = True
                # short steps: the holder may let go for a moment only (a run between batches)
                clock.sleep(min(delay, left))
                delay = min(delay * 2, 0.05)
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
        limit = self.busy_timeout if wait is None else wait
        with self.turns.waiting(), self.turns.turn(not read_only, self.clock, limit):
            # a run lets go of the file for this process meanwhile; curators take turns
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

    def column_types(self, con: duckdb.DuckDBPyConnection) -> dict[str, dict[str, str]]:
        """Every queue table's column types, read once per Queue (the schema is fixed once
        the file is migrated, which the first write does)."""
        if self._column_types is None:
            found: dict[str, dict[str, str]] = {}
            for table, name, dtype in con.execute(
                    "SELECT table_name, column_name, data_type FROM information_schema.columns "
                    "WHERE table_schema = 'main' ORDER BY table_name, ordinal_position").fetchall():
                found.setdefault(table, {})[name] = dtype
            self._column_types = found
        return self._column_types

    # -- one statement

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

    def checkpoint(self, wait: float = 0.0) -> None:
        """Fold the write-ahead log into the file now (what closing the file does)."""
        with self.connect(wait=wait) as con:
            try:
                con.execute("CHECKPOINT")
            except duckdb.Error as exc:
                raise QueueError(f"checkpoint of the queue {self.path} failed: {exc}") from None

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

    # -- writes (writes.py)

    def write(self, batch: "Batch", *, wait: float | None = None) -> "WriteResult":
        """Write a batch in one transaction (after any batch still waiting in the spool).
        Never loses a batch: when the file stays busy past ``wait`` the batch is spooled to
        disk (WriteResult.spooled) and a later write ingests it."""
        from .writes import write_many
        return write_many(self, [batch], wait=wait)

    def write_many(self, batches: list["Batch"], *, wait: float | None = None,
                   then: Callable[[duckdb.DuckDBPyConnection], object] | None = None
                   ) -> "WriteResult":
        from .writes import write_many
        return write_many(self, batches, wait=wait, then=then)

    def pending_spool(self) -> list[Path]:
        from .writes import pending_spool
        return pending_spool(self)


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
        self.yields = 0  # times the run let go of the file for waiting curators

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
            self._give_way()
            if self._con is None and read_only:
                con = self.queue._acquire(True, wait)
                try:
                    yield con
                finally:
                    con.close()
                return
            if self._con is None:
                self._con = self.queue._acquire(False, wait)
                self._since = self.queue.clock.monotonic()
            cur = self._con.cursor()
            try:
                yield cur
            except BaseException:
                cur.close()
                self._close()
                raise
            cur.close()
            if self.queue.clock.monotonic() - self._since > self.max_hold \
                    or self.queue.turns.waiters():
                self._close()

    def _give_way(self) -> None:
        """Curators wait for the file: let go of it until they are done (at most MAX_YIELD
        seconds, so that a stream of them cannot stall the run)."""
        turns, clock = self.queue.turns, self.queue.clock
        if not turns.waiters():
            return
        self._close()
        self.yields += 1
        deadline = clock.monotonic() + MAX_YIELD
        while turns.waiters() and clock.monotonic() < deadline:
            clock.sleep(0.01)

    def release(self) -> None:
        with self._lock:
            self._close()

    def _close(self) -> None:
        con, self._con = self._con, None
        if con is not None:
            con.close()


def _lock_holder(text: str) -> str:
    marker = "Conflicting lock is held in"
    if marker in text:
        return "held by " + text.split(marker, 1)[1].strip().rstrip(".")
    return "locked"
