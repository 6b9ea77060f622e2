"""Benchmark: GitHub requests per PR on the GitHub stand-in (5 repositories x 300 PRs).

    python tests/benchmarks/bench_github.py [--repos 5] [--prs 300]

Runs `synth run --github --no-rewrite` twice against a loopback stand-in that speaks GitHub's
REST and GraphQL APIs, and prints: GraphQL requests per PR for the metadata pass, all requests
per fully fetched PR (metadata plus patches of PRs that pass the size pre-filter), and the
requests of a second run with nothing new, per repository.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve()
sys.path.insert(0, str(HERE.parents[2]))
sys.path.insert(0, str(HERE.parents[1]))

from standins.github_fixtures import make_fixtures  # noqa: E402
from standins.github_server import GitHubStandIn  # noqa: E402

from synth import app, config  # noqa: E402


def run(gh, db: Path, names: list[str]):
    env = {"GITHUB_API_URL": gh.url, "GITHUB_TOKENS": "tok-a,tok-b"}
    settings = config.load(env=env)
    settings.queue.db = str(db)
    req = app.RunRequest(github=True, repos=",".join(names), rewrite=False)
    t = time.perf_counter()
    summary = app.run(settings, req)
    return summary, time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repos", type=int, default=5)
    ap.add_argument("--prs", type=int, default=300, help="PRs per repository (merged and not)")
    ap.add_argument("--page-size", type=int, default=None)
    args = ap.parse_args()
    fx = make_fixtures(seed=11, n_repos=args.repos, prs_per_repo=args.prs, n_search_repos=0,
                       n_private_repos=0)
    names = [r.full_name for r in fx.repos]
    merged = sum(len(r.merged_prs()) for r in fx.repos)
    with tempfile.TemporaryDirectory() as tmp, GitHubStandIn(
            fx, tokens={"tok-a": 100_000, "tok-b": 100_000}, graphql_limit=100_000) as gh:
        os.chdir(tmp)
        db = Path(tmp) / "bench.duckdb"
        summary, took = run(gh, db, names)
        first = dict(gh.counts)
        gh.reset_counts()
        summary2, took2 = run(gh, db, names)
        second = dict(gh.counts)
    fetched = summary.counts.get("filter/kept", 0)
    meta = first.get("graphql", 0)
    patches = first.get("rest:/repos/{o}/{r}/pulls/{n}/files", 0)
    print(f"stand-in: {args.repos} repositories, {merged} merged PRs")
    print(f"first run:  {first.get('total', 0)} requests in {took:.1f} s "
          f"({meta} GraphQL, {patches} REST files pages for PRs that passed the pre-filter)")
    print(f"metadata pass: {meta / merged:.4f} requests per PR (goal <= 0.05)"
          f"  {'ok' if meta / merged <= 0.05 else 'over goal'}")
    print(f"fully fetched PRs: {fetched} (kept); all requests per fully fetched PR: "
          f"{first.get('total', 0) / max(fetched, 1):.3f}; patch requests per fully fetched PR: "
          f"{patches / max(fetched, 1):.3f}")
    per_repo = second.get("total", 0) / args.repos
    print(f"second run, nothing new: {second.get('total', 0)} requests in {took2:.2f} s = "
          f"{per_repo:.2f} per repository (goal <= 1)  {'ok' if per_repo <= 1 else 'over goal'}")


if __name__ == "__main__":
    main()
