"""The report: one self-contained HTML page over the queue (`synth report`, `run --report`).

The figures come from DuckDB aggregates (queue/report_sql.py) and are drawn as inline SVG by
matplotlib (report_charts.py); every chart has its numbers in a table beside it. The page
loads nothing: no script, no stylesheet, font or image from elsewhere. Key numbers carry ids
and ``data-value`` attributes (``#n-pull_requests``, ``tr[data-key]`` in each ``#t-...``
table) so that tests and scripts can read them.
"""

from __future__ import annotations

import html
import os
import time
from dataclasses import dataclass
from datetime import date, datetime, time as dtime
from pathlib import Path

from . import __version__, report_charts as charts
from .filtering import INFO_CODES
from .queue.report_sql import ReportData, Table, collect
from .queue.schema import utcnow

TOP_SERIES = 8  # series in a stacked chart; the rest are summed as "other"


@dataclass
class ReportResult:
    path: Path
    bytes: int
    seconds: float
    queries_seconds: float


def write(queue, out: Path, since: date | None = None, repos: list[str] | None = None,
          now: datetime | None = None) -> ReportResult:
    """Compute the report and write it to ``out`` (the folder must exist), whole: a reader
    of the file (a browser, a web server beside a cron job) never sees half a page."""
    t0 = time.perf_counter()
    now = now or utcnow()
    data = collect(queue, datetime.combine(since, dtime()) if since else None, repos or None,
                   info_codes=INFO_CODES, now=now)
    t1 = time.perf_counter()
    page = render(data, queue=str(Path(queue.path).resolve()), since=since, repos=repos, now=now)
    out = Path(out)
    part = out.with_name(f".{out.name}.{os.getpid()}.part")
    try:
        part.write_text(page, encoding="utf-8")
        os.replace(part, out)
    finally:
        part.unlink(missing_ok=True)
    return ReportResult(out, len(page.encode()), time.perf_counter() - t0, t1 - t0)


# ---------------------------------------------------------------- formatting

def _fmt(v: object) -> str:
    if v is None:
        return "–"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, int):
        return f"{v:,}"
    if isinstance(v, float):
        if v != v:  # NaN
            return "–"
        return f"{v:,.0f}" if abs(v) >= 1000 else f"{v:,.2f}" if abs(v) >= 1 else f"{v:.3g}"
    if isinstance(v, datetime):
        return v.strftime("%Y-%m-%d %H:%M")
    if isinstance(v, date):
        return v.isoformat()
    if isinstance(v, (list, tuple)):
        return ", ".join(map(str, v))
    return str(v)


def _cell(col: str, v: object) -> str:
    num = isinstance(v, (int, float)) and not isinstance(v, bool)
    attr = f' data-value="{v!r}"' if num else ""
    return f'<td data-col="{html.escape(col)}"{attr}{" class=num" if num else ""}>{html.escape(_fmt(v))}</td>'


def table(key: str, cols: list[str], rows: list[tuple], more: int = 0,
          headers: list[str] | None = None) -> str:
    """A table whose rows carry ``data-key`` (the first column) and cells ``data-value``."""
    head = "".join(f'<th scope="col">{html.escape(h)}</th>' for h in headers or cols)
    body = "".join(f'<tr data-key="{html.escape(str(r[0]))}">'
                   + "".join(_cell(c, v) for c, v in zip(cols, r)) + "</tr>" for r in rows)
    extra = f'<p class="more">… and {more:,} more</p>' if more else ""
    return (f'<table id="t-{key}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody>'
            f"</table>{extra}")


def figure(key: str, title: str, question: str, chart: str | None, tab: str,
           empty: str | None = None) -> str:
    cap = (f'<figcaption id="cap-{key}"><strong>{html.escape(title)}</strong> '
           f'<span>{html.escape(question)}</span></figcaption>')
    if empty is not None:
        return f'<figure id="f-{key}" class="fig">{cap}<p class="empty">{html.escape(empty)}</p></figure>'
    left = f'<div class="chart">{chart}</div>' if chart else ""
    return (f'<figure id="f-{key}" class="fig">{cap}<div class="pair">{left}'
            f'<div class="tab">{tab}</div></div></figure>')


def _bars(key: str, title: str, question: str, t: Table, empty: str, xlabel: str = "") -> str:
    """The common figure: one label column and one count column as bars, with the table."""
    if not t.rows:
        return figure(key, title, question, None, "", empty)
    chart = charts.hbar([r[0] for r in t.rows], [r[1] for r in t.rows], key=key,
                        label=f"cap-{key}", xlabel=xlabel)
    return figure(key, title, question, chart, table(key, t.cols, t.rows, t.more))


