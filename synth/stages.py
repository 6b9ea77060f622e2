"""The stages of a run, each on a thread of its own, talking only through the run context:

    crawl    sources -> PullRequest -> filter (once) -> Batch -> writer
    rewrite  the queue's pending work (kept PRs without a task) -> a pool of rewriters ->
             Task | Failure -> writer

The crawl never waits on the LLM, and the rewrite stage takes kept PRs as soon as they are in
the queue, whether this run found them or an earlier one did (one code path for both).
Counters travel with the batches they count (see writer.py).
"""

from __future__ import annotations

import contextlib
import logging
import queue as stdqueue
import sys
import threading
from typing import TYPE_CHECKING, Callable, Iterator, Protocol

from . import chains, patches, queue as q
from .errors import QueueBusy, SourceError, Stopped
from .filtering import INFO_CODES, decide
from .models import (Batch, Cursor, Decision, Failure, PullRequest, Repo, SourceBatch, Task,
                     Usage)
from .sources.ratelimit import BudgetExhausted, RateLimitWaitTooLong

if TYPE_CHECKING:
    from .pipeline import RunContext

log = logging.getLogger("synth.pipeline")


class Source(Protocol):
    """A source of PRs. ``batches`` skips PRs whose numbers are in ``known`` when it can.
    ``counters()``, when a source has it, answers its own cumulative counters (requests,
    waits); the crawl turns them into deltas that travel with its batches."""

    label: str
    kind: str

    def repos(self) -> list[Repo]: ...

    def batches(self, repo: Repo, known: set[int], batch_size: int, limit: int,
                cursor: Cursor | None = None) -> Iterator[SourceBatch]: ...


class Rewriter(Protocol):
    name: str  # template | llm
    model: str | None
    prompt_version: str
    concurrency: int

    def rewrite_one(self, pr: PullRequest, license: str | None = None,
                    language: str | None = None) -> Task | Failure: ...


# ---------------------------------------------------------------- crawl

