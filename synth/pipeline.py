"""One run: sources -> filter -> rewrite -> queue, in batches, with a run record.

The pipeline is the only place that knows the order of the stages. Each batch of PRs is
filtered, its kept PRs rewritten, and the whole batch (PRs, files, decisions, tasks,
failures, cursors, the run record) written to the queue in one transaction. A run first
finishes old work (spooled batches, kept PRs that still lack a task) before it fetches new.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Callable, Iterable, Iterator, Protocol

from . import queue as q
from .errors import QueueBusy, SourceError, SynthError
from .sources.ratelimit import BudgetExhausted, RateLimitWaitTooLong
from .filtering import INFO_CODES, Rules, decide
from .models import (Batch, Cursor, Decision, Failure, PullRequest, Repo, RunSummary, SourceBatch,
                     Task)

log = logging.getLogger("synth.pipeline")

RUN_RECORD_EVERY = 2.0  # seconds between updates of a running run's record


class Source(Protocol):
    """A source of PRs. ``batches`` skips PRs whose numbers are in ``known`` when it can."""

    label: str

    def repos(self) -> list[Repo]: ...

    def batches(self, repo: Repo, known: set[int], batch_size: int, limit: int,
                cursor: Cursor | None = None) -> Iterator[SourceBatch]: ...


class Rewriter(Protocol):
    name: str  # template | llm
    model: str | None
    prompt_version: str

    def rewrite_many(self, prs: list[PullRequest], licenses: dict[str, str | None]
                     ) -> list[Task | Failure]: ...


@dataclass
class RunOptions:
    batch_size: int = 100
    limit: int = 0
    rewrite: bool = True
    config_hash: str | None = None
    source_label: str = ""
    stop: Callable[[], bool] = lambda: False  # asked between batches (signals)
    exclusions: frozenset = frozenset()  # (repo, number) kept out of rewriting
    dedupe: bool = True  # flag near-duplicate tasks at the end of a run that wrote tasks
    progress: Callable[[str, int, int | None], None] | None = None


def _now() -> datetime:
    return datetime.now(timezone.utc).replace(tzinfo=None)


class Pipeline:
    def __init__(self, queue: q.Queue, rules: Rules, rewriter: Rewriter | None,
                 options: RunOptions):
        self.queue = queue
        self.rules = rules
        self.rewriter = rewriter if options.rewrite else None
        self.opt = options
        self.summary = RunSummary(run_id=_new_run_id())
        self.started = _now()
        self.spooled = 0
        self._resolved: set[tuple[str, int]] = set()  # (repo, 0): source failures resolved
        self._repos_written: set[Repo] = set()  # repo rows as written in this run
        self._run_written = float("-inf")  # when the run record last went to the writer
        self._writer = _Writer(self._write_now)

    # -- run record

    def _run_row(self, status: str, ended: bool = False) -> dict:
        s = self.summary
        return {
            "run_id": s.run_id, "started_at": self.started.isoformat(sep=" "),
            "ended_at": _now().isoformat(sep=" ") if ended else None, "status": status,
            "source": self.opt.source_label, "config_hash": self.opt.config_hash,
            "pid": os.getpid(), "counts": dict(sorted(s.counts.items())),
            "errors": [_failure_dict(f) for f in s.failures[-200:]],
        }

    def _write(self, batch: Batch) -> None:
        """Hand a batch to the background writer (writes happen in order, one at a time).
        The run record rides along at most every RUN_RECORD_EVERY seconds: each table a
        write touches costs a statement, and a fast crawl hands over several batches a
        second."""
        batch.run_id = self.summary.run_id
        now = time.monotonic()
        if now - self._run_written >= RUN_RECORD_EVERY:
            batch.run = self._run_row("running")
            self._run_written = now
        self._writer.put(batch)

    def _flush(self) -> None:
        """Wait until every handed-over batch is written (before reading the queue)."""
        self._writer.flush()

    def _write_now(self, batches: list[Batch], then=None) -> q.WriteResult:
        # once the file was found busy, later batches spool quickly instead of each waiting
        wait = min(0.5, self.queue.busy_timeout) if self.spooled else None
        result = self.queue.write_many(batches, wait=wait, then=then)
        self.summary.inc("queue/batches", len(batches))
        self.spooled = result.spooled
        if result.spooled:
            self.summary.counts["queue/spooled_pending"] = result.spooled
        else:
            self.summary.counts.pop("queue/spooled_pending", None)
        if result.ingested > len(batches):
            self.summary.inc("queue/ingested_from_spool", result.ingested - len(batches))
        return result

    # -- stages

    def run(self, sources: Iterable[Source]) -> RunSummary:
        # one connection serves back-to-back writes and reads; it is let go whenever the
        # writer has been idle for a moment, and at least every few seconds
        with self.queue.holding() as held, _quick_thread_handoff():
            self._writer.on_idle = held.release
            return self._run(sources)

    def _run(self, sources: Iterable[Source]) -> RunSummary:
        s = self.summary
        # the run record, any batch an earlier run left spooled, and the runs that died
        # without finishing (we hold the run lock), in one connection
        first = Batch(run_id=s.run_id, run=self._run_row("running"))
        abandoned = self._write_now([first], then=lambda con: q.abandon_runs(con, s.run_id)).then
        if abandoned:
            log.warning("%d earlier run(s) ended without finishing (crash or kill); their "
                        "work is resumed now", abandoned)
        try:
            self._backlog()
            for source in sources:
                if self.opt.stop():
                    break
                self._crawl(source)
            self._flush()
            if s.counts.get("rewrite/tasks") and self.opt.dedupe and not self.opt.stop():
                self._dedupe()
            if self.opt.stop():
                s.status = "interrupted"
            else:
                s.status = "partial" if s.failures else "ok"
        except KeyboardInterrupt:
            s.status = "interrupted"
            raise
        except SynthError as exc:
            s.status = "failed"
            s.failures.append(Failure("run", "error", str(exc)))
            raise
        except Exception as exc:
            s.status = "failed"
            s.failures.append(Failure("run", "crash", f"{type(exc).__name__}: {exc}"))
            raise
        finally:
            try:
                self._writer.close()
            except Exception as exc:  # reported, never masking the run's own outcome
                log.error("a batch could not be written: %s", exc)
                s.failures.append(Failure("queue", "write_failed", str(exc)))
                s.status = "failed" if s.status in ("ok", "partial") else s.status
            final = Batch(run_id=s.run_id, run=self._run_row(s.status, ended=True))
            try:
                res = self.queue.write(final)
                if res.spooled:
                    s.counts["queue/spooled_pending"] = res.spooled
            except SynthError as exc:  # never mask the run's own outcome
                log.error("could not write the run record: %s", exc)
        return s

    def _backlog(self) -> None:
        """Kept PRs that still lack a task (a crash, a failed rewrite, a new model)."""
        if not self.rewriter:
            return
        r = self.rewriter
        self._flush()
        try:
            keys = [k for k in q.pending_rewrites(self.queue, r.name, r.model, r.prompt_version)
                    if k not in self.opt.exclusions]
            licenses = q.repo_licenses(self.queue) if keys else {}
        except QueueBusy:
            log.warning("the queue is busy: the rewrite backlog waits for the next run")
            return
        if not keys:
            return
        before = self.summary.counts.get("rewrite/tasks", 0)
        for i in range(0, len(keys), self.opt.batch_size):
            if self.opt.stop():
                return
            self._flush()
            try:
                prs = q.load_pull_requests(self.queue, keys[i:i + self.opt.batch_size])
            except QueueBusy:
                log.warning("the queue is busy: the rest of the rewrite backlog waits")
                return
            batch = Batch()
            self._rewrite(prs, batch, licenses)
            self._write(batch)
            self._progress("backlog: rewrite", min(i + self.opt.batch_size, len(keys)), len(keys))
        self._stage_line(f"backlog: {len(keys)} kept PRs without a task, "
                         f"{self.summary.counts.get('rewrite/tasks', 0) - before} tasks written")

    def _crawl(self, source: Source) -> None:
        s = self.summary
        try:
            repos = source.repos()
        except SourceError as exc:
            self._fail(Failure("source", "unavailable", str(exc), transient=True))
            return
        for repo in repos:
            if self.opt.stop():
                return
            self._flush()
            known, cursor = q.crawl_state(self.queue, repo.full_name, self.rules.version,
                                          getattr(source, "kind", "git"))
            if known is None:
                log.warning("the queue is busy: %s is read in full (writes are idempotent)",
                            repo.full_name)
                known = set()
            s.inc("source/repos")
            licenses = {repo.full_name: repo.license}
            mark = dict(s.counts)
            done = 0
            try:
                for sb in source.batches(repo, known, self.opt.batch_size, self.opt.limit, cursor):
                    self._handle(sb, licenses, repo)
                    done += len(sb.prs)
                    self._progress(f"crawl {repo.full_name}", done, sb.total)
                    if self.opt.stop():
                        break
            except SourceError as exc:
                self._fail(Failure("source", _reason(exc), str(exc), repo=repo.full_name,
                                   transient=getattr(exc, "transient", False)))
                self._write(Batch(failures=[s.failures[-1]]))
                log.error("%s: %s", repo.full_name, exc)
                if isinstance(exc, (BudgetExhausted, RateLimitWaitTooLong)):
                    return  # the rest waits for the next run; cursors are saved
            d = {k: s.counts.get(k, 0) - mark.get(k, 0) for k in
                 ("source/prs", "filter/kept", "filter/dropped", "rewrite/tasks")}
            self._stage_line(f"crawl {repo.full_name}: {d['source/prs']} new PRs, "
                             f"{d['filter/kept']} kept, {d['filter/dropped']} dropped, "
                             f"{d['rewrite/tasks']} tasks written")

    def _handle(self, sb: SourceBatch, licenses: dict[str, str | None], repo: Repo) -> None:
        s = self.summary
        if sb.repo:
            licenses[sb.repo.full_name] = sb.repo.license
        for k, v in sb.counts.items():
            s.inc(k, v)
        row = sb.repo or repo
        batch = Batch(repos=[] if row in self._repos_written else [row],
                      pull_requests=list(sb.prs),
                      cursors=[sb.cursor] if sb.cursor else [], failures=list(sb.failures))
        self._repos_written.add(row)
        if (repo.full_name, 0) not in self._resolved:  # an earlier failure of this repo is over
            batch.resolved.append(("source", repo.full_name, 0))
            self._resolved.add((repo.full_name, 0))
        for f in sb.failures:
            self._fail(f)
        kept: list[PullRequest] = []
        for pr in sb.prs:
            s.inc("source/prs")
            d = decide(pr, self.rules)
            if pr.key in self.opt.exclusions:
                d = Decision(pr.repo, pr.number, False, ("excluded",) + tuple(
                    r for r in d.reasons if r != "substantive"), d.filter_version, d.metrics)
            batch.decisions.append(d)
            _count_decision(s, d)
            if d.kept:
                kept.append(pr)
        if kept and self.rewriter:
            self._rewrite(kept, batch, licenses)
        self._write(batch)

    def _progress(self, stage: str, done: int, total: int | None) -> None:
        if self.opt.progress:
            self.opt.progress(stage, done, total)

    def _stage_line(self, text: str) -> None:
        if self.opt.progress and hasattr(self.opt.progress, "clear"):
            self.opt.progress.clear()
        log.info(text)

    def _rewrite(self, prs: list[PullRequest], batch: Batch,
                 licenses: dict[str, str | None]) -> None:
        s = self.summary
        for result in self.rewriter.rewrite_many(prs, licenses):
            if isinstance(result, Failure):
                self._fail(result)
                batch.failures.append(result)
            else:
                batch.tasks.append(result)
                batch.resolved.append(("rewrite", result.provenance.repo,
                                       result.provenance.pr_number))
                s.inc("rewrite/tasks")
                s.inc("llm/tokens/in", result.usage.prompt_tokens)
                s.inc("llm/tokens/out", result.usage.completion_tokens)
                s.inc("llm/calls", result.usage.calls)
                s.inc("llm/cost_microusd", round(result.usage.cost_usd * 1_000_000))

    def _dedupe(self) -> None:
        try:
            res = q.dedupe_tasks(self.queue)
        except QueueBusy:
            log.warning("near-duplicate check skipped: the queue is busy (run `synth dedupe`)")
            return
        for kind, n in res.flagged.items():
            self.summary.counts[f"dedupe/flagged/{kind}"] = n
        self._stage_line(f"dedupe: {res.signed} new tasks signed, "
                         f"{sum(res.flagged.values())} tasks flagged as near-duplicates")

    def _fail(self, f: Failure) -> None:
        self.summary.failures.append(f)
        self.summary.inc(f"{f.stage}/failed/{f.reason}")


class _Writer:
    """Writes batches on a background thread, in order, so that reading and filtering the
    next batch overlaps with DuckDB ingesting this one. At most ``depth`` batches wait in
    memory; an error is raised on the caller's next put or flush. A batch still in memory
    when the process is killed was never acknowledged: nothing it holds (cursors included)
    reached the queue, so the next run redoes it."""

    def __init__(self, write: Callable[[list[Batch]], None], depth: int = 4,
                 idle_after: float = 0.5):
        import queue as stdqueue
        import threading
        self._write = write
        self.idle_after = idle_after
        self.on_idle: Callable[[], None] | None = None  # called when nothing came for a while
        self._q: stdqueue.Queue = stdqueue.Queue(maxsize=depth)
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._loop, name="synth-writer", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        import queue as stdqueue
        while True:
            try:
                group = [self._q.get(timeout=self.idle_after)]
            except stdqueue.Empty:
                if self.on_idle is not None:
                    try:
                        self.on_idle()
                    except BaseException as exc:  # handed to the main thread
                        self._error = self._error or exc
                continue
            while group[-1] is not None:  # whatever else is waiting goes in the same connection
                try:
                    group.append(self._q.get_nowait())
                except stdqueue.Empty:
                    break
            batches = [b for b in group if b is not None]
            try:
                if batches and self._error is None:
                    self._write(batches)
            except BaseException as exc:  # handed to the main thread
                self._error = exc
            finally:
                for _ in group:
                    self._q.task_done()
            if group[-1] is None:
                return

    def _raise(self) -> None:
        if self._error is not None:
            err, self._error = self._error, None
            raise err

    def put(self, batch: Batch) -> None:
        self._raise()
        self._q.put(batch)

    def flush(self) -> None:
        self._q.join()
        self._raise()

    def close(self) -> None:
        if self._thread.is_alive():
            self._q.join()
            self._q.put(None)
            self._thread.join()
        self._raise()


@contextlib.contextmanager
def _quick_thread_handoff(interval: float = 0.001):
    """A shorter GIL switch interval while a run lasts. The writer thread's DuckDB calls
    give up the GIL and take it back several times each; with the filter thread busy in
    Python, every take-back waits out a whole switch interval (5 ms by default), which made
    a batch's write take five times as long as on an idle interpreter."""
    before = sys.getswitchinterval()
    sys.setswitchinterval(min(before, interval))
    try:
        yield
    finally:
        sys.setswitchinterval(before)


def _count_decision(s: RunSummary, d: Decision) -> None:
    if d.kept:
        s.inc("filter/kept")
    else:
        s.inc("filter/dropped")
        for code in d.reasons:
            if code not in INFO_CODES:
                s.inc(f"filter/dropped/{code}")


def _reason(exc: Exception) -> str:
    """A stable snake_case reason code from an error type (RepositoryNotFound -> repository_not_found)."""
    import re
    return re.sub(r"(?<!^)(?=[A-Z])", "_", type(exc).__name__).lower()


def _failure_dict(f: Failure) -> dict:
    return {"stage": f.stage, "reason": f.reason, "message": f.message, "repo": f.repo,
            "number": f.number, "transient": f.transient}


def _new_run_id() -> str:
    return _now().strftime("%Y%m%dT%H%M%S") + "-" + uuid.uuid4().hex[:6]
