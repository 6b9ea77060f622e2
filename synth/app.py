"""The library API behind the CLI: each command is one function here.

These functions assemble the stages from settings; they print nothing. ``cli.py`` parses
arguments, calls one of them, and prints what it returns.
"""

from __future__ import annotations

import contextlib
import json
import logging
import shutil
import tempfile
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Iterator

from . import queue as q
from .config import Settings
from .errors import ConfigError
from .clock import Clock
from .filtering import INFO_CODES, Rules, analyze, decide, load_rules, worth_patches
from .models import DedupeResult, RunSummary
from .paths import demo_dir
from .pipeline import Pipeline, RunOptions
from .rewrite.template import TemplateRewriter
from .sources.git import GitRepoSource
from .exclusions import load_exclusions
from .runlock import RunLock

log = logging.getLogger("synth")


def open_queue(settings: Settings, clock: Clock | None = None) -> q.Queue:
    return q.Queue(settings.queue.db, busy_timeout=settings.queue.busy_timeout, clock=clock)


def rules_for(settings: Settings) -> Rules:
    return load_rules(settings.filters.files or None)


@dataclass
class RunRequest:
    demo: bool = False
    git: list[str] = field(default_factory=list)
    repo_name: str | None = None
    ref: str | None = None  # one ref of a clone; default: every local and remote branch
    limit: int | None = None
    rewrite: bool = True
    model: str | None = None
    rewriter: str | None = None  # template | llm; default: llm when a model is named
    judge: bool | None = None
    github: bool = False
    repos: str | None = None  # comma-separated owner/name
    repos_file: str | None = None
    discover: bool | None = None
    max_requests: int | None = None
    report: str | None = None  # write the HTML report here when the run ends


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


def run(settings: Settings, req: RunRequest, clock: Clock | None = None,
        progress=None) -> RunSummary:
    """One run under the queue's single-run lock (RunLocked when another run holds it).
    ``clock`` is the run's clock: its ``stop()`` (the CLI's signal handlers call it) ends
    the run within seconds, wherever it waits."""
    clock = clock or Clock()
    rules = rules_for(settings)
    queue = open_queue(settings, clock)
    if req.report:
        _report_target(req.report)  # a bad path fails before the run, not after it
    with RunLock(queue.path) as lock:
        if lock.previous:
            log.warning("the previous run (pid %s, since %s) did not finish; resuming its work",
                        lock.previous.get("pid"), lock.previous.get("since"))
        summary = _run_locked(settings, req, rules, queue, clock, progress)
        if req.report:  # still under the run lock: no other run writes meanwhile
            report(settings, req.report)
        return summary


def make_rewriter(settings: Settings, req: RunRequest, rules: Rules, clock=None):
    """The rewriter a run uses; ``clock`` is the run's (every LLM wait goes through it)."""
    rw = settings.rewrite
    model = req.model or rw.model
    kind = req.rewriter or ("llm" if req.model else rw.rewriter)
    if kind == "template":
        return TemplateRewriter(rules)
    from .rewrite.llm import LOCAL_TIMEOUT, LLMClient, is_local
    from .rewrite.rewriter import LLMRewriter
    key = settings.openai_api_key.get_secret_value() if settings.openai_api_key else None
    if not key and not rw.base_url:
        raise ConfigError("the LLM rewriter needs OPENAI_API_KEY (or OPENAI_BASE_URL for a "
                          "local server that needs no key); or use --rewriter template")
    # a server on this machine (llama.cpp, Ollama, vLLM on a laptop) answers one request at a
    # time on a few cores: one request in flight, and a timeout that covers a whole answer
    # (see the README's settings table); explicit settings always win
    local = is_local(rw.base_url)
    concurrency = rw.concurrency if "concurrency" in rw.model_fields_set or not local else 1
    timeout = rw.timeout if "timeout" in rw.model_fields_set or not local else LOCAL_TIMEOUT
    if local and (concurrency, timeout) != (rw.concurrency, rw.timeout):
        log.info("LLM endpoint %s is on this machine: concurrency %d, timeout %gs "
                 "([rewrite] concurrency and timeout override)", rw.base_url, concurrency, timeout)
    client = LLMClient(model or "", base_url=rw.base_url, api_key=key, timeout=timeout,
                       concurrency=concurrency, structured_output=rw.structured_output,
                       clock=clock)
    return LLMRewriter(client, rules, prompt_version=rw.prompt_version,
                       max_patch_tokens=rw.max_patch_tokens, concurrency=concurrency,
                       judge=rw.judge if req.judge is None else req.judge, prices=rw.prices,
                       prompts_dir=rw.prompts_dir, max_tokens=rw.max_tokens or None)