def _top(series: dict[str, list[float]]) -> list[tuple[str, list[float]]]:
    """The TOP_SERIES largest series by total; the rest summed as "other"."""
    ranked = sorted(series.items(), key=lambda kv: (-sum(kv[1]), kv[0]))
    top, rest = ranked[:TOP_SERIES], ranked[TOP_SERIES:]
    if rest:
        top.append(("other", [sum(v) for v in zip(*(vals for _, vals in rest))]))
    return top


def _buckets(rows: list[tuple], step: float, lo: float | None = None,
             hi: float | None = None) -> list[tuple]:
    """Histogram rows (bucket start, count) with the empty buckets between lo and hi."""
    have = {round(b / step): n for b, n in rows}
    first = round(lo / step) if lo is not None else min(have)
    last = round(hi / step) if hi is not None else max(have)
    return [(round(i * step, 6), have.get(i, 0)) for i in range(first, last + 1)]


def _run_labels(started: list[datetime]) -> list[str]:
    """Run start times as short labels, with seconds (then a number) when minutes clash."""
    for fmt in ("%m-%d %H:%M", "%m-%d %H:%M:%S"):
        labels = [s.strftime(fmt) for s in started]
        if len(set(labels)) == len(labels):
            return labels
    return [f"{lab} #{i + 1}" for i, lab in enumerate(labels)]


def _ratio(a, b):
    return a / b if b else None


def _nan(v):
    return float("nan") if v is None else v


# ---------------------------------------------------------------- sections

def _section(sid: str, title: str, answers: str, parts: list[str]) -> str:
    return (f'<section id="{sid}"><h2>{html.escape(title)}</h2><p class="lead">'
            f"{html.escape(answers)}</p>{''.join(parts)}</section>")


def _funnel(d: ReportData) -> str:
    tot, t = d.totals, d.tables
    status = dict(t["status"].rows)
    stages = [("pull_requests", "PRs seen", tot["pull_requests"]), ("kept", "kept", tot["kept"]),
              ("dropped", "dropped", tot["dropped"]), ("tasks", "tasks", tot["tasks"])]
    order = {"approved": 0, "rejected": 1, "pending": 2}
    stages += [(f"status:{s}", f"tasks {s}", n) for s, n in sorted(
        status.items(), key=lambda kv: (order.get(kv[0], 3), kv[0]))]
    colors = [charts.STATUS_COLORS.get(k.split(":")[-1], charts.PALETTE[0]) for k, _, _ in stages]
    chart = charts.hbar([s[1] for s in stages], [s[2] for s in stages], key="funnel",
                        label="cap-funnel", xlabel="count", colors=colors)
    rows = [(label, n) for _, label, n in stages]
    parts = [figure("funnel", "The funnel", f"{tot['repos']:,} repositories: PRs seen, kept by "
                    "the filter, rewritten into tasks, and where the tasks stand in review.", chart,
                    table("funnel", ["stage", "count"], rows))]
    fr = t["funnel_repos"]
    if fr.rows:
        chart = charts.stacked([r[0] for r in fr.rows], [
            ("kept", [r[2] for r in fr.rows]), ("dropped", [r[3] for r in fr.rows]),
            ("undecided", [r[1] - r[2] - r[3] for r in fr.rows])], key="repos", label="cap-repos",
            horizontal=True, xlabel="PRs")
        parts.append(figure("repos", "Per repository", "PRs seen, kept and dropped; tasks and "
                            "their review status (other: needs_edit, skipped). Most PRs first.",
                            chart, table("repos", fr.cols, fr.rows, fr.more)))
    return _section("funnel", "Funnel", "How much came in, and what became of it.", parts)


