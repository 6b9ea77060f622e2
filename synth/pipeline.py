"""One run: the stages under one owner.

A ``RunContext`` owns what a run shares: its id, the clock (every wait, and the stop flag),
the options, the queue, the writer (which owns the run's stats) and the progress display.
``Pipeline.run`` starts the stages (stages.py) on threads of their own, watches them, and
ends the run:

    crawl   ──batches──►  writer  ──►  queue          (rows, cursors, counters, one by one)
    rewrite ◄─pending work─ queue;  rewrite ──tasks──►  writer

A run first ingests what an earlier run left in the spool and marks runs that died as
interrupted; it finishes old work (kept PRs without a task) alongside new. A stop request
(SIGINT/SIGTERM through the clock) ends every wait at once; what is complete is saved,
requests in flight are abandoned (retried by the next run), and the run ends as
``interrupted`` within seconds.
"""

from __future__ import annotations

import logging
import os
import threading
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Callable

from . import queue as q
from .clock import Clock
from .errors import QueueBusy, Stopped, SynthError
from .filtering import Rules
from .models import Batch, Failure, RunSummary
from .queue.curation import dedupe_tasks
from .stages import Crawl, Rewrite, Rewriter, Source
from .writer import Writer

log = logging.getLogger("synth.pipeline")

STOP_GRACE = 1.0  # seconds the stages get to unwind after a stop, before they are abandoned


@dataclass
class RunOptions:
    batch_size: int = 100
    limit: int = 0
    rewrite: bool = True
    config_hash: str | None = None
    source_label: str = ""
    exclusions: frozenset = frozenset()  # (repo, number) kept out of rewriting
    dedupe: bool = True  # flag near-duplicate tasks at the end of a run that wrote tasks
    progress: Callable[[str, int, int | None], None] | None = None


def _now() -> datetime:
    return datetime.now(timezone.utc).replace(tzinfo=None)


@dataclass
class RunContext:
    """What the stages of one run share, owned by the run."""

    queue: q.Queue
    rules: Rules
    options: RunOptions
    clock: Clock
    stats: RunSummary = field(default_factory=lambda: RunSummary(run_id=_new_run_id()))
    started: datetime = field(default_factory=_now)
    writer: Writer | None = None

    @property
    def run_id(self) -> str:
        return self.stats.run_id

    def run_row(self, status: str) -> dict:
        """The run record as it stands (the writer's thread calls this: it owns stats)."""
        s = self.stats
        ended = status != "running"
        return {"run_id": s.run_id, "started_at": self.started.isoformat(sep=" "),
                "ended_at": _now().isoformat(sep=" ") if ended else None, "status": status,
                "source": self.options.source_label, "config_hash": self.options.config_hash,
                "pid": os.getpid(), "counts": dict(sorted(s.counts.items())),
                "errors": [_failure_dict(f) for f in s.failures[-200:]]}

    def progress(self, stage: str, done: int, total: int | None) -> None:
        if self.options.progress:
            self.options.progress(stage, done, total)

    def stage_line(self, text: str) -> None:
        p = self.options.progress
        if p is not None and hasattr(p, "clear"):
            p.clear()
        log.info(text)