class Crawl:
    """Reads every source, decides each PR once, and hands the writer one batch per source
    batch (PRs, decisions, the cursor that covers them, and their counters)."""

    def __init__(self, ctx: "RunContext", sources: list[Source]):
        self.ctx = ctx
        self.sources = sources
        self.done = threading.Event()
        self.error: BaseException | None = None
        self._resolved: set[str] = set()  # repos whose earlier source failure is over
        self._repos_written: set[Repo] = set()
        self._counters: dict[int, dict[str, int]] = {}  # per source: counters already sent
        # the repository being crawled: its decisions, and the PRs that may join a chain
        self._mem: tuple[dict[int, Decision], list[PullRequest]] = ({}, [])
        self._failed: set[int] = set()  # its PRs the source could not read before
        self._before: set[int] = set()  # its PRs decided before, with other rules

    def run(self) -> None:
        try:
            for source in self.sources:
                if self.ctx.clock.stopping:
                    break
                self._source(source)
        except Stopped:
            pass
        except BaseException as exc:  # handed to the run's owner
            self.error = exc
        finally:
            self.done.set()

    def _source(self, source: Source) -> None:
        ctx = self.ctx
        try:
            repos = source.repos()
        except SourceError as exc:
            self._fail(Failure("source", "unavailable", str(exc), transient=True), source)
            return
        for repo in repos:
            if ctx.clock.stopping:
                return
            ctx.writer.flush()  # what this run wrote is known before the repo is read
            known, cursor, self._failed, self._before = q.crawl_state(
                ctx.queue, repo.full_name, ctx.rules.version, getattr(source, "kind", "git"))
            if known is None:
                log.warning("the queue is busy: %s is read in full (writes are idempotent)",
                            repo.full_name)
                known = set()
            seen = {"prs": 0, "kept": 0, "dropped": 0}
            ctx.writer.put(Batch(counts={"source/repos": 1}))
            try:
                for sb in source.batches(repo, known, ctx.options.batch_size,
                                         ctx.options.limit, cursor):
                    # the source's last batch: its reading is over, the writer's backlog
                    # and these decisions share the two cores (see _quick_handoffs)
                    last = sb.total is not None and seen["prs"] + len(sb.prs) >= sb.total
                    with _quick_handoffs() if last else contextlib.nullcontext():
                        batch = self._batch(sb, repo, seen)
                    batch.counts.update(self._counter_deltas(source))
                    ctx.writer.put(batch)
                    ctx.progress(f"crawl {repo.full_name}", seen["prs"], sb.total)
                    if ctx.clock.stopping:
                        break
            except SourceError as exc:
                self._fail(Failure("source", _reason(exc), str(exc), repo=repo.full_name,
                                   transient=getattr(exc, "transient", False)), source)
                log.error("%s: %s", repo.full_name, exc)
                if isinstance(exc, (BudgetExhausted, RateLimitWaitTooLong)):
                    return  # the rest waits for the next run; cursors are saved
            ctx.stage_line(f"crawl {repo.full_name}: {seen['prs']} new PRs, {seen['kept']} kept, "
                           f"{seen['dropped']} dropped")
            if not ctx.clock.stopping:
                self._chains(repo.full_name, seen["prs"], first=not known and cursor is None)
            self._mem = ({}, [])

    def _chains(self, repo: str, new_prs: int, first: bool = False) -> None:
        """A repository's chains (chains.py), re-detected over all its stored PRs when this
        crawl found new ones or the rules changed since, and replaced whole. The detection
        is recorded as the repository's "chains" cursor (the rule versions it used). On a
        repository's first crawl every PR is in memory: no need to wait for the writes and
        read them back."""
        ctx, rules = self.ctx, self.ctx.rules
        mark = f"{rules.version}:{rules.chains.version}"
        if first and new_prs:
            decisions, prs = self._mem
            ctx.writer.checkpoint()  # after the crawl's last batches, beside the detection
        else:
            try:
                ctx.writer.flush()  # this repository's PRs and decisions are in
                if not new_prs and q.chain_state(ctx.queue, repo) == mark:
                    return
                decisions = {d.number: d for d in q.chain_candidates(ctx.queue, repo)}
                prs = q.load_pull_requests(ctx.queue, [(repo, n) for n, d in decisions.items()
                                                       if chains.eligible(d, rules.chains)])
            except QueueBusy:
                log.warning("the queue is busy: chains of %s are detected by the next run",
                            repo)
                return
        with _quick_handoffs():
            found = chains.detect(repo, prs, decisions, rules.classify, rules.chains,
                                  {n for r, n in ctx.options.exclusions if r == repo})
        kept = sum(c.kept for c in found)
        ctx.writer.put(Batch(chains=found, chain_repos=[repo],
                             cursors=[Cursor(repo, "chains", watermark=mark)],
                             counts={"chains/found": len(found), "chains/kept": kept}))
        ctx.stage_line(f"chains {repo}: {len(found)} found, {kept} kept")

    def _batch(self, sb: SourceBatch, repo: Repo, seen: dict[str, int]) -> Batch:
        ctx = self.ctx
        row = sb.repo or repo
        batch = Batch(repos=[] if row in self._repos_written else [row],
                      pull_requests=list(sb.prs), cursors=[sb.cursor] if sb.cursor else [],
                      failures=list(sb.failures), counts=dict(sb.counts))
        self._repos_written.add(row)
        if repo.full_name not in self._resolved:  # an earlier failure of this repo is over
            batch.resolved.append(("source", repo.full_name, 0))
            self._resolved.add(repo.full_name)
        for pr in sb.prs:
            d = decide(pr, ctx.rules)
            if pr.key in ctx.options.exclusions:
                d = Decision(pr.repo, pr.number, False, ("excluded",) + tuple(
                    r for r in d.reasons if r != "substantive"), d.filter_version, d.metrics)
            batch.decisions.append(d)
            if pr.number in self._failed:  # read at last: its source failure is over
                batch.resolved.append(("source", pr.repo, pr.number))
            self._mem[0][pr.number] = d  # for the chains of a first crawl
            if chains.eligible(d, ctx.rules.chains):
                self._mem[1].append(pr)
            _count(batch.counts, d)
            seen["prs"] += 1
            seen["kept" if d.kept else "dropped"] += 1
        batch.counts["source/prs"] = batch.counts.get("source/prs", 0) + len(sb.prs)
        again = sum(1 for pr in sb.prs if pr.number in self._before) if self._before else 0
        if again:  # decided before with other rules: not new, decided again
            batch.counts["source/prs_redecided"] = again
        return batch

    def _counter_deltas(self, source: Source) -> dict[str, int]:
        read = getattr(source, "counters", None)
        if read is None:
            return {}
        now = read()
        before = self._counters.get(id(source), {})
        self._counters[id(source)] = dict(now)
        out = {}
        for k, v in now.items():
            if k.endswith("_ms") and k.startswith("github/longest"):
                continue  # a maximum, not a sum: see Pipeline._finish
            if v - before.get(k, 0):
                out[k] = v - before.get(k, 0)
        return out

    def final_counters(self) -> dict[str, int]:
        """What the sources counted that no batch carried yet, and their maxima (the
        longest rate-limit wait), for the run record's last update."""
        out: dict[str, int] = {}
        for source in self.sources:
            for k, v in self._counter_deltas(source).items():
                out[k] = out.get(k, 0) + v
            read = getattr(source, "counters", None)
            for k, v in (read() if read else {}).items():
                if k.startswith("github/longest") and k.endswith("_ms"):
                    out[k] = max(out.get(k, 0), v)
        return out

    def _fail(self, f: Failure, source: Source) -> None:
        batch = Batch(failures=[f])
        batch.counts.update(self._counter_deltas(source))
        self.ctx.writer.put(batch)