def make_triage(settings: Settings, req: RunRequest, rules: Rules, clock=None,
                force: bool = False):
    """The optional LLM triage ([triage] enabled, or ``force``), or None."""
    tr = settings.triage
    if not tr.enabled and not force:
        return None
    from .rewrite.llm import LLMClient
    from .rewrite.triage import Triage
    model = tr.model or req.model or settings.rewrite.model
    base_url = tr.base_url or settings.rewrite.base_url
    key = settings.openai_api_key.get_secret_value() if settings.openai_api_key else None
    if not model:
        raise ConfigError("[triage] needs a model: [triage] model or [rewrite] model")
    if not key and not base_url:
        raise ConfigError("[triage] needs OPENAI_API_KEY or a base_url ([triage] base_url, "
                          "[rewrite] base_url or OPENAI_BASE_URL)")
    client = LLMClient(model, base_url=base_url, api_key=key, timeout=tr.timeout,
                       structured_output=settings.rewrite.structured_output, clock=clock)
    return Triage(client, rules, prompt_version=tr.prompt_version,
                  max_patch_tokens=tr.max_patch_tokens, prompts_dir=settings.rewrite.prompts_dir,
                  prices=settings.rewrite.prices)


def _run_locked(settings, req, rules, queue, clock, progress) -> RunSummary:
    rewriter = make_rewriter(settings, req, rules, clock) if req.rewrite else None
    triage = make_triage(settings, req, rules, clock) if req.rewrite else None
    opts = RunOptions(batch_size=settings.run.batch_size,
                      exclusions=load_exclusions(settings.filters.exclude_file),
                      limit=settings.run.limit if req.limit is None else req.limit,
                      rewrite=req.rewrite, config_hash=settings.config_hash(),
                      progress=progress)
    with contextlib.ExitStack() as stack:
        sources = []
        if req.demo:
            path = stack.enter_context(demo_repository())
            sources.append(GitRepoSource(path, label="demo", clock=clock))
        for p in req.git or ([] if req.demo or req.github else settings.sources.git):
            sources.append(GitRepoSource(p, req.repo_name, ref=req.ref, clock=clock))
        if req.github or (not req.demo and not req.git and (
                settings.sources.repos or settings.sources.repos_file or settings.sources.discover)):
            api = stack.enter_context(contextlib.closing(github_client(settings, req, clock)))
            sources.append(github_source(settings, req, rules, queue, api))
        if not sources:
            raise ConfigError("nothing to run: pass --demo or --git PATH (or list sources in "
                              "synth.toml)")
        opts.source_label = ",".join(s.label for s in sources)
        return Pipeline(queue, rules, rewriter, opts, clock, triage=triage).run(sources)


def github_client(settings: Settings, req: RunRequest | None = None, clock: Clock | None = None):
    from .sources.github import GitHubAPI
    gh = settings.github
    if req is not None and req.max_requests is not None:
        gh = gh.model_copy(update={"max_requests": req.max_requests})
    return GitHubAPI(gh, [t.get_secret_value() for t in settings.github_tokens], clock=clock)


def github_source(settings: Settings, req: RunRequest, rules: Rules, queue: q.Queue, api):
    from .sources.github import GitHubSource, load_repo_list
    names = load_repo_list(req.repos, req.repos_file) or load_repo_list(
        ",".join(settings.sources.repos), settings.sources.repos_file)
    discover_on = settings.sources.discover if req.discover is None else req.discover
    if discover_on:
        names += q.github_repos(queue, settings.github.min_stars)
    if not names:
        raise ConfigError("no GitHub repositories to crawl: pass --repos owner/a,owner/b, "
                          "--repos-file FILE, or --discover after `synth repos discover`")
    return GitHubSource(api, names, prefilter=lambda pr: worth_patches(pr, rules),
                        page_size=settings.github.page_size)


@dataclass
class DiscoverResult:
    repos: list
    requests: int
    not_modified: int


def discover_repos(settings: Settings, min_stars: int | None = None,
                   languages: list[str] | None = None, licenses: list[str] | None = None
                   ) -> DiscoverResult:
    """Find repositories by stars and store them in `repos`."""
    from .models import Batch
    from .sources.github import discover
    queue = open_queue(settings)
    gh = settings.github
    api = github_client(settings)
    try:
        api.etags = q.load_http_cache(queue, "/search/repositories")
        repos = discover(api, gh.min_stars if min_stars is None else min_stars,
                         languages if languages is not None else gh.languages,
                         licenses if licenses is not None else gh.licenses)
    finally:
        api.close()
    queue.write(Batch(repos=repos))
    q.save_http_cache(queue, api.etags_changed)
    return DiscoverResult(repos, api.policy.counts["github/requests"],
                          api.policy.counts["github/not_modified"])


