"""git's patch stream, read and parsed: ``git log -p`` output -> FileChange per file.

Works on bytes, a block at a time, on a reader thread that keeps git's pipe empty (git runs
at its own speed on another core). A non-UTF-8 patch is decoded with replacement and flagged,
never fatal; per file at most MAX_PATCH_KEEP bytes of patch text are kept, all are counted.
"""

from __future__ import annotations

from typing import Iterator

from ..clock import Clock
from ..errors import SourceError
from ..models import FileChange

MAX_PATCH_KEEP = 1 << 20  # keep at most 1 MiB of patch text per file; count the rest
COMMIT_MARK = b"\x00\x00synth-commit\x00"  # starts every commit's record in the stream
GATHER_BYTES = 256 << 10  # a read that returns less than this waits GATHER_WAIT before the next
GATHER_WAIT = 0.004  # seconds: git fills a 1 MiB pipe in about 40 ms


def drained(stream, clock: Clock, max_blocks: int = 256) -> Iterator[bytes]:
    """The blocks of a pipe, read as fast as the writer gives them by a thread of their own.

    Parsing and filtering a batch take long enough for git to fill a pipe's 64 KiB and
    stop; a reader thread that keeps the pipe empty lets git run at its own speed on
    another core. At most ``max_blocks`` blocks of at most 1 MiB each (a pipe's worth) wait
    in memory: a few hundred milliseconds of git's output is all it takes to keep git busy.
    A stop request (``clock``) ends a wait for git's output at once (Stopped); the caller's
    cleanup kills git.
    """
    import os
    import queue
    import threading
    import time
    fd = stream.fileno()
    try:  # a bigger pipe: fewer, larger reads (Linux; elsewhere the default stands)
        import fcntl
        fcntl.fcntl(fd, getattr(fcntl, "F_SETPIPE_SZ", 1031), 1 << 20)
    except (ImportError, OSError):
        pass
    blocks: queue.Queue = queue.Queue(max_blocks)
    stop = threading.Event()

    def pump() -> None:
        small = False
        while True:
            if small:  # let the pipe fill a while: fewer, larger blocks (fewer handovers)
                time.sleep(GATHER_WAIT)
            try:
                block = os.read(fd, 1 << 20)
            except OSError as exc:
                block = exc
            small = isinstance(block, bytes) and len(block) < GATHER_BYTES
            while True:
                if stop.is_set():
                    return
                try:
                    blocks.put(block, timeout=0.1)
                    break
                except queue.Full:
                    continue
            if not isinstance(block, bytes) or not block:
                return

    reader = threading.Thread(target=pump, name="synth-git-reader", daemon=True)
    reader.start()
    try:
        while True:
            try:
                block = blocks.get(timeout=0.1)
            except queue.Empty:
                clock.check()
                continue
            if isinstance(block, OSError):
                raise SourceError(f"reading git's output failed: {block}")
            if not block:
                return
            yield block
    finally:
        stop.set()
        reader.join()


class _FileAcc:
    __slots__ = ("path", "old_path", "status", "adds", "dels", "chunks", "size", "binary",
                 "truncated", "old_mode", "new_mode")

    def __init__(self, a_path: str, b_path: str):
        self.path = b_path
        self.old_path = a_path
        self.status = "modified"
        self.adds = 0
        self.dels = 0
        self.chunks: list[bytes] = []
        self.size = 0
        self.binary = False
        self.truncated = False
        self.old_mode: str | None = None
        self.new_mode: str | None = None

    def finish(self) -> FileChange:
        patch = None
        undecodable = False
        if not self.binary and self.chunks:
            raw = b"".join(self.chunks)
            try:
                patch = raw.decode("utf-8")
            except UnicodeDecodeError:
                patch = raw.decode("utf-8", errors="replace")
                undecodable = True
        return FileChange(
            path=self.path, status=self.status, additions=self.adds, deletions=self.dels,
            patch=patch, binary=self.binary,
            old_path=self.old_path if self.status in ("renamed", "copied") else None,
            patch_bytes=self.size, patch_truncated=self.truncated, undecodable=undecodable,
            old_mode=self.old_mode, new_mode=self.new_mode)


_MARK = COMMIT_MARK
_DIFF = b"\ndiff --git "


def parse_log_patches(stream, chunk_size: int = 1 << 20) -> Iterator[tuple[str, tuple[FileChange, ...]]]:
    """Parse ``git log -p --format=%x00%x00synth-commit%x00%H`` output, commit by commit.

    Works on bytes, a block at a time: commits are cut at their markers, files at their
    ``diff --git`` lines, and added/removed lines are counted with bytes.count, so Python
    never loops over patch lines. A non-UTF-8 patch is decoded with replacement and flagged,
    never fatal. Per file at most MAX_PATCH_KEEP bytes of patch text are kept; all are counted.
    ``stream`` is a binary file object, or an iterable of byte strings.
    """
    read = getattr(stream, "read", None)
    blocks = iter(lambda: read(chunk_size), b"") if read else iter(stream)
    buf = bytearray()  # grows in place: a huge commit spanning many blocks stays linear
    for block in blocks:
        start = max(0, len(buf) - len(_MARK) + 1)  # a marker may straddle two blocks
        buf += block
        cut = buf.rfind(_MARK, start)
        if cut <= 0:
            continue
        done = bytes(buf[:cut])
        del buf[:cut]
        yield from _commits(done)
    if buf:
        yield from _commits(bytes(buf))


