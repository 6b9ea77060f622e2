"""Benchmark: curators beside a crawl. A GitHub crawl (stand-in, 2 x 1,500 PRs) alone, then
with four curator processes doing reads and review actions; prints the read latency
percentiles during the crawl and the crawl's slowdown.

    python tests/benchmarks/bench_curators.py [--pause 1.0] [--prs 1500]

A curator here does one operation (`synth sql`, `review list`, `stats`, or a review action),
then waits --pause seconds: 1.0 is a busy human (four of them: four operations a second);
0 is as fast as a process can go (the worst case, shown for information).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from histories import mixed_history  # noqa: E402
from standins.github_fixtures import make_fixtures  # noqa: E402
from standins.github_server import GitHubStandIn  # noqa: E402
from synth.filtering import default_rules_path  # noqa: E402
from synth.sources.history import build_repository  # noqa: E402

GOAL_P95 = 2.0  # seconds
GOAL_SLOWDOWN = 0.10


def synth(*args, cwd, env=None, check=True):
    r = subprocess.run([sys.executable, "-m", "synth", *map(str, args)], cwd=cwd, env=env,
                       capture_output=True, text=True)
    if check and r.returncode != 0:
        raise SystemExit(f"synth {' '.join(map(str, args))} failed: {r.stderr[-2000:]}")
    return r


def prepared(work: Path, name: str, repo: Path) -> Path:
    """A queue with tasks to review."""
    db = work / f"{name}.duckdb"
    synth("run", "--git", repo, "--db", db, "--limit", "40", cwd=work)
    return db


def crawl(work: Path, db: Path, gh, names: str, curators: int, pause: float):
    env = {**os.environ, "GITHUB_API_URL": gh.url, "GITHUB_TOKEN": "tok-a"}
    stop = work / f"stop-{db.stem}"
    tasks = work / f"tasks-{db.stem}.json"
    import duckdb
    con = duckdb.connect(str(db), read_only=True)
    tasks.write_text(json.dumps([t for (t,) in con.execute("SELECT task_id FROM tasks").fetchall()]))
    con.close()
    logs = [work / f"{db.stem}-{i}.jsonl" for i in range(curators)]
    t = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "synth", "run", "--github", "--repos", names,
                             "--no-rewrite", "--db", str(db)], cwd=work, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    procs = [subprocess.Popen([sys.executable, str(ROOT / "tests" / "curator_load.py"), str(db),
                               "3", f"c{i}", str(tasks), str(stop), str(log), str(pause)],
                              cwd=work) for i, log in enumerate(logs)]
    _, err = proc.communicate()
    took = time.perf_counter() - t
    stop.write_text("")
    for p in procs:
        p.wait()
    if proc.returncode != 0:
        raise SystemExit(f"the crawl failed: {err[-2000:]}")
    entries = [json.loads(x) for log in logs for x in log.read_text().splitlines()]
    return took, entries


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pause", type=float, default=1.0)
    ap.add_argument("--prs", type=int, default=1500, help="PRs per repository (two repositories)")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="synth-bench-cur-"))
    try:
        loose = work / "loose.toml"
        loose.write_text("[substance]\nmin_logic_lines = 1\ntested_min_logic_lines = 1\n")
        (work / "synth.toml").write_text(f'[filters]\nfiles = ["{default_rules_path()}", "{loose}"]\n'
                                         "[run]\nbatch_size = 50\n[github]\npage_size = 50\n")
        history, _ = mixed_history(30, 30)
        repo = build_repository(history, work / "hist")
        fx = make_fixtures(seed=11, n_repos=2, prs_per_repo=args.prs, n_search_repos=0,
                           n_private_repos=0)
        names = ",".join(r.full_name for r in fx.repos)
        with GitHubStandIn(fx, tokens={"tok-a": 10**7}) as gh:
            alone, _ = crawl(work, prepared(work, "alone", repo), gh, names, 0, args.pause)
            beside, entries = crawl(work, prepared(work, "beside", repo), gh, names, 4, args.pause)
        reads = sorted(e["seconds"] for e in entries if e["kind"] == "read")
        actions = [e for e in entries if e["kind"] == "action"]
        refused = [e for e in entries if e["code"] != 0]
        p95 = reads[int(len(reads) * 0.95) - 1] if reads else float("nan")
        print(f"crawl of {2 * args.prs} PRs alone:           {alone:.1f} s")
        print(f"crawl with 4 curators (pause {args.pause:g} s): {beside:.1f} s "
              f"(slowdown {beside / alone - 1:+.1%}; goal <= {GOAL_SLOWDOWN:.0%})")
        print(f"curator reads: {len(reads)}, p50 {statistics.median(reads):.3f} s, p95 {p95:.3f} s, "
              f"max {max(reads):.3f} s (goal p95 < {GOAL_P95:g} s)")
        print(f"review actions: {len(actions)} ({sum('will apply' in e['out'] for e in actions)} "
              f"journaled while the run held the file); refused or failed: {len(refused)}")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