def _dropped(d: ReportData) -> str:
    t = d.tables
    parts = [_bars("reasons", "Dropped PRs by reason", "Every rule that fired on a dropped PR "
                   "(a PR can have several reasons).", t["reasons"], "No PR was dropped.", "PRs")]
    long = t["reasons_by_run"].rows
    runs = list(dict.fromkeys((r[0], r[1]) for r in long))
    if runs:
        idx = {run: i for i, (run, _) in enumerate(runs)}
        series: dict[str, list[float]] = {}
        for run, _, reason, n in long:
            series.setdefault(reason, [0] * len(runs))[idx[run]] = n
        labels = _run_labels([s for _, s in runs])
        chart = charts.stacked(labels, _top(series), key="reasons_runs", label="cap-reasons_runs",
                               ylabel="PRs dropped")
        rows = [(reason, *vals) for reason, vals in sorted(series.items())]
        parts.append(figure("reasons_runs", "Dropped by reason, over the last runs",
                            "PRs each run dropped, by reason (run start, UTC).", chart,
                            table("reasons_runs", ["reason"] + [r for r, _ in runs], rows,
                                  headers=["reason"] + labels)))
    else:
        parts.append(figure("reasons_runs", "Dropped by reason, over the last runs", "", None,
                            "", "No run dropped a PR."))
    return _section("dropped", "Dropped", "What was dropped, and why.", parts)


def _llm(d: ReportData) -> str:
    t = d.tables
    rw = t["rewriters"]
    named = Table(["rewriter_model"] + rw.cols[2:],
                  [(f"{r[0]} / {r[1]}" if r[1] else r[0], *r[2:]) for r in rw.rows])
    parts = [_bars("rewriters", "Tasks by rewriter and model", "Who wrote the tasks, with tokens, "
                   "cost (USD) and the average judge score.", named, "No task yet.", "tasks")]
    runs = list(reversed(t["llm_runs"].rows))  # oldest first
    if any(r[2] for r in runs):
        rows = [(run_id, started, calls, tin, tout, cost / 1e6, kept, _ratio(cost / 1e6, kept),
                 _ratio(tin + tout, kept)) for run_id, started, calls, tin, tout, cost, kept, _ in runs]
        labels = _run_labels([r[1] for r in rows])
        chart = charts.panels(labels, [
            ("tokens", [("in", [r[3] for r in rows]), ("out", [r[4] for r in rows])]),
            ("cost (USD)", [("per run", [r[5] for r in rows])]),
            ("USD per kept PR", [("per kept PR", [_nan(r[7]) for r in rows])])],
            key="llm_runs", label="cap-llm_runs", xlabel="run (UTC)")
        parts.append(figure("llm_runs", "Tokens and cost per run", "LLM calls, tokens and cost of "
                            "each run, and per PR the run kept.", chart, table(
                                "llm_runs", ["run_id", "started_at", "calls", "tokens_in",
                                             "tokens_out", "cost_usd", "kept", "cost_per_kept_pr",
                                             "tokens_per_kept_pr"], rows)))
    else:
        parts.append(figure("llm_runs", "Tokens and cost per run", "", None, "",
                            "No run called an LLM (tasks were written by the template rewriter)."))
    f = t["failures"]
    if f.rows:
        labels = [f"{r[0]}/{r[1]}" for r in f.rows]
        chart = charts.stacked(labels, [("open", [r[2] for r in f.rows]),
                                        ("resolved", [r[3] for r in f.rows])], key="failures",
                               label="cap-failures", horizontal=True, xlabel="PRs or repositories")
        rows = [(lab, *r[2:]) for lab, r in zip(labels, f.rows)]
        parts.append(figure("failures", "Failures by reason", "What failed, by stage and reason; "
                            "open ones are retried by the next run.", chart,
                            table("failures", ["stage_reason"] + f.cols[2:], rows)))
    else:
        parts.append(figure("failures", "Failures by reason", "", None, "", "No failure recorded."))
    return _section("llm", "LLM", "What the rewriting did and what it cost.", parts)


