"""The library API behind the CLI: each command is one function here.

These functions assemble the stages from settings; they print nothing. ``cli.py`` parses
arguments, calls one of them, and prints what it returns.
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

from . import queue as q
from .config import Settings
from .errors import ConfigError
from .filtering import INFO_CODES, Rules, load_rules
from .models import RunSummary
from .paths import demo_dir
from .pipeline import GitRepoSource, Pipeline, RunOptions, TemplateRewriter


def open_queue(settings: Settings) -> q.Queue:
    return q.Queue(settings.queue.db, busy_timeout=settings.queue.busy_timeout)


def rules_for(settings: Settings) -> Rules:
    return load_rules(settings.filters.files or None)


@dataclass
class RunRequest:
    demo: bool = False
    git: list[str] = field(default_factory=list)
    repo_name: str | None = None
    limit: int | None = None
    rewrite: bool = True


@contextlib.contextmanager
def demo_repository() -> Iterator[Path]:
    """The demo corpus materialised as a real git repository in a temporary folder."""
    from .sources.history import build_repository, load_history
    history = load_history(demo_dir() / "history.toml")
    tmp = Path(tempfile.mkdtemp(prefix="synth-demo-"))
    try:
        yield build_repository(history, tmp / "repo")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def run(settings: Settings, req: RunRequest, stop=lambda: False, progress=None) -> RunSummary:
    rules = rules_for(settings)
    queue = open_queue(settings)
    rewriter = TemplateRewriter(rules)
    opts = RunOptions(batch_size=settings.run.batch_size,
                      limit=settings.run.limit if req.limit is None else req.limit,
                      rewrite=req.rewrite, config_hash=settings.config_hash(),
                      stop=stop, progress=progress)
    with contextlib.ExitStack() as stack:
        sources = []
        if req.demo:
            path = stack.enter_context(demo_repository())
            sources.append(GitRepoSource(path, label="demo"))
        for p in req.git or settings.sources.git:
            sources.append(GitRepoSource(p, req.repo_name))
        if not sources:
            raise ConfigError("nothing to run: pass --demo or --git PATH (or list sources in "
                              "synth.toml)")
        opts.source_label = ",".join(s.label for s in sources)
        return Pipeline(queue, rules, rewriter, opts).run(sources)


def sql(settings: Settings, text: str) -> tuple[list[str], list[tuple]]:
    return open_queue(settings).query(text, read_only=True)


def stats(settings: Settings) -> dict[str, object]:
    queue = open_queue(settings)
    _, rows = queue.query("""
        SELECT (SELECT count(*) FROM repos),
               (SELECT count(*) FROM pull_requests),
               (SELECT count(*) FILTER (WHERE kept) FROM candidates),
               (SELECT count(*) FILTER (WHERE NOT kept) FROM candidates),
               (SELECT count(*) FROM tasks),
               (SELECT count(*) FROM failures WHERE NOT resolved),
               (SELECT count(*) FROM runs)""")
    repos, prs, kept, dropped, tasks, failures, runs = rows[0]
    _, by_status = queue.query("SELECT status, count(*) FROM tasks GROUP BY status ORDER BY status")
    _, reasons = queue.query("SELECT r, count(*) FROM (SELECT unnest(reasons) AS r FROM candidates "
                             "WHERE NOT kept) GROUP BY r ORDER BY count(*) DESC, r")
    return {"repos": repos, "pull_requests": prs, "kept": kept, "dropped": dropped,
            "tasks": tasks, "tasks_by_status": dict(by_status),
            "dropped_by_reason": {r: n for r, n in reasons if r not in INFO_CODES},
            "open_failures": failures, "runs": runs}