def _count(counts: dict[str, int], d: Decision) -> None:
    key = "filter/kept" if d.kept else "filter/dropped"
    counts[key] = counts.get(key, 0) + 1
    if not d.kept:
        for code in d.reasons:
            if code not in INFO_CODES:
                k = f"filter/dropped/{code}"
                counts[k] = counts.get(k, 0) + 1


def _reason(exc: Exception) -> str:
    """A stable snake_case reason code from an error type (RepositoryNotFound ->
    repository_not_found)."""
    import re
    return re.sub(r"(?<!^)(?=[A-Z])", "_", type(exc).__name__).lower()


# ---------------------------------------------------------------- rewrite

class Rewrite:
    """Drains the queue's pending rewrites (kept PRs by their latest decision that lack a
    task for this rewriter) into a pool of ``concurrency`` workers, while the crawl runs and
    after it. Each PR is tried once per run; a failure is recorded and the next run retries.
    On a stop, requests in flight are abandoned (their workers are daemon threads): no
    task is written for them, so they stay pending for the next run."""

    def __init__(self, ctx: "RunContext", rewriter: Rewriter, crawl_done: threading.Event,
                 triage=None, applies: "dict[str, Callable[[str, str], bool]] | None" = None):
        self.ctx = ctx
        # per repository at hand (a git source): does a patch apply at a commit (git apply)
        self._applies = applies or {}
        self.rewriter = rewriter
        self.triage = triage  # rewrite/triage.py: asked first, once per PR and version
        self._triaged: set[tuple[str, int]] = set()
        self.crawl_done = crawl_done
        self.done = threading.Event()
        self.error: BaseException | None = None
        self.new_work = threading.Event()  # the writer saw kept PRs go in
        self.concurrency = max(1, getattr(rewriter, "concurrency", 1))
        self._todo: stdqueue.Queue = stdqueue.Queue()
        self._lock = threading.Lock()
        self._in_flight = 0
        self._cut = 0  # rewrites a stop cut short
        self._tried: set[tuple[str, int]] = set()
        self._tried_chains: set[str] = set()
        self._meta: dict[str, tuple[str | None, str | None]] = {}
        self.written = 0

    @property
    def in_flight(self) -> int:
        with self._lock:
            return self._in_flight

    def run(self) -> None:
        workers = [threading.Thread(target=self._work, name=f"synth-rewrite-{i}", daemon=True)
                   for i in range(self.concurrency)]
        for w in workers:
            w.start()
        try:
            self._feed()
        except Stopped:
            pass
        except BaseException as exc:  # handed to the run's owner
            self.error = exc
        finally:
            for _ in workers:
                self._todo.put(None)
            self.done.set()

    def abandoned(self) -> int:
        """Rewrites a stop cut short, or still in flight or waiting for a worker (counted in
        ``_in_flight`` from the moment they are handed out)."""
        with self._lock:
            return self._cut + self._in_flight

    def _feed(self) -> None:
        ctx = self.ctx
        while not ctx.clock.stopping:
            if self.error is not None:
                raise self.error
            try:
                if self._hand_out():
                    continue
                if self.in_flight == 0 and self.crawl_done.is_set():
                    ctx.writer.flush()  # the crawl's last batches, then one more look
                    if not self._pending_left():
                        return
                    continue
            except QueueBusy:  # a curator holds the file: try again shortly
                if self.crawl_done.is_set() and self.in_flight == 0:
                    log.warning("the queue is busy: the rest of the rewrite work waits for "
                                "the next run")
                    return
            self.new_work.clear()
            ctx.clock.wait(self.new_work, 1.0)

    def _hand_out(self) -> bool:
        """Load the next pending PRs for the workers; False when there is none (or no
        room)."""
        ctx, r = self.ctx, self.rewriter
        want = max(2 * self.concurrency, 32) - self.in_flight  # PRs loaded ahead of workers
        if want <= 0:
            return False
        keys = [k for k in q.pending_rewrites(ctx.queue, r.name, r.model, r.prompt_version,
                                              limit=want + len(self._tried))
                if k not in self._tried and k not in ctx.options.exclusions][:want]
        work = self._chain_work(want - len(keys))
        if not keys and not work:
            return False
        if any(k[0] not in self._meta for k in keys + [(w.repo, 0) for w in work]):
            self._meta = q.repo_meta(ctx.queue)
        if self.triage is not None:
            self._triaged |= q.triaged(ctx.queue, keys, self.triage.version)
        prs = q.load_pull_requests(ctx.queue, keys)
        self._tried.update(keys)
        for item in prs + work:
            with self._lock:
                self._in_flight += 1
            self._todo.put(item)
        return True

    def _chain_work(self, want: int) -> list["_ChainWork"]:
        """Kept chains without a task for this rewriter, with their PRs loaded."""
        ctx, r = self.ctx, self.rewriter
        version = getattr(r, "chain_prompt_version", None)
        if want <= 0 or version is None:
            return []
        todo = [c for c in q.pending_chains(ctx.queue, r.name, r.model, version,
                                            limit=want + len(self._tried_chains))
                if c[0] not in self._tried_chains][:want]
        out = []
        loaded = []
        for chain_id, repo, members in todo:
            self._tried_chains.add(chain_id)
            prs = q.load_pull_requests(ctx.queue, [(repo, n) for n in members])
            if len(prs) == len(members):
                loaded.append((chain_id, repo, members, prs))
        for repo in dict.fromkeys(r for _, r, _, _ in loaded):  # one query per repository
            mine = [c for c in loaded if c[1] == repo]
            foreign = q.foreign_changes_many(ctx.queue, repo, [c[2] for c in mine])
            out += [_ChainWork(cid, repo, prs, f) for (cid, _, _, prs), f in zip(mine, foreign)]
        return out

    def _pending_left(self) -> bool:
        r = self.rewriter
        version = getattr(r, "chain_prompt_version", None)
        return any(k not in self._tried and k not in self.ctx.options.exclusions
                   for k in q.pending_rewrites(self.ctx.queue, r.name, r.model, r.prompt_version,
                                               limit=len(self._tried) + 1)) or (
            version is not None and any(
                c[0] not in self._tried_chains for c in q.pending_chains(
                    self.ctx.queue, r.name, r.model, version, limit=len(self._tried_chains) + 1)))

    def _work(self) -> None:
        ctx = self.ctx
        scrub_line = patches.ScrubMemo()  # this worker's own
        while True:
            pr = self._todo.get()
            if pr is None:
                return
            try:
                if ctx.clock.stopping:
                    raise Stopped("stopping")  # abandoned: stays pending for the next run
                if isinstance(pr, _ChainWork):  # a chain: one task over its PRs in order
                    result = self._chain(pr, scrub_line)
                    if not ctx.clock.stopping:
                        ctx.writer.put(_result_batch(result))
                    continue
                if self.triage is not None and pr.key not in self._triaged:
                    verdict = self.triage.judge(pr, decide(pr, ctx.rules).metrics)
                    if not ctx.clock.stopping:
                        ctx.writer.put(_triage_batch(verdict))
                    if not (isinstance(verdict, Decision) and verdict.kept):
                        continue  # trivial: never rewritten; a failure: asked next run
                license, language = self._meta.get(pr.repo, (None, None))
                result = self.rewriter.rewrite_one(pr, license, language)
                if isinstance(result, Task):
                    result = patches.attach(result, [pr], self._is_test, scrub_line=scrub_line)
                if not ctx.clock.stopping:
                    ctx.writer.put(_result_batch(result))
                    if isinstance(result, Task):
                        with self._lock:
                            self.written += 1
                    ctx.progress("rewrite", len(self._tried) - self.abandoned(), None)
            except Stopped:  # the run was asked to stop: this PR waits for the next run
                with self._lock:
                    self._cut += 1
            except BaseException as exc:  # a configuration error, say: ends the stage
                self.error = self.error or exc
                self.new_work.set()
            finally:
                with self._lock:
                    self._in_flight -= 1
                self.new_work.set()


    def _is_test(self, path: str) -> bool:
        return self.ctx.rules.classify(path) == "tests"

    def _chain(self, work: "_ChainWork", scrub_line=None) -> Task | Failure:
        license, language = self._meta.get(work.repo, (None, None))
        result = self.rewriter.rewrite_chain(work.prs, work.chain_id, license, language)
        if isinstance(result, Task):
            result = patches.attach(result, work.prs, self._is_test, work.foreign,
                                    self._applies.get(work.repo), scrub_line)
        return result