SQL_WAIT = 5.0  # a running crawl lets go of the file at least every 3 s (Queue.holding)


def sql(settings: Settings, text: str, out: str | None = None, fmt: str | None = None):
    """A curator's one read-only statement (queue/curator_sql.py); with ``out``, its rows
    written to that file (csv, json or parquet) instead of returned."""
    from .queue.curator_sql import run_one
    queue = open_queue(settings)
    return run_one(queue, text, wait=min(queue.busy_timeout, SQL_WAIT), out=out, fmt=fmt)


def stats(settings: Settings) -> dict[str, object]:
    f = q.funnel(open_queue(settings))
    reasons = f.pop("reasons")
    f["dropped_by_reason"] = {r: n for r, n in reasons if r not in INFO_CODES}
    return f


def _report_target(out: str | Path) -> Path:
    path = Path(out)
    if path.is_dir():
        raise ConfigError(f"--report/--out {path} is a folder; name the HTML file to write")
    if not path.parent.is_dir():
        raise ConfigError(f"cannot write the report {path}: folder {path.parent} does not exist")
    return path


def report(settings: Settings, out: str | Path, since: str | date | None = None,
           repos: list[str] | None = None):
    """Write the HTML report (report.py) of the queue, or of PRs, tasks, reviews, runs and
    failures since ``since`` (YYYY-MM-DD) and of the repositories ``repos``."""
    from . import report as report_mod
    if isinstance(since, str):
        try:
            since = date.fromisoformat(since)
        except ValueError:
            raise ConfigError(f"--since takes a date YYYY-MM-DD, got {since!r}") from None
    names = [r.strip() for item in repos or [] for r in item.split(",") if r.strip()]
    return report_mod.write(open_queue(settings), _report_target(out), since, names)


def repos(settings: Settings) -> tuple[list[str], list[tuple]]:
    return q.repo_list(open_queue(settings))


# ---------------------------------------------------------------- review

def review_action(settings: Settings, action: str, where: str | None, ids: list[str],
                  reviewer: str, note: str | None):
    """approve / reject / needs-edit / skip the tasks named by ids or a predicate; None when
    none matches."""
    from .queue import curation
    queue = open_queue(settings)
    chosen = curation.select_task_ids(queue, where, ids)
    if not chosen:
        return None
    return curation.apply_action(queue, action, chosen, reviewer, note,
                                 settings.review.reviews_required)


def review_list(settings: Settings, where: str | None, limit: int):
    from .queue import curation
    return curation.list_tasks(open_queue(settings), where, limit)


def review_show(settings: Settings, task_id: str) -> dict:
    from .queue import curation
    return curation.show_task(open_queue(settings), task_id)


def review_content(settings: Settings, task_id: str) -> dict:
    """A task's editable fields, as `review edit` opens them."""
    from .queue import curation
    return curation.task_content(curation.show_task(open_queue(settings), task_id))


def review_edit(settings: Settings, task_id: str, edited: str, reviewer: str,
                note: str | None) -> int:
    from .queue import curation
    return curation.save_edit(open_queue(settings), task_id, edited, reviewer, note)


def review_agreement(settings: Settings):
    from .agreement import agreement
    from .queue import curation
    return agreement(curation.ratings(open_queue(settings)))


# ---------------------------------------------------------------- filters

@dataclass
class RescoreResult:
    prs: int = 0
    kept: int = 0
    changed: int = 0  # PRs whose kept/dropped verdict differs from their previous decision
    filter_version: str = ""


def rescore(settings: Settings, batch_size: int = 2000) -> RescoreResult:
    """Re-decide every stored PR with the current rules; no network."""
    from .models import Batch
    rules = rules_for(settings)
    queue = open_queue(settings)
    rows = q.decided_prs(queue)
    res = RescoreResult(filter_version=rules.version)
    for i in range(0, len(rows), batch_size):
        chunk = rows[i:i + batch_size]
        before = {(r, n): k for r, n, k in chunk}
        batch = Batch()
        for pr in q.load_pull_requests(queue, list(before)):
            d = decide(pr, rules)
            batch.decisions.append(d)
            res.prs += 1
            res.kept += d.kept
            res.changed += before[pr.key] is not None and before[pr.key] != d.kept
        queue.write(batch)
    return res


