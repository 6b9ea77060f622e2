"""The one clock of a run: what time it is, and every wait, cut short by a stop request.

Every wait in synth (a rate-limit reset, a Retry-After, a backoff between retries, a busy
queue file, a lock) goes through ``Clock.sleep`` or ``Clock.wait``. ``Clock.stop`` (the
SIGINT/SIGTERM handler calls it) wakes every waiter at once: the wait raises ``Stopped``
and the stage that waited unwinds, saving what is complete. Tests pass a ``FakeClock``,
whose waits take no real time and are recorded.
"""

from __future__ import annotations

import threading
import time

from .errors import Stopped

__all__ = ["Clock", "FakeClock", "Stopped"]


class Clock:
    """Real time. One instance per run; its stop flag is the run's stop flag."""

    def __init__(self) -> None:
        self._stop = threading.Event()
        self.reason = ""

    # -- time

    def time(self) -> float:
        """Seconds since the epoch (for reset times servers send)."""
        return time.time()

    def monotonic(self) -> float:
        """Seconds on a clock that never goes back (for durations)."""
        return time.monotonic()

    # -- stopping

    def stop(self, reason: str = "stop requested") -> None:
        if not self._stop.is_set():
            self.reason = reason
        self._stop.set()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def check(self) -> None:
        """Raise Stopped when a stop was requested."""
        if self._stop.is_set():
            raise Stopped(self.reason or "stop requested")

    # -- waits

    def sleep(self, seconds: float) -> None:
        """Wait ``seconds``; raise Stopped at once when a stop is requested meanwhile."""
        if self._stop.wait(max(0.0, seconds)):
            raise Stopped(self.reason or "stop requested")

    def wait(self, event: threading.Event, timeout: float | None = None) -> bool:
        """Wait until ``event`` is set (True) or ``timeout`` passes (False); raise Stopped
        when a stop is requested first."""
        deadline = None if timeout is None else self.monotonic() + timeout
        while True:
            if event.is_set():
                return True
            self.check()
            left = 0.05 if deadline is None else min(0.05, deadline - self.monotonic())
            if left <= 0:
                return event.is_set()
            event.wait(left)


class FakeClock(Clock):
    """A clock for tests: sleeps advance virtual time at once and are recorded in
    ``slept``; ``stop_at`` requests a stop once virtual time reaches it."""

    def __init__(self, start: float = 1_700_000_000.0, stop_at: float | None = None) -> None:
        super().__init__()
        self.now = start
        self._mono = 0.0
        self.slept: list[float] = []
        self.stop_at = stop_at
        self._lock = threading.Lock()

    def time(self) -> float:
        with self._lock:
            return self.now

    def monotonic(self) -> float:
        with self._lock:
            return self._mono

    def advance(self, seconds: float) -> None:
        with self._lock:
            self.now += seconds
            self._mono += seconds
        if self.stop_at is not None and self.now >= self.stop_at:
            self.stop("stop_at reached")

    def sleep(self, seconds: float) -> None:
        self.check()
        seconds = max(0.0, seconds)
        with self._lock:
            self.slept.append(seconds)
        if self.stop_at is not None and self.now + seconds >= self.stop_at:
            self.advance(max(0.0, self.stop_at - self.now))
            self.check()
        self.advance(seconds)
        self.check()
