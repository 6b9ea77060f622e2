"""Reads: every query a stage or a command runs on the queue, in one place.

Curators' own SQL goes through ``Queue.query`` (``synth sql``, read-only, see curator_sql);
everything synth itself asks the queue is a function here, named for what it answers. The
tables and views these read are the curator contract in schema.sql.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from ..errors import QueueBusy, SQLError
from ..models import Chain, ChainLink, Cursor, Decision, FileChange, LinkedIssue, PullRequest

if TYPE_CHECKING:
    from .store import Queue

def _pr_from_row(row: dict, files: list[dict]) -> PullRequest:
    issues = row["linked_issues"]
    issues = json.loads(issues) if isinstance(issues, str) else (issues or [])
    return PullRequest(
        repo=row["repo"], number=row["number"], title=row["title"], body=row["body"],
        author=row["author"] or "", merged_at=row["merged_at"], base_sha=row["base_sha"] or "",
        merge_sha=row["merge_sha"] or "", url=row["url"] or "", labels=tuple(row["labels"] or ()),
        linked_issues=tuple(LinkedIssue(i["number"], i.get("title", ""), i.get("body", ""))
                            for i in issues),
        files=tuple(FileChange(
            path=f["path"], status=f["status"], additions=f["additions"],
            deletions=f["deletions"], patch=f["patch"], binary=f["is_binary"],
            old_path=f["old_path"], patch_bytes=f["patch_bytes"] or 0,
            patch_truncated=f["patch_truncated"], undecodable=f["undecodable"],
            old_mode=f.get("old_mode"), new_mode=f.get("new_mode")) for f in files),
        author_is_bot=row["author_is_bot"], head_sha=row["head_sha"], source=row["source"],
        additions_total=row["additions"], deletions_total=row["deletions"],
        changed_files_total=row["changed_files"], head_ref=row.get("head_ref"),
        base_ref=row.get("base_ref"))


def load_pull_requests(queue: "Queue", keys: list[tuple[str, int]]) -> list[PullRequest]:
    """Full PRs (with files) for the given keys, in the order given."""
    if not keys:
        return []
    with queue.connect(read_only=True) as con:
        wanted = ("(SELECT unnest(?::VARCHAR[]) AS repo, unnest(?::INTEGER[]) AS number)")
        params = [[k[0] for k in keys], [k[1] for k in keys]]
        cur = con.execute(f"SELECT p.* FROM pull_requests p JOIN {wanted} w USING (repo, number)",
                          params)
        cols = [d[0] for d in cur.description]
        prs = {(r[0], r[1]): dict(zip(cols, r)) for r in cur.fetchall()}
        cur = con.execute(f"SELECT f.* FROM pr_files f JOIN {wanted} w USING (repo, number) "
                          "ORDER BY f.repo, f.number, f.path", params)
        fcols = [d[0] for d in cur.description]
        files: dict[tuple[str, int], list[dict]] = {}
        for r in cur.fetchall():
            d = dict(zip(fcols, r))
            files.setdefault((d["repo"], d["number"]), []).append(d)
    return [_pr_from_row(prs[k], files.get(k, [])) for k in keys if k in prs]


def crawl_state(queue: "Queue", repo: str, filter_version: str, source: str
                ) -> tuple[set[int] | None, Cursor | None, set[int], set[int]]:
    """What a crawl of one repository starts from, in one connection: the PR numbers already
    decided with this filter version (None when the queue is busy: the caller then re-reads
    everything, as writes are idempotent), the source's saved cursor, the PRs the source
    could not read before (open failures of the source stage: resolved once decided), and
    the PRs decided before with other rules (deciding them again is not finding them)."""
    if not queue.path.exists():
        return set(), None, set(), set()
    try:
        with queue.connect(read_only=True, wait=queue.busy_timeout) as con:
            known: set[int] = set()
            before: set[int] = set()
            for number, same in con.execute(
                    "SELECT number, bool_or(filter_version = ?) FROM decisions WHERE repo = ? "
                    "GROUP BY number", [filter_version, repo]).fetchall():
                (known if same else before).add(number)
            row = con.execute("SELECT watermark, cursor, state FROM cursors WHERE repo = ? "
                              "AND source = ?", [repo, source]).fetchone()
            failed = {r[0] for r in con.execute(
                "SELECT number FROM failures WHERE stage = 'source' AND repo = ? AND number > 0 "
                "AND NOT resolved", [repo]).fetchall()}
    except QueueBusy:
        return None, None, set(), set()
    if not row:
        return known, None, failed, before
    watermark, cur, state = row
    state = json.loads(state) if isinstance(state, str) else (state or {})
    return known, Cursor(repo, source, watermark, cur, state), failed, before


def pending_rewrites(queue: "Queue", rewriter: str, model: str | None, prompt_version: str,
                     repos: list[str] | None = None, limit: int = 0) -> list[tuple[str, int]]:
    """Kept PRs (by their latest decision) that have no task for this rewriter yet."""
    if not queue.path.exists():
        return []
    sql = ("SELECT c.repo, c.number FROM candidates c WHERE c.kept AND NOT EXISTS ("
           "SELECT 1 FROM tasks t WHERE t.repo = c.repo AND t.number = c.number "
           "AND t.prompt_version = ? AND t.rewriter = ? AND coalesce(t.model, '') = ?)")
    params: list = [prompt_version, rewriter, model or ""]
    if repos:
        sql += " AND c.repo IN (SELECT unnest(?::VARCHAR[]))"
        params.append(repos)
    sql += " ORDER BY c.merged_at DESC NULLS LAST, c.repo, c.number"
    if limit:
        sql += f" LIMIT {int(limit)}"
    _, rows = queue.query(sql, params, wait=queue.busy_timeout)
    return [(r[0], r[1]) for r in rows]


def triaged(queue: "Queue", keys: list[tuple[str, int]], version: str) -> set[tuple[str, int]]:
    """Which of these PRs the triage already judged (decisions of this triage version)."""
    if not keys:
        return set()
    _, rows = queue.query(
        "SELECT d.repo, d.number FROM decisions d JOIN (SELECT unnest(?::VARCHAR[]) AS repo, "
        "unnest(?::INTEGER[]) AS number) w USING (repo, number) WHERE d.filter_version = ?",
        [[k[0] for k in keys], [k[1] for k in keys], version], wait=queue.busy_timeout)
    return {(r, n) for r, n in rows}


def triage_verdicts(queue: "Queue", keys: list[tuple[str, int]]) -> dict[tuple[str, int], tuple]:
    """The latest triage verdict of each PR that has one: (kept, model)."""
    if not keys or not queue.path.exists():
        return {}
    _, rows = queue.query(
        "SELECT repo, number, arg_max(kept, decided_at), arg_max(metrics->>'triage_model', "
        "decided_at) FROM decisions JOIN (SELECT unnest(?::VARCHAR[]) AS repo, "
        "unnest(?::INTEGER[]) AS number) w USING (repo, number) "
        "WHERE list_has_any(reasons, ['triage_substantive', 'triage_trivial']) GROUP BY ALL",
        [[k[0] for k in keys], [k[1] for k in keys]], wait=queue.busy_timeout)
    return {(r, n): (kept, model) for r, n, kept, model in rows}


# ---------------------------------------------------------------- chains

def chain_candidates(queue: "Queue", repo: str) -> list[Decision]:
    """Every PR of a repository with its latest decision, oldest merge first: what chain
    detection chooses members from."""
    if not queue.path.exists():
        return []
    _, rows = queue.query("SELECT number, kept, reasons, filter_version, metrics FROM candidates "
                          "WHERE repo = ? AND kept IS NOT NULL ORDER BY merged_at, number",
                          [repo], wait=queue.busy_timeout)
    return [Decision(repo, n, kept, tuple(reasons), fv,
                     json.loads(m) if isinstance(m, str) else (m or {}))
            for n, kept, reasons, fv, m in rows]


def chain_state(queue: "Queue", repo: str) -> str | None:
    """The rule versions the repository's chains were last detected with (its "chains"
    cursor), or None."""
    if not queue.path.exists():
        return None
    _, rows = queue.query("SELECT watermark FROM cursors WHERE repo = ? AND source = 'chains'",
                          [repo], wait=queue.busy_timeout)
    return rows[0][0] if rows else None


def pending_chains(queue: "Queue", rewriter: str, model: str | None, prompt_version: str,
                   limit: int = 0) -> list[tuple[str, str, list[int]]]:
    """Kept chains that have no task for this rewriter yet: (chain_id, repo, members)."""
    if not queue.path.exists():
        return []
    sql = ("SELECT c.chain_id, c.repo, c.members FROM chains c WHERE c.kept AND NOT EXISTS ("
           "SELECT 1 FROM tasks t WHERE t.chain_id = c.chain_id AND t.prompt_version = ? "
           "AND t.rewriter = ? AND coalesce(t.model, '') = ?) "
           "ORDER BY c.last_merged_at DESC NULLS LAST, c.chain_id")
    if limit:
        sql += f" LIMIT {int(limit)}"
    _, rows = queue.query(sql, [prompt_version, rewriter, model or ""], wait=queue.busy_timeout)
    return [(cid, repo, list(members)) for cid, repo, members in rows]


def foreign_changes(queue: "Queue", repo: str, members: list[int]) -> list[tuple]:
    """What PRs outside ``members`` changed in the members' files while the chain was under
    way (merged after its first member, up to its last): (merged_at, path, patch) rows, to
    tell whether the chain's stages compose at its first base (patches.reference)."""
    _, rows = queue.query(
        "WITH m AS (SELECT min(merged_at) AS lo, max(merged_at) AS hi FROM pull_requests "
        "WHERE repo = ? AND list_contains(?::INTEGER[], number)), "
        "paths AS (SELECT DISTINCT path FROM pr_files WHERE repo = ? "
        "AND list_contains(?::INTEGER[], number)) "
        "SELECT p.merged_at, f.path, f.patch FROM pr_files f JOIN pull_requests p "
        "USING (repo, number), m WHERE f.repo = ? AND p.merged_at > m.lo AND p.merged_at <= m.hi "
        "AND NOT list_contains(?::INTEGER[], f.number) AND f.path IN (SELECT path FROM paths) "
        "ORDER BY p.merged_at, f.path",
        [repo, members, repo, members, repo, members], wait=queue.busy_timeout)
    return [tuple(r) for r in rows]


