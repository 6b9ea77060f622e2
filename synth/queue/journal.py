"""The review journal: curator actions that wait for the queue file, never refused, never lost.

DuckDB lets one process write a file at a time. A review action is first appended to
``<queue>.journal`` (one JSON line per action: task, reviewer, action, note, edited content,
the time the curator acted and a unique id), under an exclusive ``flock`` on
``<queue>.journal.lock`` and fsynced, so it survives any crash. Whichever synth process next
writes to the queue (the run's writer between batches, or the next command) applies every
journaled action in the order they were taken, in one transaction, each recorded in
``review_events`` with its id (``journal_id``) and the time the curator acted; then the
journal is emptied. An action whose id is already in ``review_events`` is not applied again,
so a crash between the commit and the emptying applies nothing twice.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import uuid
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterator

from ..errors import QueueError


@dataclass(frozen=True)
class JournalRecord:
    task_id: str
    reviewer: str
    action: str  # approve | reject | needs-edit | skip | edit
    acted_at: str = ""  # ISO time, naive UTC: when the curator acted (stamped by append)
    note: str | None = None
    content: dict | None = None  # an edit's new task fields (validated, scrubbed)
    reviews_required: int = 1
    journal_id: str = field(default_factory=lambda: uuid.uuid4().hex)

    @property
    def acted(self) -> datetime:
        return datetime.fromisoformat(self.acted_at)


class Journal:
    def __init__(self, db_path: str | os.PathLike):
        self.path = Path(f"{db_path}.journal")
        self.lock_path = Path(f"{db_path}.journal.lock")

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """The journal for this process alone (other processes wait at most a moment: the
        lock is held to append a line, or while a batch of actions is applied)."""
        try:
            self.lock_path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise QueueError(f"cannot open the review journal's lock {self.lock_path}: "
                             f"{exc.strerror}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)

    def append(self, records: list[JournalRecord]) -> list[JournalRecord]:
        """Append actions atomically (one write under the lock) and make them durable. Each
        is stamped with the time it is taken, under the lock: the journal's order is the
        order in time, across every process. Returns the records as stamped."""
        with self.locked():
            now = datetime.now(timezone.utc).replace(tzinfo=None).isoformat()
            records = [replace(r, acted_at=now) for r in records]
            data = "".join(json.dumps(asdict(r), sort_keys=True) + "\n" for r in records).encode()
            try:
                fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
                try:
                    os.write(fd, data)
                    os.fsync(fd)
                finally:
                    os.close(fd)
            except OSError as exc:
                raise QueueError(f"cannot write the review journal {self.path}: "
                                 f"{exc.strerror}") from None
        return records

    def read(self) -> list[JournalRecord]:
        """The journaled actions in the order they were taken (call under ``locked``). A
        line cut short by a crash mid-append is skipped: its action was never acknowledged."""
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return []
        except OSError as exc:
            raise QueueError(f"cannot read the review journal {self.path}: {exc.strerror}") from None
        out = []
        for line in text.splitlines():
            try:
                out.append(JournalRecord(**json.loads(line)))
            except (ValueError, TypeError):
                continue
        return out  # appended in time order (append stamps under the lock)

    def clear(self) -> None:
        """Empty the journal (call under ``locked``, after its actions are committed)."""
        try:
            with open(self.path, "r+b") as fh:
                fh.truncate(0)
                os.fsync(fh.fileno())
        except FileNotFoundError:
            pass
        except OSError as exc:
            raise QueueError(f"cannot empty the review journal {self.path}: {exc.strerror}") from None

    def pending(self) -> bool:
        try:
            return self.path.stat().st_size > 0
        except OSError:
            return False
