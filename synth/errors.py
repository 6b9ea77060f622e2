"""Errors a user can see, each with a clear message and an exit code.

    SynthError                  exit 1 unless stated
    ├── ConfigError             a broken synth.toml, a bad flag value         (exit 2)
    ├── SourceError             a source cannot be read
    │   ├── NotAGitRepository   the path exists but holds no git repository
    │   ├── EmptyHistory        the repository has no commits or no PRs
    │   ├── RepositoryNotFound  GitHub does not know it (or the token cannot see it)
    │   └── AuthError           a bad token
    ├── QueueError              the DuckDB queue
    │   ├── QueueBusy           another process holds the file (Transient, exit 75)
    │   └── SQLError            a curator's query failed
    ├── RunLocked               another run holds the queue's run lock    (exit 75)
    ├── RewriteError            the LLM could not produce a valid task
    ├── ReviewError             a review command named nothing or something invalid
    ├── ExportError             an export could not be written
    └── Stopped                 a wait ended because the run was asked to stop   (exit 130)

``Transient`` marks errors worth retrying later; everything else is terminal.
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_PARTIAL = 3
EXIT_BUSY = 75  # EX_TEMPFAIL: try again later
EXIT_INTERRUPTED = 130


class SynthError(Exception):
    exit_code = EXIT_ERROR

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class Transient:
    """Mixin: the same call may succeed later."""

    transient = True


class ConfigError(SynthError):
    exit_code = EXIT_USAGE


class SourceError(SynthError):
    pass


class NotAGitRepository(SourceError):
    pass


class EmptyHistory(SourceError):
    pass


class RepositoryNotFound(SourceError):
    pass


class AuthError(SourceError):
    pass


class QueueError(SynthError):
    pass


class QueueBusy(Transient, QueueError):
    exit_code = EXIT_BUSY


class SQLError(QueueError):
    exit_code = EXIT_USAGE


class RunLocked(Transient, SynthError):
    exit_code = EXIT_BUSY


class RewriteError(SynthError):
    def __init__(self, message: str, reason: str = "invalid_output", raw: str = ""):
        super().__init__(message)
        self.reason = reason
        self.raw = raw


class ReviewError(SynthError):
    exit_code = EXIT_USAGE


class ExportError(SynthError):
    pass


class Stopped(SynthError):
    """A wait ended early because SIGINT/SIGTERM asked the run to stop (see clock.py).
    Not a failure: the stage that waited unwinds and what is complete is kept."""

    exit_code = EXIT_INTERRUPTED