def parse_pr_ref(ref: str) -> tuple[str, int]:
    repo, sep, num = ref.strip().rpartition("#")
    if not sep or "/" not in repo or not num.isdigit():
        raise ConfigError(f"expected owner/name#NUMBER, got {ref!r}")
    return repo, int(num)


def explain(settings: Settings, ref: str):
    """(pr, metrics, verdicts, decision) of one stored PR under the current rules."""
    from .errors import SourceError
    repo, number = parse_pr_ref(ref)
    rules = rules_for(settings)
    queue = open_queue(settings)
    prs = q.load_pull_requests(queue, [(repo, number)])
    if not prs:
        raise SourceError(f"{repo}#{number} is not in the queue {queue.path}; run synth first")
    metrics, verdicts = analyze(prs[0], rules)
    return prs[0], metrics, verdicts, decide(prs[0], rules)


def pr_chains(settings: Settings, ref: str):
    """The stored chains a PR belongs to, with why their PRs were linked."""
    repo, number = parse_pr_ref(ref)
    return q.chains_of(open_queue(settings), repo, number)


def filters_eval(settings: Settings, labels_paths: list[str] | str, clones: str | None = None,
                 split: str | None = None, triage: bool = False, model: str | None = None):
    """The rules against hand labels: [(title, EvalReport)], one per split of the labelled
    set (tune, heldout) or one for plain label files. PRs come from the queue, or with
    ``clones`` straight from the clones in that folder (no queue needed). With ``triage``,
    the LLM triage ([triage] settings; ``model`` overrides) is asked about every labelled PR
    the rules keep, and each split gets a second report: the rules and the triage together."""
    from .errors import SourceError
    from .evaluation import evaluate, read_labels
    if isinstance(labels_paths, str):
        labels_paths = [labels_paths]
    labels = [lab for path in labels_paths for lab in read_labels(path)]
    if split:
        labels = [lab for lab in labels if lab.split == split]
        if not labels:
            raise ConfigError(f"no labelled PR has split {split!r}")
    rules = rules_for(settings)
    if clones:
        prs = _labelled_prs_from_clones(clones, labels)
    else:
        queue = open_queue(settings)
        keys = list(dict.fromkeys((lab.repo, lab.number) for lab in labels))
        prs = {pr.key: pr for pr in q.load_pull_requests(queue, keys)}
    missing = [k for k in dict.fromkeys((lab.repo, lab.number) for lab in labels) if k not in prs]
    if missing:
        shown = ", ".join(f"{r}#{n}" for r, n in missing[:5])
        where = f"the clones under {clones}" if clones else "the queue"
        raise SourceError(f"{len(missing)} labelled PR(s) are not in {where} ({shown}); "
                          + ("is each clone complete?" if clones else
                             "run synth on their repositories first"))
    decisions = {k: decide(pr, rules) for k, pr in prs.items()}
    splits = sorted({lab.split for lab in labels}, key=lambda s: (s != "heldout", s))
    if splits == [""]:
        reports = [("", evaluate(labels, decisions))]
    else:
        reports = [(f"split: {s or '(none)'}" + ("  (never tuned on: the filter's quality)"
                                                  if s == "heldout" else ""),
                    evaluate([lab for lab in labels if lab.split == s], decisions))
                   for s in splits]
    if triage:
        reports += _triaged_reports(settings, rules, labels, prs, decisions, splits, model)
    if not clones:  # the LLM triage's verdicts, where the queue holds any, judged apart
        verdicts = q.triage_verdicts(open_queue(settings), list(prs))
        judged = [lab for lab in labels if (lab.repo, lab.number) in verdicts]
        if judged:
            from .models import Decision
            models = sorted({m for _, m in verdicts.values() if m})
            tri = {k: Decision(k[0], k[1], kept, ("triage_substantive",) if kept else
                               ("triage_trivial",), "triage") for k, (kept, _) in verdicts.items()}
            reports.append((f"LLM triage ({', '.join(models)}), on the {len(judged)} labelled "
                            "PRs it judged (those the rules kept)", evaluate(judged, tri)))
    return reports