def _quality(d: ReportData) -> str:
    t = d.tables
    unjudged, no_conf = t["unscored"].rows[0] if t["unscored"].rows else (0, 0)
    parts = []
    for key, title, note, xlabel, step, lo, hi in (
            ("judge", "Judge scores", f"Tasks by judge score (1-5, buckets of 0.5); "
             f"{unjudged:,} without a score.", "judge score from", 0.5, None, None),
            ("confidence", "Rewriter confidence", f"Tasks by the rewriter's confidence (buckets "
             f"of 0.1); {no_conf:,} without one.", "confidence from", 0.1, 0.0, 0.9)):
        tab = t[key]
        if tab.rows:
            rows = _buckets(tab.rows, step, lo, hi)
            chart = charts.vbar([f"{r[0]:g}" for r in rows], [r[1] for r in rows],
                                key=key, label=f"cap-{key}", xlabel=xlabel, ylabel="tasks")
            parts.append(figure(key, title, note, chart, table(key, tab.cols, rows)))
        else:
            parts.append(figure(key, title, note, None, "", "No task has one yet."))
    parts.append(_bars("flags", "Flags", "Flags the rewriter or synth put on tasks (the 20 "
                       "most frequent).",
                       t["flags"], "No task is flagged.", "tasks"))
    parts.append(_bars("duplicates", "Near-duplicates", "Tasks whose query text or patch is a "
                       "near-copy of an older task's (dup_of set).", t["duplicates"],
                       "No near-duplicate found.", "tasks"))
    parts.append(_bars("categories", "Categories", "Tasks by category (the 20 most frequent).",
                       t["categories"],
                       "No task yet.", "tasks"))
    parts.append(_bars("difficulty", "Difficulty", "Tasks by difficulty.", t["difficulty"],
                       "No task yet.", "tasks"))
    return _section("quality", "Quality", "How good the tasks look before review.", parts)


def _review(d: ReportData) -> str:
    t = d.tables
    parts = []
    days = t["review_days"].rows
    if days:
        labels = sorted({r[0] for r in days})
        idx = {day: i for i, day in enumerate(labels)}
        series: dict[str, list[float]] = {}
        for day, reviewer, n, *_ in days:
            series.setdefault(reviewer, [0] * len(labels))[idx[day]] = n
        chart = charts.stacked([day.strftime("%m-%d") for day in labels], _top(series),
                               key="review_days", label="cap-review_days", ylabel="actions")
        parts.append(figure("review_days", "Throughput per reviewer and day", "Review actions "
                            "per day (UTC), by reviewer; the most recent 30 active days.", chart,
                            table("review_days", t["review_days"].cols, days)))
    else:
        parts.append(figure("review_days", "Throughput per reviewer and day", "", None, "",
                            "No review action yet."))
    parts.append(_bars("reviewers", "Reviewers", "Actions, tasks and verdicts per reviewer.",
                       t["reviewers"], "No reviewer yet.", "actions"))
    k = t["kappa"]
    fleiss = "n/a" if d.fleiss is None else f"{d.fleiss:.3f}"
    note = (f"Cohen's kappa per reviewer pair over the tasks both judged (each one's latest "
            f"verdict), as `synth review agreement`. Fleiss' kappa over tasks with two or more "
            f"reviewers: {fleiss}.")
    if k.rows:
        named = Table(["pair"] + k.cols, [(f"{r[0]} / {r[1]}", *r) for r in k.rows])
        chart = charts.hbar([r[0] for r in named.rows], [_nan(r[5]) for r in named.rows],
                            key="kappa", label="cap-kappa", xlabel="Cohen's kappa")
        parts.append(figure("kappa", "Agreement", note + " Pairs sharing most tasks first.", chart,
                            table("kappa", named.cols, named.rows, k.more)
                            + f'<p id="fleiss" data-value="{fleiss}">Fleiss\' kappa: {fleiss}</p>'))
    else:
        parts.append(figure("kappa", "Agreement", note, None, "",
                            "No two reviewers have judged the same task yet."))
    o = t["oldest"]
    parts.append(figure("oldest", "Oldest pending", "Tasks waiting longest in review_queue (pending, "
                        "not flagged trivial or not_code).", None,
                        table("oldest", o.cols, o.rows, o.more)) if o.rows else
                 figure("oldest", "Oldest pending", "", None, "", "Nothing waits for review."))
    return _section("review", "Review", "Who reviewed what, how much they agree, what waits.",
                    parts)


def _runs(d: ReportData) -> str:
    t = d.tables
    runs = list(reversed(t["runs"].rows))  # oldest first
    parts = []
    if runs:
        rows = [(r[0], r[1], r[2], r[3], r[4], r[5], _ratio(r[5], r[4]), *r[6:]) for r in runs]
        labels = _run_labels([r[1] for r in rows])
        chart = charts.panels(labels, [
            ("seconds", [("duration", [_nan(r[4]) for r in rows])]),
            ("PRs per second", [("PRs/s", [_nan(r[6]) for r in rows])]),
            ("GitHub requests", [("requests", [r[9] for r in rows])])],
            key="runs", label="cap-runs", xlabel="run (UTC)")
        cols = ["run_id", "started_at", "status", "source", "seconds", "prs", "prs_per_second",
                "kept", "tasks", "github_requests", "errors"]
        parts.append(figure("runs", "Runs over time", "Duration, PRs read per second and GitHub "
                            "requests of the last 20 runs, oldest first.", chart,
                            table("runs", cols, rows)))
    parts.append(_bars("run_status", "Run status", "ok, partial (some PRs or repositories "
                       "failed), failed, interrupted, running.", t["run_status"], "No run yet.",
                       "runs"))
    return _section("runs", "Runs", "How the runs went.", parts)


