"""Benchmark: mining every PR of a history, against git's own `git log -p`.

    python tests/benchmarks/bench_mining.py                       # a synthetic 2500-commit history
    python tests/benchmarks/bench_mining.py --git CLONE --repo owner/name

Both sides are measured in the same run over the same commits (the PR commits synth finds
on every branch and tag): the reference is `git log -p` writing those commits' patches; synth is
one whole `synth run --no-rewrite` in-process (git, patch parsing, filters, queue writes) on
an empty, already-created queue file. Prints the best of --repeat runs and their ratio, and
the median ratio of the runs paired in order (the machine's noise shows in the gap).
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from synth import app, config  # noqa: E402
from synth.queue import Queue  # noqa: E402
from synth.sources.git import GitSource  # noqa: E402

GOAL = 2.0  # synth's wall time at most this many times git's


def pr_shas(path: Path) -> list[str]:
    return [c.sha for c in GitSource(path, "bench/x").list_pr_commits()]


def time_git(path: Path, shas: list[str]) -> float:
    git_dir = GitSource(path, "bench/x").git_dir
    t = time.perf_counter()
    subprocess.run(["git", "--git-dir", str(git_dir), "log", "--no-walk=unsorted", "--stdin",
                    "--diff-merges=first-parent", "-M", "-p", "--format=%H"],
                   input="\n".join(shas).encode(), stdout=subprocess.DEVNULL, check=True)
    return time.perf_counter() - t


def time_synth(path: Path, repo: str | None, work: Path, i: int) -> tuple[float, dict]:
    db = work / f"q{i}.duckdb"
    Queue(db).ensure()  # schema creation is not mining
    settings = config.load(env={})
    settings.queue.db = str(db)
    req = app.RunRequest(git=[str(path)], repo_name=repo, rewrite=False)
    t = time.perf_counter()
    summary = app.run(settings, req)
    return time.perf_counter() - t, summary.counts


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--git", type=Path, help="a clone to mine (default: a synthetic history)")
    ap.add_argument("--repo", help="owner/name when the clone has no GitHub origin")
    ap.add_argument("--commits", type=int, default=2500)
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="synth-bench-"))
    try:
        if args.git:
            path = args.git
        else:
            from synthetic_history import build
            t = time.perf_counter()
            path = build(work / "history", args.commits)
            print(f"built a synthetic history of {args.commits} commits in {time.perf_counter() - t:.1f} s")
        first_parent = int(subprocess.run(["git", "--git-dir", str(GitSource(path, 'b/x').git_dir),
                                           "rev-list", "--first-parent", "--count", "HEAD"],
                                          capture_output=True, text=True).stdout)
        shas = pr_shas(path)
        gits, synths = [], []
        counts: dict = {}
        for i in range(args.repeat):
            gits.append(time_git(path, shas))
            took, counts = time_synth(path, args.repo, work, i)
            synths.append(took)
        g, s = min(gits), min(synths)
        print(f"history: {first_parent} first-parent commits, {len(shas)} PRs "
              f"({counts.get('filter/kept', 0)} kept, {counts.get('filter/dropped', 0)} dropped)")
        print(f"git log -p over the PR commits: {g:.3f} s (best of {args.repeat})")
        print(f"synth run --no-rewrite:         {s:.3f} s (best of {args.repeat}; filters and queue writes included)")
        median = statistics.median(b / a for a, b in zip(gits, synths))
        print(f"ratio synth / git log -p:       {s / g:.2f}x (goal <= {GOAL}x: "
              f"{'ok' if s / g <= GOAL else 'over goal'}; median of the paired runs {median:.2f}x)")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
