"""The exclusion list: PRs kept out of rewriting and export (e.g. used by public benchmarks).

One ``owner/name#N`` per line; blank lines and lines starting with ``#`` are comments.
"""

from __future__ import annotations

import re
from pathlib import Path

from .errors import ConfigError

_ENTRY = re.compile(r"^([\w.-]+/[\w.-]+)#(\d+)$")


def load_exclusions(path: str | Path | None) -> frozenset[tuple[str, int]]:
    if not path:
        return frozenset()
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise ConfigError(f"cannot read the exclusion list {path}: {exc.strerror}") from None
    out = set()
    for i, raw in enumerate(lines, 1):
        line = raw.split("  #", 1)[0].strip()
        if not line or line.startswith("#"):
            continue
        m = _ENTRY.match(line)
        if not m:
            raise ConfigError(f"{path}:{i}: expected owner/name#NUMBER, got {line!r}")
        out.add((m.group(1), int(m.group(2))))
    return frozenset(out)
