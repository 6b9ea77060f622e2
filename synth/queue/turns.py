"""Curators and a run take turns with the queue file.

DuckDB lets one process hold a file for writing and no other process read it meanwhile, and
it does not queue the processes that try: a run that writes a batch every few hundred
milliseconds would win nearly every race for the file. So a curator process (`synth sql`,
`review`, `stats`, ...) that wants the file leaves a marker in ``<queue>.waiting/`` while it
waits and while it uses the file; a run that sees a marker lets go of the file before its
next use and waits until the markers are gone (at most ``MAX_YIELD`` seconds at a time, so a
stream of curators cannot stall a crawl). A curator then gets the file within the time the
run needs to finish the transaction it is in.

Curators also take turns among themselves, through ``<queue>.turn``: readers share it, a
process that writes (a review action applying the journal, a rescore) has it alone. A flock
held by a process that dies is released with it.

Each marker is a file its process holds an exclusive ``flock`` on; a marker whose lock can
be taken belongs to a process that died, and is removed.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import uuid
from pathlib import Path
from typing import Iterator

MAX_YIELD = 5.0  # seconds a run waits for waiting curators before each use of the file


class Turns:
    def __init__(self, db_path: str | os.PathLike):
        self.dir = Path(f"{db_path}.waiting")
        self.turn_path = Path(f"{db_path}.turn")

    @contextlib.contextmanager
    def turn(self, exclusive: bool, clock, wait: float) -> Iterator[None]:
        """This curator's turn among curators: shared by readers, alone for a writer.
        Waits through ``clock`` up to ``wait`` seconds, then goes ahead regardless (DuckDB's
        own lock still guards the file)."""
        try:
            fd = os.open(self.turn_path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError:  # a read-only folder: no turns among curators
            yield
            return
        mode = (fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH) | fcntl.LOCK_NB
        deadline = clock.monotonic() + wait
        held = False
        try:
            while True:
                try:
                    fcntl.flock(fd, mode)
                    held = True
                    break
                except BlockingIOError:
                    if clock.monotonic() >= deadline:
                        break
                    clock.sleep(0.01)
            yield
        finally:
            if held:
                fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)

    @contextlib.contextmanager
    def waiting(self) -> Iterator[None]:
        """This process wants (and then uses) the file: a run lets go of it meanwhile."""
        fd = None
        marker = self.dir / f"{os.getpid()}-{uuid.uuid4().hex[:8]}"
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
            fd = os.open(marker, os.O_RDWR | os.O_CREAT, 0o644)
            fcntl.flock(fd, fcntl.LOCK_EX)
        except OSError:  # a read-only folder, say: wait without a marker
            if fd is not None:
                os.close(fd)
            fd = None
        try:
            yield
        finally:
            if fd is not None:
                with contextlib.suppress(OSError):
                    marker.unlink()
                os.close(fd)

    def waiters(self) -> int:
        """How many live processes wait for (or use) the file; markers of dead ones go."""
        try:
            names = os.listdir(self.dir)
        except OSError:
            return 0
        live = 0
        for name in names:
            path = self.dir / name
            try:
                fd = os.open(path, os.O_RDWR)
            except OSError:
                continue
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                live += 1  # its owner holds it
            except OSError:
                pass
            else:  # nobody holds it: the process that left it is gone
                with contextlib.suppress(OSError):
                    path.unlink()
            finally:
                os.close(fd)
        return live
