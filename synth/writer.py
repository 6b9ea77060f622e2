"""The run's writer: one thread that owns the queue's writes and the run's stats.

Stages hand it batches (rows plus the counter deltas that count them); it writes them in
order, back-to-back ones in one connection, and only then adds their counters and failures
to the run's stats, so the run record never counts what was not saved. Every few seconds the
run record rides along with a batch, in the same transaction. A batch still in memory when
the process is killed was never acknowledged: nothing it holds (cursors included) reached
the queue, so the next run redoes it.
"""

from __future__ import annotations

import logging
import queue as stdqueue
import threading
from typing import Callable

from .clock import Clock
from .errors import QueueBusy, Stopped
from .models import Batch, RunSummary
from .queue import Queue, WriteResult

log = logging.getLogger("synth.writer")

RUN_RECORD_EVERY = 2.0  # seconds between updates of a running run's record
STOPPING_WAIT = 0.5  # once a stop is asked, a busy file is waited for this long, then spooled
_CHECKPOINT = object()  # in the thread's queue: fold the write-ahead log into the file


class Writer:
    """Writes batches on a thread of its own, in order. At most ``depth`` batches wait in
    memory; a write error is raised on the caller's next put or flush."""

    def __init__(self, queue: Queue, stats: RunSummary, run_row: Callable[[str], dict],
                 clock: Clock, *, depth: int = 4, idle_after: float = 0.5,
                 on_idle: Callable[[], None] | None = None,
                 on_written: Callable[[list[Batch]], None] | None = None):
        self.queue = queue
        self.stats = stats  # owned by this writer's thread while it runs
        self.run_row = run_row
        self.clock = clock
        self.idle_after = idle_after
        self.on_idle = on_idle  # nothing came for a while: let go of the file
        self.on_written = on_written  # batches are in (or spooled)
        self.spooled = 0  # batches waiting in the spool after the last write
        self._q: stdqueue.Queue = stdqueue.Queue(maxsize=depth)
        self._error: BaseException | None = None
        self._closed = False
        self._record_due = float("-inf")
        self._thread = threading.Thread(target=self._loop, name="synth-writer", daemon=True)
        self._thread.start()

    # -- the thread

    def _loop(self) -> None:
        while True:
            try:
                group = [self._q.get(timeout=self.idle_after)]
            except stdqueue.Empty:
                if self.on_idle is not None:
                    try:
                        self.on_idle()
                    except BaseException as exc:  # handed to the caller
                        self._error = self._error or exc
                continue
            while group[-1] is not None:  # whatever else waits goes in the same connection
                try:
                    group.append(self._q.get_nowait())
                except stdqueue.Empty:
                    break
            batches = [b for b in group if isinstance(b, Batch)]
            try:
                if batches and self._error is None:
                    self._write(batches)
                if _CHECKPOINT in group and self._error is None:
                    self._checkpoint()
            except BaseException as exc:  # handed to the caller
                self._error = exc
            finally:
                for _ in group:
                    self._q.task_done()
            if group[-1] is None:
                return

    def _write(self, batches: list[Batch], final: bool = False) -> WriteResult:
        for b in batches:  # counted first: the run record written with them includes them
            self.stats.take(b)
        now = self.clock.monotonic()
        if final or now >= self._record_due:
            batches[-1].run = self.run_row(self.stats.status)
            self._record_due = now + RUN_RECORD_EVERY
        wait = None
        if self.spooled or self.clock.stopping:  # busy before, or stopping: spool quickly
            wait = min(STOPPING_WAIT, self.queue.busy_timeout)
        result = self.queue.write_many(batches, wait=wait)
        self.stats.inc("queue/batches", len(batches))
        self.spooled = result.spooled
        if result.spooled:
            self.stats.counts["queue/spooled_pending"] = result.spooled
        else:
            self.stats.counts.pop("queue/spooled_pending", None)
        if result.ingested > len([b for b in batches if len(b)]):
            self.stats.inc("queue/ingested_from_spool",
                           result.ingested - len([b for b in batches if len(b)]))
        if self.on_written is not None:
            self.on_written(batches)
        return result

    def _checkpoint(self) -> None:
        """What a close would do at the end, done now: the file may be busy (another
        process's turn) or stopping, and then the close does it as before."""
        try:
            self.queue.checkpoint(wait=0.0)
        except (QueueBusy, Stopped):
            pass

    # -- the callers

    def _raise(self) -> None:
        if self._error is not None:
            err, self._error = self._error, None
            raise err

    def put(self, batch: Batch) -> None:
        """Hand over a batch (blocks while ``depth`` batches wait). After close, a batch is
        dropped: it was never acknowledged, so the next run redoes its work."""
        if self._closed:
            return
        self._raise()
        self._q.put(batch)

    def checkpoint(self) -> None:
        """Fold what was written into the queue file now, on the writer's thread, while the
        caller goes on (the run's last step, chain detection, holds the GIL; the checkpoint
        is DuckDB's own work, and the run's final close then has little left to do)."""
        if not self._closed:
            self._raise()
            self._q.put(_CHECKPOINT)

    def flush(self) -> None:
        """Wait until every handed-over batch is written."""
        self._q.join()
        self._raise()

    def close(self, final: Batch | None = None) -> WriteResult | None:
        """Write what waits, stop the thread, then write ``final`` (the run record as it
        ends) from the caller's thread. Write errors are raised."""
        if not self._closed:
            self._closed = True
            if self._thread.is_alive():
                self._q.join()
                self._q.put(None)
                self._thread.join()
        error, self._error = self._error, None
        result = self._write([final], final=True) if final is not None else None
        if error is not None:
            raise error
        return result