# ---------------------------------------------------------------- the page

CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,"DejaVu Sans",sans-serif;
margin:0;color:#1d2329;background:#f6f7f9}
header,section{max-width:1200px;margin:0 auto;padding:12px 24px}
header{background:#fff;border-bottom:1px solid #dde1e6;max-width:none}
h1{font-size:22px;margin:4px 0}h2{font-size:18px;margin:24px 0 4px;border-bottom:1px solid #dde1e6}
.meta{color:#56606b;font-size:12px}.meta code{font-size:12px}
nav a{margin-right:14px}.lead{color:#56606b;margin:2px 0 10px}
.tiles{display:flex;flex-wrap:wrap;gap:8px;margin:10px 0 0}
.tiles div{background:#f0f3f6;border-radius:6px;padding:6px 12px;min-width:90px}
.tiles dt{font-size:11px;color:#56606b}.tiles dd{margin:0;font-size:20px;font-weight:600}
.fig{background:#fff;border:1px solid #dde1e6;border-radius:6px;margin:0 0 14px;padding:10px 14px}
figcaption span{color:#56606b}
.pair{display:flex;flex-wrap:wrap;gap:16px;align-items:flex-start;margin-top:6px}
.chart{flex:3 1 480px;min-width:0}.chart svg{max-width:100%;height:auto}
.tab{flex:2 1 320px;overflow-x:auto;max-height:480px;overflow-y:auto}
table{border-collapse:collapse;font-size:12px;width:100%}
th,td{padding:3px 6px;border-bottom:1px solid #eceff2;text-align:left;white-space:nowrap}
th{position:sticky;top:0;background:#fff}td.num{text-align:right;font-variant-numeric:tabular-nums}
.empty,.more{color:#56606b;font-style:italic}
"""

TILES = [("repos", "repositories"), ("pull_requests", "PRs seen"), ("kept", "kept"),
         ("dropped", "dropped"), ("tasks", "tasks"), ("status:pending", "pending"),
         ("status:approved", "approved"), ("status:rejected", "rejected"),
         ("open_failures", "open failures"), ("runs", "runs"), ("cost_usd", "LLM cost (USD)")]


def render(d: ReportData, *, queue: str, since: date | None, repos: list[str] | None,
           now: datetime) -> str:
    status = dict(d.tables["status"].rows)
    tiles = []
    for key, label in TILES:
        v = status.get(key[7:], 0) if key.startswith("status:") else d.totals[key]
        shown = f"{v:,.2f}" if key == "cost_usd" else _fmt(v)
        tiles.append(f'<div><dt>{label}</dt><dd id="n-{key.replace(":", "-")}" '
                     f'data-value="{v!r}">{shown}</dd></div>')
    tiles += [f'<div><dt>{html.escape(s)}</dt><dd id="n-status-{html.escape(s)}" '
              f'data-value="{n}">{n:,}</dd></div>' for s, n in status.items()
              if s not in ("pending", "approved", "rejected")]
    scope = ", ".join(filter(None, [
        f"since {since.isoformat()}" if since else "",
        "repositories " + ", ".join(repos) if repos else ""])) or "everything in the queue"
    sections = [_funnel(d), _dropped(d), _llm(d), _quality(d), _review(d), _runs(d)]
    nav = " ".join(f'<a href="#{s}">{s.capitalize() if s != "llm" else "LLM"}</a>'
                   for s in ("funnel", "dropped", "llm", "quality", "review", "runs"))
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>synth report</title><style>{CSS}</style></head>
<body><header><h1>synth report</h1>
<p class="meta">queue <code id="queue-file">{html.escape(queue)}</code> · made
<time id="made-at" datetime="{now.isoformat(timespec='seconds')}Z">{now:%Y-%m-%d %H:%M} UTC</time>
· synth <span id="synth-version">{__version__}</span> · scope: <span id="scope">{html.escape(scope)}</span></p>
<dl class="tiles">{''.join(tiles)}</dl><nav>{nav}</nav></header>
<main>{''.join(sections)}</main></body></html>
"""
