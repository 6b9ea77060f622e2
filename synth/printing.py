"""What the CLI prints: tables, the run summary, a task, a PR's explanation. Pure: text
from values."""

from __future__ import annotations

import csv
import io
import json
from datetime import date, datetime


def format_rows(cols: list[str], rows: list[tuple], fmt: str = "table") -> str:
    if fmt == "json":
        return json.dumps([dict(zip(cols, r)) for r in rows], default=_jsonable, indent=2)
    if fmt == "csv":
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(cols)
        for r in rows:
            w.writerow([_cell(v) for v in r])
        return buf.getvalue().rstrip("\n")
    cells = [[_cell(v, 60) for v in r] for r in rows]
    widths = [max([len(c)] + [len(r[i]) for r in cells]) for i, c in enumerate(cols)]
    line = lambda vals: "  ".join(v.ljust(w) for v, w in zip(vals, widths)).rstrip()  # noqa: E731
    out = [line(cols), line(["-" * w for w in widths])] + [line(r) for r in cells]
    out.append(f"({len(rows)} row{'s' if len(rows) != 1 else ''})")
    return "\n".join(out)


def _jsonable(v):
    if isinstance(v, (datetime, date)):
        return v.isoformat()
    return str(v)


def _cell(v, width: int | None = None) -> str:
    if v is None:
        s = ""
    elif isinstance(v, (list, dict)):
        s = json.dumps(v, default=_jsonable)
    elif isinstance(v, (datetime, date)):
        s = v.isoformat(sep=" ") if isinstance(v, datetime) else v.isoformat()
    else:
        s = str(v)
    s = s.replace("\n", " ")
    if width and len(s) > width:
        s = s[: width - 1] + "…"
    return s


def print_summary(summary) -> None:
    c = summary.counts
    print(f"run {summary.run_id}: {summary.status}")
    listed = c.get("source/prs_listed")
    again = c.get("source/prs_redecided", 0)
    print(f"  PRs seen:      {c.get('source/prs', 0) - again} new"
          + (f", {again} decided again (the rules changed)" if again else "")
          + (f" (of {listed} in history, {c.get('source/prs_known', 0)} already decided)"
             if listed is not None else ""))
    print(f"  kept:          {c.get('filter/kept', 0)}")
    print(f"  dropped:       {c.get('filter/dropped', 0)}")
    drops = sorted(((k.split('/', 2)[2], v) for k, v in c.items()
                    if k.startswith("filter/dropped/")), key=lambda kv: (-kv[1], kv[0]))
    for code, n in drops:
        print(f"    {code:<22} {n}")
    print(f"  tasks written: {c.get('rewrite/tasks', 0)}")
    if c.get("llm/calls"):
        cost = c.get("llm/cost_microusd", 0) / 1_000_000
        print(f"  LLM calls:     {c['llm/calls']} ({c.get('llm/tokens/in', 0)} tokens in, "
              f"{c.get('llm/tokens/out', 0)} out" + (f", about ${cost:.4f}" if cost else "") + ")")
    if c.get("github/requests"):
        print(f"  GitHub:        {c['github/requests']} requests"
              + (f", {c['github/not_modified']} not modified" if c.get("github/not_modified") else ""))
    if summary.failures:
        print(f"  failures:      {len(summary.failures)} (recorded in the failures table; "
              "the full text in failures.detail)")
        for f in summary.failures[:10]:  # one line each: reason, PR, first line of the message
            where = f" {f.repo}" + (f"#{f.number}" if f.number else "") if f.repo else ""
            line = next((ln.strip() for ln in str(f.message).splitlines() if ln.strip()), "")
            print(f"    [{f.stage}/{f.reason}]{where}: "
                  + (line if len(line) <= 160 else line[:159] + "…"))
        if len(summary.failures) > 10:
            print(f"    ... and {len(summary.failures) - 10} more")
    if c.get("queue/spooled_pending"):
        print(f"  spooled:       {c['queue/spooled_pending']} batches wait in the spool "
              "(the queue was busy); the next run ingests them")


