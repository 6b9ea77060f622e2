"""The single-run lock: at most one `synth run` per queue file.

An advisory ``flock`` on ``<queue>.run.lock``. The kernel releases it when the holder dies,
however it dies (SIGKILL included), so a crashed run never blocks the next one; the file
keeps the holder's pid so a second run can say who holds it, and the next run can tell it
took over from a run that did not finish.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import time
from pathlib import Path

from .errors import QueueError, RunLocked


class RunLock:
    def __init__(self, db_path: str | os.PathLike):
        self.path = Path(f"{db_path}.run.lock")
        self._fh = None
        self.previous: dict | None = None  # the record a crashed holder left, if any

    def acquire(self) -> "RunLock":
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fh = open(self.path, "a+", encoding="utf-8")
        except OSError as exc:
            raise QueueError(f"cannot create the run lock {self.path} beside the queue: "
                             f"{exc.strerror}") from None
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = _read(fh)
            fh.close()
            who = f"pid {holder.get('pid')} on {holder.get('host')}, since {holder.get('since')}" \
                if holder else "another process"
            raise RunLocked(f"another synth run is using {self.path.name[:-9]} ({who}); "
                            "this run exits without doing anything") from None
        left = _read(fh)
        if left.get("pid") and not left.get("released"):
            self.previous = left
        fh.seek(0)
        fh.truncate()
        fh.write(json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                             "since": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}))
        fh.flush()
        self._fh = fh
        return self

    def release(self) -> None:
        if self._fh is None:
            return
        try:
            self._fh.seek(0)
            self._fh.truncate()
            self._fh.write(json.dumps({"released": True}))
            self._fh.flush()
            fcntl.flock(self._fh.fileno(), fcntl.LOCK_UN)
        finally:
            self._fh.close()
            self._fh = None

    def __enter__(self) -> "RunLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


def _read(fh) -> dict:
    try:
        fh.seek(0)
        text = fh.read()
        return json.loads(text) if text.strip() else {}
    except (OSError, ValueError):
        return {}