def _triaged_reports(settings: Settings, rules: Rules, labels, prs: dict, decisions: dict,
                     splits: list[str], model: str | None) -> list:
    """Each split's figures with the LLM triage after the rules: a PR the rules keep and the
    triage calls trivial is dropped (``triage_trivial``); one the triage cannot answer stays
    as the rules decided, as in a run."""
    from .evaluation import evaluate
    from .models import Failure
    tri = make_triage(settings, RunRequest(model=model), rules, force=True)
    wanted = {(lab.repo, lab.number) for lab in labels}
    combined = dict(decisions)
    asked = failed = tokens = 0
    cost = 0.0
    for key in sorted(k for k in wanted if decisions[k].kept):
        verdict = tri.judge(prs[key], decisions[key].metrics)
        asked += 1
        usage = verdict.usage if isinstance(verdict, Failure) else None
        if isinstance(verdict, Failure):
            failed += 1
            log.warning("triage of %s#%d: %s", key[0], key[1], verdict.message)
        else:
            combined[key] = verdict
            tokens += verdict.metrics["tokens_in"] + verdict.metrics["tokens_out"]
            cost += verdict.metrics["cost_usd"]
        if usage is not None:
            tokens += usage.prompt_tokens + usage.completion_tokens
            cost += usage.cost_usd
    what = (f"rules + LLM triage ({tri.model}): {asked} kept PRs asked, {tokens} tokens, "
            f"${cost:.4f}" + (f"; {failed} not answered, left as the rules decided"
                              if failed else ""))
    if splits == [""]:
        return [(what, evaluate(labels, combined))]
    return [(f"split: {s or '(none)'}, {what}",
             evaluate([lab for lab in labels if lab.split == s], combined)) for s in splits]


def _labelled_prs_from_clones(clones: str, labels) -> dict:
    """The labelled PRs mined from clones, each at the commit its label names."""
    from .evaluation import find_clone
    from .sources.git import GitSource
    out = {}
    by_repo: dict[str, list] = {}
    for lab in labels:
        by_repo.setdefault(lab.repo, []).append(lab)
    for repo, labs in sorted(by_repo.items()):
        src = GitSource(find_clone(clones, repo), repo)
        listed = src.list_pr_commits()
        by_sha = {c.sha: c for c in listed}
        by_number = {c.number: c for c in listed}
        commits = [by_sha.get(lab.commit) or by_number.get(lab.number) for lab in labs]
        for pr in src.pull_requests([c for c in commits if c is not None]):
            out[pr.key] = pr
    return out


# ---------------------------------------------------------------- runs and settings

def runs(settings: Settings, limit: int = 20) -> tuple[list[str], list[tuple]]:
    return q.recent_runs(open_queue(settings), limit)


def init_config(path: str, force: bool = False, copy_defaults: str | None = None) -> list[Path]:
    """Write a commented synth.toml. With ``copy_defaults``, also copy synth's own filters/ and
    prompts/ into that folder and point ``[filters] files`` and ``[rewrite] prompts_dir`` at
    the copies (paths as given: relative ones are read from the folder synth runs in).
    Returns the files written, synth.toml first."""
    from .config import SAMPLE
    from .paths import filters_dir, prompts_dir
    target = Path(path)
    copies: list[tuple[Path, Path]] = []
    text = SAMPLE
    if copy_defaults:
        dest = Path(copy_defaults)
        for folder in (filters_dir(), prompts_dir()):
            if not folder.is_dir():
                raise ConfigError(f"synth's default {folder.name}/ not found at {folder}")
            copies += [(f, dest / folder.name / f.name) for f in sorted(folder.iterdir())
                       if f.is_file()]
        text = _set_sample_key(text, "files", json.dumps([(dest / "filters" / "default.toml")
                                                          .as_posix()]))
        text = _set_sample_key(text, "prompts_dir", json.dumps((dest / "prompts").as_posix()))
    existing = [p for p in [target, *(dst for _, dst in copies)] if p.exists()]
    if existing and not force:
        raise ConfigError(f"{existing[0]} exists; pass --force to overwrite it")
    for src, dst in copies:
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, dst)
    target.write_text(text, encoding="utf-8")
    return [target, *(dst for _, dst in copies)]


def _set_sample_key(text: str, key: str, value: str) -> str:
    """Uncomment ``# key = ...`` in the sample settings and give it ``value`` (a TOML value)."""
    import re
    new, n = re.subn(rf"^# {key} = [^#\n]*?(?:\s+(#.*))?$", lambda m: f"{key} = {value}"
                     + (f"  {m.group(1)}" if m.group(1) else ""), text, count=1, flags=re.M)
    assert n == 1, key
    return new


# ---------------------------------------------------------------- dedupe

def dedupe(settings: Settings, threshold: float = 0.8) -> DedupeResult:
    """Flag near-duplicate tasks (query text, and PR patches) with the id of their twin."""
    from .queue.curation import dedupe_tasks
    return dedupe_tasks(open_queue(settings), threshold)