def format_task(t: dict) -> str:
    """`synth review show`: the task, its PR, files, decision and review history."""
    out: list[str] = []
    out.append(f"{t['task_id']}  [{t['status']}]  {t['title']}")
    out.append(f"  PR {t['repo']}#{t['number']}: {t['pr_url']}")
    if t.get("kind") == "chain":
        out.append(f"  chain {t.get('chain_id')}: PRs "
                   + ", ".join(f"#{n}" for n in t.get("members") or []) + " in merge order")
    out.append(f"  base {t['base_sha']}  merge {t['merge_sha']}")
    out.append(f"  {t['category']}, {t['difficulty']}, confidence {t['confidence']}, "
          f"judge {t['judge_score'] if t['judge_score'] is not None else '-'}, "
          f"rewriter {t['rewriter']}{' (' + t['model'] + ')' if t['model'] else ''}, "
          f"prompt {t['prompt_version']}, revision {t['revision']}")
    if t["flags"]:
        out.append(f"  flags: {', '.join(t['flags'])}")
    if t.get("dup_of"):
        out.append(f"  near-duplicate of {t['dup_of']} ({t['dup_kind']}, similarity {t['dup_similarity']:.2f})")
    if t.get("pr_dropped"):
        out.append("  the current filter rules drop this PR (they changed since the task was "
                   "written): not in review_queue; `synth explain` says why")
    if t.get("applicable") is not None:
        out.append(f"  reference change: {'applies' if t['applicable'] else 'NOT applicable'}"
                   + (f" ({', '.join(t['apply_issues'])})" if t.get("apply_issues") else "")
                   + f", {len(t.get('patch') or '')} + {len(t.get('test_patch') or '')} "
                   "characters of patch and test patch, tests added: "
                   + (", ".join((t.get("tests_added") or [])[:5]) or "none")
                   + (" ..." if len(t.get("tests_added") or []) > 5 else ""))
    for tid, kind, members, status, title in t.get("related") or []:
        out.append(f"  related {kind} task {tid} [{status}] over "
                   + ", ".join(f"#{n}" for n in members) + f": {title}")
    if t["decision"]:
        out.append(f"  filter: {'kept' if t['decision']['kept'] else 'dropped'} "
              f"({', '.join(t['decision']['reasons'])})")
    out.append("\nBackground:\n" + _indent(t["background"]))
    out.append("\nRequest:\n" + _indent(t["query"]))
    subtasks = json.loads(t["subtasks"]) if isinstance(t["subtasks"], str) else t["subtasks"]
    for i, st in enumerate(subtasks, 1):
        out.append(f"\nSubtask {i}: {st['title']}\n  Goal: {st['goal']}")
        for key, label in (("constraints", "Constraints"), ("deliverables", "Deliverables"),
                           ("acceptance_criteria", "Acceptance criteria")):
            out.append(f"  {label}:")
            for item in st[key]:
                out.append(f"    - {item}")
    out.append(f"\nFiles ({len(t['files'])}):")
    for path, status, a, d in t["files"]:
        out.append(f"  {status:<9} +{a:<5} -{d:<5} {path}")
    if t["events"]:
        out.append("\nReview history:")
        for at, who, action, before, after, note in t["events"]:
            out.append(f"  {at:%Y-%m-%d %H:%M} {who}: {action} ({before} -> {after})"
                  + (f" \"{note}\"" if note else ""))
    return "\n".join(out)


def _indent(text: str) -> str:
    return "\n".join("  " + line for line in (text or "").splitlines())


def format_explain(pr, metrics: dict, verdicts: list, decision) -> str:
    """`synth explain`: a PR's figures, file classes and every rule's verdict."""
    out: list[str] = []
    out.append(f"{pr.repo}#{pr.number}: {pr.title}")
    out.append(f"  {pr.url}")
    out.append(f"  author {pr.author}{' (bot)' if pr.author_is_bot else ''}, merged {pr.merged_at}, "
          f"labels {list(pr.labels)}")
    out.append(f"  {metrics['files']} files, +{metrics['additions']} -{metrics['deletions']}, "
          f"{metrics['code_lines']} code lines in {metrics['code_files']} code files, "
          f"{metrics['patch_bytes']} patch bytes")
    out.append("  files:")
    for f in pr.files:
        flags = "".join([" binary" if f.binary else "", " non-utf8" if f.undecodable else "",
                         " truncated" if f.patch_truncated else ""])
        out.append(f"    {metrics['file_classes'].get(f.path, '?'):<10} {f.status:<9} "
              f"+{f.additions:<5} -{f.deletions:<5} {f.path}{flags}")
    out.append("  rules:")
    for v in verdicts:
        mark = "FIRED" if v.fired else "ok   "
        out.append(f"    {mark} {v.rule:<32} {v.detail}")
    verdict = "KEPT" if decision.kept else "DROPPED"
    out.append(f"  decision: {verdict} ({', '.join(decision.reasons)}), filter version "
          f"{decision.filter_version}")
    return "\n".join(out)


def format_chains(number: int, chains: list) -> str:
    """`synth explain`: the chains a PR belongs to, each link with its reason."""
    if not chains:
        return f"  chains: #{number} is in no chain of related PRs"
    out = []
    for c in chains:
        f = c.figures or {}
        out.append(f"  chain {c.chain_id}: " + " -> ".join(f"#{n}" for n in c.members)
                   + f" ({'KEPT' if c.kept else 'DROPPED'}: {', '.join(c.reasons)}; "
                   f"{f.get('span_days', '?')} days, {f.get('logic_lines', '?')} lines of logic, "
                   f"{f.get('files', '?')} files)")
        for lk in c.links:
            out.append(f"    {lk.kind:<9} #{lk.earlier} -> #{lk.later}: {lk.detail}")
    return "\n".join(out)
