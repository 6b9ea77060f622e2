"""Benchmark: do exported reference changes apply? `git apply --check` at each base commit.

    python tests/benchmarks/bench_apply.py --git CLONE --repo owner/name [--git ... --repo ...]
    python tests/benchmarks/bench_apply.py --mirrors DIR      # every DIR/owner+name/repo

For each clone: `synth run --git` (template rewriter) into a fresh queue, `synth review approve
--where true`, `synth export --style swebench`; then for every record, in a temporary index
read from its base commit (`git read-tree`, much faster than a worktree), `git apply --check
--cached` of `patch` and of `test_patch`. Records flagged unappliable (`applicable` false) are
counted apart; the rate is over the others. For chains, each stage is also checked at its own
base, and flagged chains are checked anyway (how many of the flags were needed).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from synth import app, config, export as export_mod  # noqa: E402

GOAL = 0.99  # share of records not flagged unappliable whose patch and test_patch apply


def applies(git_dir: str, base: str, patch: str, index: str) -> tuple[bool, str]:
    """`git apply --check --cached` of ``patch`` in an index read from ``base``."""
    if not patch:
        return True, ""
    env = {**os.environ, "GIT_INDEX_FILE": index}
    rt = subprocess.run(["git", "--git-dir", git_dir, "read-tree", base], env=env,
                        capture_output=True, text=True)
    if rt.returncode != 0:
        return False, "read-tree: " + rt.stderr.strip()[:200]
    ap = subprocess.run(["git", "--git-dir", git_dir, "apply", "--check", "--cached", "-"],
                        input=patch.encode(), env=env, capture_output=True)
    return ap.returncode == 0, ap.stderr.decode(errors="replace").strip()[:300]


def bench(path: Path, repo: str, work: Path, verbose: bool) -> dict:
    db = work / "queue.duckdb"
    settings = config.load(env={})
    settings.queue.db = str(db)
    t = time.perf_counter()
    summary = app.run(settings, app.RunRequest(git=[str(path)], repo_name=repo))
    t_run = time.perf_counter() - t
    app.review_action(settings, "approve", "true", [], "bench", None)
    out = work / "export"
    export_mod.export(app.open_queue(settings), out, "jsonl", style="swebench")
    records = [json.loads(line) for line in (out / "train.jsonl").read_text().splitlines()]
    git_dir = subprocess.run(["git", "-C", str(path), "rev-parse", "--absolute-git-dir"],
                             capture_output=True, text=True, check=True).stdout.strip()
    index = str(work / "index")
    res = Counter()
    flags = Counter()
    failures = []
    for r in records:
        res["records"] += 1
        res[f"kind/{r['kind']}"] += 1
        if not r["applicable"]:
            res["flagged"] += 1
            for issue in r["apply_issues"] or []:
                flags[issue] += 1
        ok_p, err_p = applies(git_dir, r["base_commit"], r["patch"] or "", index)
        ok_t, err_t = applies(git_dir, r["base_commit"], r["test_patch"] or "", index)
        both = ok_p and ok_t
        if r["applicable"]:
            res["checked"] += 1
            res["patch_ok"] += ok_p
            res["test_patch_ok"] += ok_t
            res["both_ok"] += both
            if not both:
                failures.append((r["instance_id"], err_p or err_t))
        else:
            res["flagged_but_applies"] += both
        for st in r["stages"] or []:
            if not st["applicable"]:
                continue
            res["stages_checked"] += 1
            res["stages_ok"] += (applies(git_dir, st["base_commit"], st["patch"] or "", index)[0]
                                 and applies(git_dir, st["base_commit"], st["test_patch"] or "",
                                             index)[0])
    return {"repo": repo, "prs": summary.counts.get("source/prs", 0),
            "chains_found": summary.counts.get("chains/found", 0),
            "chains_kept": summary.counts.get("chains/kept", 0), "run_s": round(t_run, 1),
            "counts": dict(res), "flags": dict(flags), "failures": failures[:10 if verbose else 3]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--git", type=Path, action="append", default=[], help="a clone")
    ap.add_argument("--repo", action="append", default=[], help="its owner/name (in order)")
    ap.add_argument("--mirrors", type=Path, help="a folder of owner+name/repo clones")
    ap.add_argument("-v", "--verbose", action="store_true")
    args = ap.parse_args()
    todo = list(zip(args.git, args.repo))
    if args.mirrors:
        todo += [(d / "repo", d.name.replace("+", "/")) for d in sorted(args.mirrors.iterdir())
                 if (d / "repo").is_dir()]
    if not todo:
        ap.error("name clones with --git/--repo or --mirrors")
    rates = []
    for path, repo in todo:
        with tempfile.TemporaryDirectory(prefix="synth-bench-apply-") as tmp:
            try:
                r = bench(path, repo, Path(tmp), args.verbose)
            except Exception as exc:  # a broken clone: say so, go on
                print(f"{repo}: skipped ({type(exc).__name__}: {str(exc)[:200]})")
                continue
        c = r["counts"]
        rate = c.get("both_ok", 0) / c["checked"] if c.get("checked") else 1.0
        rates.append(rate)
        print(f"{repo}: {r['prs']} PRs, {c.get('records', 0)} records "
              f"({c.get('kind/pr', 0)} PR tasks, {c.get('kind/chain', 0)} chains; "
              f"chains found {r['chains_found']}, kept {r['chains_kept']}), run {r['run_s']} s")
        print(f"  not flagged: {c.get('checked', 0)}; patch applies {c.get('patch_ok', 0)}, "
              f"test_patch applies {c.get('test_patch_ok', 0)}, both {c.get('both_ok', 0)}: "
              f"rate {rate:.4f} (goal >= {GOAL})")
        print(f"  flagged unappliable: {c.get('flagged', 0)} {r['flags']}; of them applying "
              f"anyway: {c.get('flagged_but_applies', 0)}")
        if c.get("stages_checked"):
            print(f"  chain stages at their own base: {c.get('stages_ok', 0)} of "
                  f"{c['stages_checked']} apply")
        for iid, err in r["failures"]:
            print(f"    FAIL {iid}: {err.splitlines()[0] if err else ''}")
    if rates:
        print(f"lowest rate {min(rates):.4f} over {len(rates)} repositories "
              f"({'meets' if min(rates) >= GOAL else 'misses'} the goal {GOAL})")


if __name__ == "__main__":
    main()