class Pipeline:
    def __init__(self, queue: q.Queue, rules: Rules, rewriter: Rewriter | None,
                 options: RunOptions, clock: Clock | None = None, triage=None):
        self.ctx = RunContext(queue, rules, options, clock or queue.clock)
        self.rewriter = rewriter if options.rewrite else None
        self.triage = triage if self.rewriter is not None else None

    @property
    def summary(self) -> RunSummary:
        return self.ctx.stats

    def run(self, sources: list[Source]) -> RunSummary:
        ctx = self.ctx
        # one connection serves back-to-back writes and reads; it is let go whenever the
        # writer has been idle for a moment, and at least every few seconds
        with ctx.queue.holding() as held:
            rewrite: Rewrite | None = None
            crawl: Crawl | None = None

            def written(batches: list[Batch]) -> None:
                if rewrite is not None and any(d.kept for b in batches for d in b.decisions):
                    rewrite.new_work.set()

            ctx.writer = Writer(ctx.queue, ctx.stats, ctx.run_row, ctx.clock,
                                on_idle=held.release, on_written=written)
            try:
                self._start()
                crawl = Crawl(ctx, list(sources))
                if self.rewriter is not None:
                    rewrite = Rewrite(ctx, self.rewriter, crawl.done, self.triage, {
                        s.repo_name: s.applies_at for s in sources
                        if getattr(s, "applies_at", None) and getattr(s, "repo_name", None)})
                self._stages(crawl, rewrite)
            except KeyboardInterrupt:
                ctx.stats.status = "interrupted"
                raise
            except Stopped:
                ctx.stats.status = "interrupted"
            except SynthError as exc:
                ctx.stats.status = "failed"
                ctx.stats.failures.append(Failure("run", "error", str(exc)))
                raise
            except Exception as exc:
                ctx.stats.status = "failed"
                ctx.stats.failures.append(Failure("run", "crash", f"{type(exc).__name__}: {exc}"))
                raise
            finally:
                self._finish(crawl, rewrite)
        return ctx.stats

    def _start(self) -> None:
        """The run record, any batch an earlier run left spooled, and the runs that died
        without finishing (we hold the run lock), in one connection."""
        ctx = self.ctx
        first = Batch(run_id=ctx.run_id, run=ctx.run_row("running"))
        abandoned = ctx.queue.write_many([first], then=lambda con: q.abandon_runs(con, ctx.run_id)).then
        if abandoned:
            log.warning("%d earlier run(s) ended without finishing (crash or kill); their "
                        "work is resumed now", abandoned)

    def _stages(self, crawl: Crawl, rewrite: Rewrite | None) -> None:
        ctx = self.ctx
        threads = [threading.Thread(target=crawl.run, name="synth-crawl", daemon=True)]
        if rewrite is not None:
            threads.append(threading.Thread(target=rewrite.run, name="synth-rewrite", daemon=True))
        for t in threads:
            t.start()
        stages = [crawl] + ([rewrite] if rewrite is not None else [])
        try:
            for stage in stages:  # the rewrite stage ends after the crawl
                while not ctx.clock.wait(stage.done, 1.0):
                    pass
                if stage.error is not None:
                    ctx.clock.stop("a stage failed")  # the other stages wind down too
                    raise stage.error
        except Stopped:
            deadline = ctx.clock.monotonic() + STOP_GRACE
            for t in threads:  # a moment to unwind; whatever is still busy is abandoned
                t.join(max(0.0, deadline - ctx.clock.monotonic()))
            raise
        ctx.writer.flush()
        if ctx.stats.counts.get("rewrite/tasks") and ctx.options.dedupe:
            self._dedupe()
        ctx.stats.status = "partial" if ctx.stats.failures else "ok"

    def _dedupe(self) -> None:
        ctx = self.ctx
        try:
            res = dedupe_tasks(ctx.queue)
        except QueueBusy:
            log.warning("near-duplicate check skipped: the queue is busy (run `synth dedupe`)")
            return
        for kind, n in res.flagged.items():
            ctx.stats.counts[f"dedupe/flagged/{kind}"] = n
        ctx.stage_line(f"dedupe: {res.signed} new tasks signed, "
                       f"{sum(res.flagged.values())} tasks flagged as near-duplicates")

    def _finish(self, crawl: Crawl | None, rewrite: Rewrite | None) -> None:
        """Write what is complete and the run record as it ends; never mask the run's own
        outcome."""
        ctx = self.ctx
        s = ctx.stats
        if ctx.clock.stopping and s.status in ("running", "ok", "partial"):
            s.status = "interrupted"
        final = Batch(run_id=ctx.run_id)
        if crawl is not None:
            final.counts.update(crawl.final_counters())
        if rewrite is not None and ctx.clock.stopping and rewrite.abandoned():
            final.counts["rewrite/abandoned"] = rewrite.abandoned()
            log.warning("%d rewrite(s) in flight were abandoned; the next run does them",
                        rewrite.abandoned())
        try:
            res = ctx.writer.close(final)
            if res is not None and res.spooled:
                s.counts["queue/spooled_pending"] = res.spooled
        except Exception as exc:  # reported, never masking the run's own outcome
            log.error("a batch could not be written: %s", exc)
            s.failures.append(Failure("queue", "write_failed", str(exc)))
            if s.status in ("ok", "partial"):
                s.status = "failed"


def _failure_dict(f: Failure) -> dict:
    return {"stage": f.stage, "reason": f.reason, "message": f.message, "repo": f.repo,
            "number": f.number, "transient": f.transient}


def _new_run_id() -> str:
    return _now().strftime("%Y%m%dT%H%M%S") + "-" + uuid.uuid4().hex[:6]