class _ChainWork:
    """A kept chain handed to a rewrite worker: its PRs in merge order, and what other PRs
    changed in its files meanwhile (where its stages may not compose)."""

    def __init__(self, chain_id: str, repo: str, prs: list[PullRequest], foreign: list[tuple]):
        self.chain_id, self.repo, self.prs, self.foreign = chain_id, repo, prs, foreign


HANDOFF_INTERVAL = 0.0002  # seconds: sys.setswitchinterval in _quick_handoffs


@contextlib.contextmanager
def _quick_handoffs() -> Iterator[None]:
    """Hand the GIL over quickly while a pure-Python step runs beside the writer. DuckDB's
    Python client takes the GIL after every task of a query, to check for signals; beside a
    busy thread each check waits a whole switch interval (5 ms), and a write that takes
    0.02 s alone takes ten times as long. During the crawl that only delays the writer
    (the crawl is the longer path); at the end, the writer's backlog and the chain
    detection (and the decisions on the source's last batch, read when git is done) are
    the two halves of the run's last step, on two cores. A process-wide setting, restored
    after."""
    before = sys.getswitchinterval()
    sys.setswitchinterval(min(before, HANDOFF_INTERVAL))
    try:
        yield
    finally:
        sys.setswitchinterval(before)


def _triage_batch(verdict: Decision | Failure) -> Batch:
    if isinstance(verdict, Failure):
        return Batch(failures=[verdict], counts=_usage_counts(verdict.usage))
    m = verdict.metrics
    return Batch(decisions=[verdict], counts={
        "triage/substantive" if verdict.kept else "triage/trivial": 1,
        "llm/tokens/in": m.get("tokens_in", 0), "llm/tokens/out": m.get("tokens_out", 0),
        "llm/calls": 1, "llm/cost_microusd": round(m.get("cost_usd", 0) * 1_000_000)})


def _usage_counts(u: Usage | None) -> dict[str, int]:
    """The run's LLM counters for a call's (or a failed attempt's) usage."""
    if u is None or not u.calls:
        return {}
    return {"llm/tokens/in": u.prompt_tokens, "llm/tokens/out": u.completion_tokens,
            "llm/calls": u.calls, "llm/cost_microusd": round(u.cost_usd * 1_000_000)}


def _result_batch(result: Task | Failure) -> Batch:
    if isinstance(result, Failure):  # a failed attempt's calls cost too
        return Batch(failures=[result], counts=_usage_counts(result.usage))
    u = result.usage
    stage = "chain" if result.kind == "chain" else "rewrite"
    return Batch(tasks=[result],
                 resolved=[(stage, result.provenance.repo, result.provenance.pr_number)],
                 counts={"rewrite/tasks": 1, f"{stage}/tasks" if stage == "chain" else
                         "rewrite/pr_tasks": 1, **_usage_counts(u)})