def _commits(data: bytes) -> Iterator[tuple[str, tuple[FileChange, ...]]]:
    for record in data.split(_MARK):
        if not record:
            continue
        head, _, body = record.partition(b"\n")
        sections = (b"\n" + body).split(_DIFF)[1:]
        yield head.strip().decode(), tuple(_file(sec) for sec in sections)


def _file(sec: bytes) -> FileChange:
    at = sec.find(b"\n@@")
    header, hunks = (sec, b"") if at == -1 else (sec[:at], sec[at + 1:])
    first, _, rest = header.partition(b"\n")
    acc = _FileAcc(*_diff_paths(b"diff --git " + first))
    # the usual "--- a/X" and "+++ b/X" name the paths "diff --git a/X b/X" named already
    half = (len(first) - 1) // 2
    same = (b"--- " + first[:half], b"+++ " + first[half + 1:]) \
        if first[2:half] == first[half + 3:] and not first.startswith(b'"') else ()
    for line in rest.split(b"\n"):
        if line and line not in same:
            _header_line(acc, line)
    if hunks:
        body = b"\n" + hunks
        acc.adds = body.count(b"\n+")
        acc.dels = body.count(b"\n-")
        if not hunks.endswith(b"\n"):
            hunks += b"\n"
        acc.size = len(hunks)
        if acc.size > MAX_PATCH_KEEP:
            acc.truncated = True
            hunks = hunks[:hunks.rfind(b"\n", 0, MAX_PATCH_KEEP) + 1]
        acc.chunks = [hunks]
    return acc.finish()


def _header_line(cur: _FileAcc, line: bytes) -> None:
    if line.startswith(b"index "):
        mode = line.rpartition(b" ")[2]
        if mode.isdigit():  # "index a..b 100644": the mode did not change
            cur.old_mode = cur.new_mode = mode.decode()
    elif line.startswith(b"new file mode"):
        cur.status = "added"
        cur.new_mode = line[14:].strip().decode()
    elif line.startswith(b"deleted file mode"):
        cur.status = "deleted"
        cur.old_mode = line[18:].strip().decode()
    elif line.startswith(b"old mode "):
        cur.old_mode = line[9:].strip().decode()
    elif line.startswith(b"new mode "):
        cur.new_mode = line[9:].strip().decode()
    elif line.startswith(b"rename from "):
        cur.status = "renamed"
        cur.old_path = _unquote(line[12:].rstrip(b"\n"))
    elif line.startswith(b"rename to "):
        cur.path = _unquote(line[10:].rstrip(b"\n"))
    elif line.startswith(b"copy from "):
        cur.status = "copied"
        cur.old_path = _unquote(line[10:].rstrip(b"\n"))
    elif line.startswith(b"copy to "):
        cur.path = _unquote(line[8:].rstrip(b"\n"))
    elif line.startswith(b"+++ ") and not line.startswith(b"+++ /dev/null"):
        cur.path = _unquote(line[4:].rstrip(b"\n"), strip_prefix=True)
    elif line.startswith(b"--- ") and not line.startswith(b"--- /dev/null"):
        cur.old_path = _unquote(line[4:].rstrip(b"\n"), strip_prefix=True)
    elif line.startswith(b"Binary files ") or line.startswith(b"GIT binary patch"):
        cur.binary = True


def _diff_paths(line: bytes) -> tuple[str, str]:
    """Paths from a ``diff --git a/X b/Y`` line; exact when X == Y (the usual case)."""
    rest = line[11:].rstrip(b"\n")
    if rest.startswith(b'"'):
        parts = _split_quoted(rest)
        if len(parts) == 2:
            return _unquote(parts[0], True), _unquote(parts[1], True)
    half = (len(rest) - 1) // 2
    a, b = rest[:half], rest[half + 1:]
    if a[2:] == b[2:]:
        p = _unquote(b, True)
        return p, p
    a_part, _, b_part = rest.partition(b" b/")
    return _unquote(a_part, True), _unquote(b"b/" + b_part, True)


def _split_quoted(rest: bytes) -> list[bytes]:
    parts, buf, quoted, esc = [], bytearray(), False, False
    for ch in rest:
        b = bytes([ch])
        if quoted:
            buf += b
            if esc:
                esc = False
            elif b == b"\\":
                esc = True
            elif b == b'"':
                quoted = False
        elif b == b'"':
            quoted = True
            buf += b
        elif b == b" ":
            parts.append(bytes(buf))
            buf = bytearray()
        else:
            buf += b
    parts.append(bytes(buf))
    return [p for p in parts if p]


def _unquote(raw: bytes, strip_prefix: bool = False) -> str:
    raw = raw.split(b"\t", 1)[0] if b"\t" in raw and not raw.startswith(b'"') else raw
    if raw.startswith(b'"') and raw.endswith(b'"'):
        raw = raw[1:-1].decode("unicode_escape").encode("latin-1")
    text = raw.decode("utf-8", errors="replace")
    if strip_prefix and (text.startswith("a/") or text.startswith("b/")):
        text = text[2:]
    return text