def foreign_changes_many(queue: "Queue", repo: str, chains: list[list[int]]) -> list[list[tuple]]:
    """``foreign_changes`` of several chains of one repository, in one query: the rows of
    every PR merged within any chain's span that changed a file of any chain, split per
    chain here (each gets exactly what ``foreign_changes`` gives it)."""
    if not chains:
        return []
    every = sorted({n for m in chains for n in m})
    _, spans = queue.query("SELECT number, merged_at FROM pull_requests WHERE repo = ? AND "
                           "list_contains(?::INTEGER[], number)", [repo, every],
                           wait=queue.busy_timeout)
    merged = dict(spans)
    _, files = queue.query("SELECT DISTINCT number, path FROM pr_files WHERE repo = ? AND "
                           "list_contains(?::INTEGER[], number)", [repo, every],
                           wait=queue.busy_timeout)
    paths_of: dict[int, set[str]] = {}
    for n, path in files:
        paths_of.setdefault(n, set()).add(path)
    want = []  # per chain: (lo, hi, paths, members)
    for m in chains:
        times = [merged[n] for n in m if merged.get(n) is not None]
        want.append((min(times), max(times), set().union(*(paths_of.get(n, set()) for n in m)),
                     set(m)) if times else None)
    live = [w for w in want if w is not None and w[2]]
    if not live:
        return [[] for _ in chains]
    _, rows = queue.query(
        "SELECT p.merged_at, f.path, f.patch, f.number FROM pr_files f JOIN pull_requests p "
        "USING (repo, number) WHERE f.repo = ? AND p.merged_at > ? AND p.merged_at <= ? "
        "AND list_contains(?::VARCHAR[], f.path) ORDER BY p.merged_at, f.path",
        [repo, min(w[0] for w in live), max(w[1] for w in live),
         sorted(set().union(*(w[2] for w in live)))], wait=queue.busy_timeout)
    out = []
    for w in want:
        if w is None or not w[2]:
            out.append([])
            continue
        lo, hi, paths, members = w
        out.append([(at, path, patch) for at, path, patch, n in rows
                    if lo < at <= hi and path in paths and n not in members])
    return out


