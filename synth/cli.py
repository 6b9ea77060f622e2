"""The command line: parses arguments, calls one function, prints. No logic lives here.

Exit codes: 0 ok; 1 error; 2 usage or configuration error; 3 the run finished partially
(some repositories or PRs failed and were recorded); 75 the queue or the run lock is busy
(try again later); 130 interrupted (SIGINT/SIGTERM; the current batch was saved).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import signal
import sys
from datetime import date
from pathlib import Path

from . import __version__, app, config, export as export_mod
from .errors import (EXIT_ERROR, EXIT_INTERRUPTED, EXIT_OK, EXIT_PARTIAL, ReviewError,
                     SynthError)
from .exclusions import load_exclusions
from .printing import (_jsonable, format_chains, format_explain, format_rows, format_task,
                       print_summary)
from .progress import Progress, setup_logging

log = logging.getLogger("synth")


# ---------------------------------------------------------------- commands

class StopOnSignal:
    """SIGINT/SIGTERM stop the run through its clock: every wait ends at once, what is
    complete is saved, and the run exits with 130. A second SIGINT stops at once."""

    def __init__(self, clock):
        self.clock = clock

    def handle(self, signum, frame) -> None:
        if self.clock.stopping and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.clock.stop(f"{signal.Signals(signum).name} received")
        log.warning("%s received: stopping (what is complete is saved)",
                    signal.Signals(signum).name)

    @contextlib.contextmanager
    def installed(self):
        old = {sig: signal.signal(sig, self.handle) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield self
        finally:
            for sig, handler in old.items():
                signal.signal(sig, handler)


def cmd_run(args, settings) -> int:
    from .clock import Clock
    req = app.RunRequest(demo=args.demo, git=[args.git] if args.git else [],
                         repo_name=args.repo, ref=args.ref, limit=args.limit,
                         rewrite=not args.no_rewrite, model=args.model, rewriter=args.rewriter,
                         judge=True if args.judge else None, github=args.github,
                         repos=args.repos, repos_file=args.repos_file,
                         discover=True if args.discover else None,
                         max_requests=args.max_requests, report=args.report)
    progress = Progress(enabled=None if args.progress == "auto" else args.progress == "on")
    clock = Clock()
    with StopOnSignal(clock).installed():
        summary = app.run(settings, req, clock=clock, progress=progress)
    progress.clear()
    print_summary(summary)
    if args.report:
        print(f"  report:        {args.report}")
    if summary.status == "interrupted":
        return EXIT_INTERRUPTED
    return EXIT_PARTIAL if summary.status == "partial" else EXIT_OK


def cmd_repos_discover(args, settings) -> int:
    res = app.discover_repos(settings, args.min_stars, args.language, args.license)
    print(f"discovered {len(res.repos)} repositories ({res.requests} search requests, "
          f"{res.not_modified} unchanged pages)")
    return EXIT_OK


def cmd_repos_list(args, settings) -> int:
    cols, rows = app.repos(settings)
    print(format_rows(cols, rows, args.format))
    return EXIT_OK


def cmd_runs(args, settings) -> int:
    cols, rows = app.runs(settings, args.limit)
    print(format_rows(cols, rows, args.format))
    return EXIT_OK


def cmd_init(args, settings) -> int:
    path, *copies = app.init_config(args.path, force=args.force, copy_defaults=args.copy_defaults)
    for copy in copies:
        print(f"copied {copy}")
    print(f"wrote {path}: edit it, then `synth run`")
    return EXIT_OK


def cmd_sql(args, settings) -> int:
    if args.format == "parquet" and not args.out:
        raise config.ConfigError("--format parquet needs --out FILE")
    if args.out:
        fmt = args.format if args.format != "table" else None
        n = app.sql(settings, args.query, out=args.out, fmt=fmt)
        print(f"wrote {n} row{'s' if n != 1 else ''} to {args.out}")
        return EXIT_OK
    cols, rows = app.sql(settings, args.query)
    if cols:
        print(format_rows(cols, rows, args.format))
    return EXIT_OK


def cmd_review_action(args, settings) -> int:
    res = app.review_action(settings, args.action, args.where, args.task_ids, args.reviewer,
                            args.note)
    if res is None:
        print("no task matches; nothing changed")
        return EXIT_OK
    if res.journaled:
        print(f"{args.action}: {res.recorded} task(s) recorded; will apply when the queue is "
              "free (a run holds it now)")
        return EXIT_OK
    print(f"{args.action}: {res.recorded} task(s) recorded, {res.changed} changed status")
    return EXIT_OK


def cmd_review_list(args, settings) -> int:
    cols, rows = app.review_list(settings, args.where, args.limit)
    print(format_rows(cols, rows, args.format))
    return EXIT_OK


def cmd_review_show(args, settings) -> int:
    t = app.review_show(settings, args.task_id)
    if args.format == "json":
        print(json.dumps(t, default=_jsonable, indent=2))
        return EXIT_OK
    print(format_task(t))
    return EXIT_OK


def cmd_review_edit(args, settings) -> int:
    if args.file:
        edited = Path(args.file).read_text(encoding="utf-8")
    else:
        current = app.review_content(settings, args.task_id)
        edited = _edit_in_editor(json.dumps(current, indent=2, ensure_ascii=False) + "\n")
    revision = app.review_edit(settings, args.task_id, edited, args.reviewer, args.note)
    if revision is None:
        print(f"{args.task_id}: edit recorded; will apply when the queue is free")
    else:
        print(f"{args.task_id}: saved as revision {revision}")
    return EXIT_OK


def _edit_in_editor(text: str) -> str:
    import os
    import shlex
    import subprocess
    import tempfile
    editor = os.environ.get("VISUAL") or os.environ.get("EDITOR") or "vi"
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False, encoding="utf-8") as fh:
        fh.write(text)
        path = fh.name
    try:
        code = subprocess.call([*shlex.split(editor), path])
        if code != 0:
            raise ReviewError(f"the editor ({editor}) exited with {code}; nothing saved")
        return Path(path).read_text(encoding="utf-8")
    finally:
        Path(path).unlink(missing_ok=True)


def cmd_review_agreement(args, settings) -> int:
    pairs, fleiss = app.review_agreement(settings)
    if not pairs:
        print("no two reviewers have rated the same task yet")
        return EXIT_OK
    print("reviewer pair                      tasks   Cohen's kappa")
    for a, b, n, k in pairs:
        print(f"  {a + ' / ' + b:<32} {n:>5}   {'n/a' if k is None else f'{k:.3f}'}")
    print(f"Fleiss' kappa (tasks with 2+ reviewers): {'n/a' if fleiss is None else f'{fleiss:.3f}'}")
    return EXIT_OK


def cmd_dedupe(args, settings) -> int:
    res = app.dedupe(settings, args.threshold)
    print(f"signed {res.signed} new task(s); near-duplicates flagged: "
          f"{res.flagged.get('query', 0)} by query text, {res.flagged.get('patch', 0)} by patch")
    return EXIT_OK


def cmd_export(args, settings) -> int:
    try:
        since = date.fromisoformat(args.since) if args.since else None
    except ValueError:
        raise config.ConfigError(f"--since takes a date YYYY-MM-DD, got {args.since!r}") from None
    res = export_mod.export(app.open_queue(settings), Path(args.out), args.format, since,
                            args.split_by_repo, args.style,
                            exclude=load_exclusions(settings.filters.exclude_file))
    print(f"exported {res.count} approved task(s) to {args.out}")
    for f in res.files:
        print(f"  {f}")
    if args.split_by_repo and res.count and not res.by_split.get("test"):
        print("note: --split-by-repo puts whole repositories in test, and the approved tasks "
              "come from one repository: all of them are in train", file=sys.stderr)
    return EXIT_OK


def cmd_report(args, settings) -> int:
    res = app.report(settings, args.out, args.since, args.repo)
    print(f"wrote {res.path} ({res.bytes / 1024:,.0f} KB) in {res.seconds:.2f} s")
    return EXIT_OK


def cmd_stats(args, settings) -> int:
    s = app.stats(settings)
    print(f"repos:          {s['repos']}")
    print(f"pull requests:  {s['pull_requests']}")
    print(f"  kept:         {s['kept']}")
    print(f"  dropped:      {s['dropped']}")
    for code, n in s["dropped_by_reason"].items():
        print(f"    {code:<20} {n}")
    print(f"chains:         {s['chains']} ({s['chains_kept']} kept)")
    print(f"tasks:          {s['tasks']} ({s['chain_tasks']} over chains)")
    for status, n in s["tasks_by_status"].items():
        print(f"  {status:<12} {n}")
    print(f"open failures:  {s['open_failures']}")
    print(f"runs:           {s['runs']}")
    return EXIT_OK


def cmd_filter(args, settings) -> int:
    if not args.rescore:
        raise config.ConfigError("nothing to do: pass --rescore to re-decide stored PRs with "
                                 "the current rules")
    res = app.rescore(settings)
    print(f"rescored {res.prs} PRs with filter version {res.filter_version}: "
          f"{res.kept} kept, {res.prs - res.kept} dropped, {res.changed} changed verdict")
    return EXIT_OK


def cmd_explain(args, settings) -> int:
    pr, metrics, verdicts, decision = app.explain(settings, args.pr)
    print(format_explain(pr, metrics, verdicts, decision))
    print(format_chains(pr.number, app.pr_chains(settings, args.pr)))
    return EXIT_OK


def cmd_filters_eval(args, settings) -> int:
    from .evaluation import format_report
    reports = app.filters_eval(settings, args.labels, clones=args.clones, split=args.split,
                               triage=args.triage, model=args.model)
    print("\n\n".join(
        format_report(rep, title, list_errors=args.list_heldout or not title.startswith(
            "split: heldout")) for title, rep in reports))
    return EXIT_OK


# ---------------------------------------------------------------- parser

def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--db", metavar="FILE",
                        help="queue file (default: $SYNTH_DB, synth.toml, or data/queue.duckdb)")
    common.add_argument("--config", metavar="FILE", help="settings file (default: ./synth.toml)")
    common.add_argument("-v", "--verbose", action="store_true", help="more log output")
    common.add_argument("--log-json", action="store_true",
                        help="machine-readable logs: one JSON object per line on stderr")

    p = argparse.ArgumentParser(
        prog="synth", description="Turn merged GitHub pull requests into long-horizon coding "
        "tasks, curated in a DuckDB review queue.", parents=[common])
    p.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", required=True)

    r = sub.add_parser("run", parents=[common], help="crawl, filter and rewrite PRs into the queue",
                       description="One run: read PRs from a source, filter them, rewrite the "
                       "kept ones into tasks, and write everything to the queue.")
    src = r.add_mutually_exclusive_group()
    src.add_argument("--demo", action="store_true", help="run on the embedded demo project (offline)")
    src.add_argument("--git", metavar="PATH", help="a local clone (bare or not)")
    src.add_argument("--github", action="store_true",
                     help="crawl GitHub (GITHUB_TOKEN/GITHUB_TOKENS; --repos, --repos-file or --discover)")
    r.add_argument("--repos", metavar="OWNER/A,OWNER/B", help="GitHub repositories to crawl")
    r.add_argument("--repos-file", metavar="FILE", help="GitHub repositories, one owner/name per line")
    r.add_argument("--discover", action="store_true",
                   help="also crawl the repositories `synth repos discover` stored")
    r.add_argument("--max-requests", type=_nonneg_int, metavar="N",
                   help="stop cleanly after N GitHub requests (cursors saved; the next run resumes)")
    r.add_argument("--repo", metavar="OWNER/NAME", help="repository name, when the clone has no GitHub origin")
    r.add_argument("--ref", metavar="REF",
                   help="with --git: read only the history of REF (default: every local and "
                   "remote branch)")
    r.add_argument("--limit", type=_nonneg_int, metavar="N", help="at most N newest PRs per repository")
    r.add_argument("--no-rewrite", action="store_true", help="filter only; write no tasks")
    r.add_argument("--model", metavar="NAME",
                   help="rewrite with this LLM over OPENAI_BASE_URL (implies --rewriter llm)")
    r.add_argument("--rewriter", choices=["template", "llm"],
                   help="template: offline, from PR metadata; llm: an OpenAI-compatible endpoint")
    r.add_argument("--judge", action="store_true", help="score each new task with a judge prompt")
    r.add_argument("--progress", choices=["auto", "on", "off"], default="auto",
                   help="progress bars (auto: only when stderr is a terminal)")
    r.add_argument("--report", metavar="FILE",
                   help="when the run ends, write the HTML report (as `synth report`) to FILE")
    r.set_defaults(func=cmd_run)

    rp = sub.add_parser("repos", parents=[common], help="GitHub repositories",
                        description="Find and list GitHub repositories to crawl.")
    rpsub = rp.add_subparsers(dest="repos_command", metavar="ACTION", required=True)
    dc = rpsub.add_parser("discover", parents=[common], help="find repositories by stars",
                          description="Search GitHub for public, non-archived, non-fork "
                          "repositories with at least --min-stars stars and store them in repos. "
                          "Star ranges are split so the Search API's 1000-result cap loses none.")
    dc.add_argument("--min-stars", type=_nonneg_int, metavar="N", help="default 10000 ([github] min_stars)")
    dc.add_argument("--language", action="append", metavar="LANG", help="repeatable")
    dc.add_argument("--license", action="append", metavar="SPDX", help="allow-list, repeatable")
    dc.set_defaults(func=cmd_repos_discover)
    rl = rpsub.add_parser("list", parents=[common], help="list stored repositories",
                          description="Repositories in the queue with their PR counts.")
    rl.add_argument("--format", choices=["table", "csv", "json"], default="table")
    rl.set_defaults(func=cmd_repos_list)

    rn = sub.add_parser("runs", parents=[common], help="list recent runs",
                        description="The run records: status, counts, errors.")
    rn.add_argument("--limit", type=_nonneg_int, default=20, metavar="N")
    rn.add_argument("--format", choices=["table", "csv", "json"], default="table")
    rn.set_defaults(func=cmd_runs)

    it = sub.add_parser("init", parents=[common], help="write a commented synth.toml",
                        description="Write a commented settings file to start from; with "
                        "--copy-defaults, also a copy of synth's own filter rules and prompts "
                        "to edit.")
    it.add_argument("path", nargs="?", default="synth.toml")
    it.add_argument("--copy-defaults", metavar="DIR",
                    help="copy the default filters/ and prompts/ into DIR/filters and "
                    "DIR/prompts, and point [filters] files and [rewrite] prompts_dir at them")
    it.add_argument("--force", action="store_true", help="overwrite existing files")
    it.set_defaults(func=cmd_init)

    s = sub.add_parser("sql", parents=[common], help="run a read-only SQL query on the queue",
                       description="Open the queue read-only and run one reading SQL statement "
                       "(SELECT, EXPLAIN, PRAGMA, CALL). Writing, reading other files, ATTACH and "
                       "extensions are refused; --out FILE writes the result.")
    s.add_argument("query", help='e.g. "SELECT * FROM review_queue LIMIT 10"')
    s.add_argument("--format", choices=["table", "csv", "json", "parquet"], default="table",
                   help="how to print (table, csv, json), or with --out the file's format "
                   "(csv, json lines, parquet; default: from the file name)")
    s.add_argument("--out", metavar="FILE", help="write the result to FILE instead of printing it")
    s.set_defaults(func=cmd_sql)

    rv = sub.add_parser("review", parents=[common], help="approve, reject or mark tasks",
                        description="Change task status; every action is recorded in review_events.")
    rsub = rv.add_subparsers(dest="action", metavar="ACTION", required=True)
    for action, text in (("approve", "approve tasks"), ("reject", "reject tasks"),
                         ("needs-edit", "mark tasks as needing an edit"),
                         ("skip", "skip tasks (no verdict)")):
        a = rsub.add_parser(action, parents=[common], help=text, description=text.capitalize() + ".")
        a.add_argument("task_ids", nargs="*", metavar="TASK_ID")
        a.add_argument("--where", metavar="PREDICATE",
                       help="SQL predicate over the tasks table, e.g. \"repo = 'a/b' AND difficulty = 'hard'\"")
        a.add_argument("--reviewer", required=True, metavar="NAME")
        a.add_argument("--note", metavar="TEXT")
        a.set_defaults(func=cmd_review_action)
    ls = rsub.add_parser("list", parents=[common], help="list tasks (pending by default)",
                         description="Tasks, best first; pending ones unless --where says otherwise.")
    ls.add_argument("--where", metavar="PREDICATE", help="SQL predicate over the tasks table")
    ls.add_argument("--limit", type=_nonneg_int, default=50, metavar="N")
    ls.add_argument("--format", choices=["table", "csv", "json"], default="table")
    ls.set_defaults(func=cmd_review_list)
    sh = rsub.add_parser("show", parents=[common], help="one task in full",
                         description="The task, its PR link, files, reason codes, judge score "
                         "and review history.")
    sh.add_argument("task_id", metavar="TASK_ID")
    sh.add_argument("--format", choices=["text", "json"], default="text")
    sh.set_defaults(func=cmd_review_show)
    ed = rsub.add_parser("edit", parents=[common], help="edit a task in $EDITOR",
                         description="Open the task as JSON in $VISUAL/$EDITOR (or read --file), "
                         "validate it, and store it as a new revision; the original is kept in "
                         "task_revisions.")
    ed.add_argument("task_id", metavar="TASK_ID")
    ed.add_argument("--reviewer", required=True, metavar="NAME")
    ed.add_argument("--note", metavar="TEXT")
    ed.add_argument("--file", metavar="FILE", help="take the edited JSON from FILE instead of an editor")
    ed.set_defaults(func=cmd_review_edit)
    ag = rsub.add_parser("agreement", parents=[common], help="inter-reviewer agreement",
                         description="Cohen's kappa per reviewer pair and Fleiss' kappa overall, "
                         "over each reviewer's latest verdict per task.")
    ag.set_defaults(func=cmd_review_agreement)

    e = sub.add_parser("export", parents=[common], help="write approved tasks as a dataset",
                       description="Write approved tasks with provenance, a dataset card and a manifest.")
    e.add_argument("--out", required=True, metavar="DIR")
    e.add_argument("--format", choices=["jsonl", "parquet"], default="jsonl")
    e.add_argument("--since", metavar="DATE", help="only tasks reviewed on or after DATE (YYYY-MM-DD)")
    e.add_argument("--split-by-repo", type=float, metavar="TEST_FRACTION",
                   help="put whole repositories in a test split of about this fraction")
    e.add_argument("--style", choices=["agencybench", "swebench"],
                   help="agencybench: also render each task as text; swebench: SWE-bench's "
                   "field names (instance_id, base_commit, patch, test_patch, "
                   "problem_statement, FAIL_TO_PASS, ...)")
    e.set_defaults(func=cmd_export)

    f = sub.add_parser("filter", parents=[common], help="re-decide stored PRs (no network)",
                       description="Re-decide every stored PR with the current filter rules.")
    f.add_argument("--rescore", action="store_true", help="re-decide stored PRs after a rule change")
    f.set_defaults(func=cmd_filter)

    x = sub.add_parser("explain", parents=[common], help="why a PR was kept or dropped",
                       description="A stored PR's figures, file classes and each rule's "
                       "verdict, and the chains of related PRs it belongs to.")
    x.add_argument("pr", metavar="OWNER/NAME#N")
    x.set_defaults(func=cmd_explain)

    fs = sub.add_parser("filters", parents=[common], help="evaluate the filter rules",
                        description="Tools for the filter rules.")
    fsub = fs.add_subparsers(dest="filters_command", metavar="ACTION", required=True)
    ev = fsub.add_parser("eval", parents=[common], help="precision/recall against labels",
                         description="Precision, recall and F1 of 'kept' against 'substantive' "
                         "labels, with confusion by reason code. LABELS.tsv has the header "
                         "repo<TAB>pr_number<TAB>label[<TAB>note]; labels are trivial or "
                         "substantive. The PRs must be in the queue.")
    ev.add_argument("labels", metavar="LABELS.tsv", nargs="+")
    ev.add_argument("--clones", metavar="DIR",
                    help="mine the labelled PRs from the clones in DIR (DIR/owner+name, "
                    "DIR/owner/name[.git] or DIR/name[.git]) instead of the queue")
    ev.add_argument("--split", choices=["tune", "heldout"],
                    help="only the labelled PRs of this split (a labelled set's split column)")
    ev.add_argument("--list-heldout", action="store_true",
                    help="list the held-out split's false positives and negatives too (by "
                    "default only its figures: look at its errors only once the rules are final)")
    ev.add_argument("--triage", action="store_true",
                    help="also ask the LLM triage ([triage] settings, any OpenAI-compatible "
                    "endpoint) about every labelled PR the rules keep, and report the rules "
                    "and the triage together, per split (one call per kept PR)")
    ev.add_argument("--model", metavar="MODEL",
                    help="the triage's model (default: [triage] model, then [rewrite] model)")
    ev.set_defaults(func=cmd_filters_eval)

    dd = sub.add_parser("dedupe", parents=[common], help="flag near-duplicate tasks",
                        description="Flag tasks whose query text or PR patch is a near-copy of "
                        "an older task's (MinHash); sets tasks.dup_of. Runs run it too.")
    dd.add_argument("--threshold", type=float, default=0.8, metavar="J",
                    help="estimated Jaccard similarity that makes a twin (default 0.8)")
    dd.set_defaults(func=cmd_dedupe)

    st = sub.add_parser("stats", parents=[common], help="print the funnel",
                        description="Repositories, PRs, kept and dropped, tasks by status.")
    st.set_defaults(func=cmd_stats)

    rp = sub.add_parser("report", parents=[common], help="write the HTML report",
                        description="One self-contained HTML page with charts and tables: the "
                        "funnel, dropped PRs by reason, LLM use and cost, task quality, review "
                        "throughput and agreement, runs. Opens offline in any browser.")
    rp.add_argument("--out", required=True, metavar="FILE", help="the HTML file to write")
    rp.add_argument("--since", metavar="DATE",
                    help="only PRs first seen, tasks created, review actions, runs and "
                    "failures on or after DATE (YYYY-MM-DD)")
    rp.add_argument("--repo", action="extend", nargs="+", metavar="OWNER/NAME",
                    help="only these repositories (repeatable; runs stay queue-wide)")
    rp.set_defaults(func=cmd_report)
    return p


def _nonneg_int(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if n < 0:
        raise argparse.ArgumentTypeError("must be 0 or more")
    return n


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    setup_logging(args.verbose, args.log_json)
    try:
        settings = config.load(args.config)
        if args.db:
            settings.queue.db = args.db
        return args.func(args, settings)
    except SynthError as exc:
        print(f"synth: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("synth: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except OSError as exc:  # a file or folder at the command's edge: one clear line
        if isinstance(exc, BrokenPipeError):
            return EXIT_OK
        where = f": {exc.filename}" if getattr(exc, "filename", None) else ""
        print(f"synth: {exc.strerror or exc}{where}", file=sys.stderr)
        return EXIT_ERROR


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