def chains_of(queue: "Queue", repo: str, number: int) -> list[Chain]:
    """The stored chains a PR belongs to (for `synth explain`)."""
    if not queue.path.exists():
        return []
    try:
        cols, rows = queue.query("SELECT * FROM chains WHERE repo = ? AND "
                                 "list_contains(members, ?) ORDER BY first_merged_at",
                                 [repo, number], wait=queue.busy_timeout)
    except SQLError:  # a file from before chains, not yet upgraded by a run
        return []
    out = []
    for r in rows:
        d = dict(zip(cols, r))
        links = json.loads(d["links"]) if isinstance(d["links"], str) else d["links"]
        figures = json.loads(d["figures"]) if isinstance(d["figures"], str) else d["figures"]
        out.append(Chain(d["repo"], tuple(d["members"]),
                         tuple(ChainLink(x["earlier"], x["later"], x["kind"], x["detail"])
                               for x in links), d["kept"], tuple(d["reasons"]),
                         d["rules_version"], figures or {}, d["first_merged_at"],
                         d["last_merged_at"]))
    return out


def repo_meta(queue: "Queue") -> dict[str, tuple[str | None, str | None]]:
    """repo -> (licence, primary language), for the rewriters."""
    if not queue.path.exists():
        return {}
    _, rows = queue.query("SELECT repo, license, language FROM repos", wait=queue.busy_timeout)
    return {r: (lic, lang) for r, lic, lang in rows}


def load_http_cache(queue: "Queue", prefix: str) -> dict[str, tuple[str, object]]:
    if not queue.path.exists():
        return {}
    _, rows = queue.query("SELECT url, etag, body FROM http_cache WHERE starts_with(url, ?)",
                          [prefix], wait=queue.busy_timeout)
    return {u: (e, json.loads(b) if isinstance(b, str) else b) for u, e, b in rows}


def github_repos(queue: "Queue", min_stars: int) -> list[str]:
    """Discovered repositories to crawl."""
    if not queue.path.exists():
        return []
    _, rows = queue.query("SELECT repo FROM repos WHERE source = 'github' AND NOT archived AND "
                          "NOT fork AND coalesce(stars, 0) >= ? ORDER BY stars DESC, repo",
                          [min_stars], wait=queue.busy_timeout)
    return [r[0] for r in rows]


# ---------------------------------------------------------------- commands

def funnel(queue: "Queue") -> dict[str, object]:
    """What `synth stats` prints: repositories, PRs, kept, dropped by reason, tasks by
    status, open failures, runs."""
    _, rows = queue.query("""
        SELECT (SELECT count(*) FROM repos),
               (SELECT count(*) FROM pull_requests),
               (SELECT count(*) FILTER (WHERE kept) FROM candidates),
               (SELECT count(*) FILTER (WHERE NOT kept) FROM candidates),
               (SELECT count(*) FROM tasks),
               (SELECT count(*) FROM failures WHERE NOT resolved),
               (SELECT count(*) FROM runs)""", wait=queue.busy_timeout)
    repos, prs, kept, dropped, tasks, failures, runs = rows[0]
    _, by_status = queue.query("SELECT status, count(*) FROM tasks GROUP BY status ORDER BY status",
                               wait=queue.busy_timeout)
    _, reasons = queue.query("SELECT r, count(*) FROM (SELECT unnest(reasons) AS r FROM candidates "
                             "WHERE NOT kept) GROUP BY r ORDER BY count(*) DESC, r",
                             wait=queue.busy_timeout)
    try:
        _, chain_rows = queue.query("SELECT count(*), count(*) FILTER (WHERE kept), "
                                    "(SELECT count(*) FROM tasks WHERE kind = 'chain') "
                                    "FROM chains", wait=queue.busy_timeout)
    except SQLError:  # a file from before chains, not yet upgraded by a run
        chain_rows = [(0, 0, 0)]
    return {"repos": repos, "pull_requests": prs, "kept": kept, "dropped": dropped,
            "tasks": tasks, "tasks_by_status": dict(by_status), "reasons": reasons,
            "open_failures": failures, "runs": runs, "chains": chain_rows[0][0],
            "chains_kept": chain_rows[0][1], "chain_tasks": chain_rows[0][2]}


def recent_runs(queue: "Queue", limit: int = 20) -> tuple[list[str], list[tuple]]:
    return queue.query(
        "SELECT run_id, status, started_at, ended_at, source, config_hash, "
        "coalesce(counts->>'source/prs', '0') AS prs, coalesce(counts->>'filter/kept', '0') AS kept, "
        "coalesce(counts->>'rewrite/tasks', '0') AS tasks, json_array_length(errors) AS errors "
        f"FROM runs ORDER BY started_at DESC LIMIT {int(limit)}", wait=queue.busy_timeout)


def repo_list(queue: "Queue") -> tuple[list[str], list[tuple]]:
    return queue.query("SELECT r.repo, r.stars, r.language, r.license, r.source, "
                       "count(p.number) AS prs FROM repos r LEFT JOIN pull_requests p USING (repo) "
                       "GROUP BY ALL ORDER BY r.stars DESC NULLS LAST, r.repo",
                       wait=queue.busy_timeout)


def decided_prs(queue: "Queue") -> list[tuple[str, int, bool | None]]:
    """(repo, number, kept by the latest decision) of every stored PR, for a rescore."""
    _, rows = queue.query("SELECT repo, number, kept FROM candidates ORDER BY repo, number",
                          wait=queue.busy_timeout)
    return rows
