"""Benchmark: chains found on real clones, and the precision of their links on hand labels.

    python tests/benchmarks/bench_chains.py --mirrors DIR [--labels data/labels/chain_links.tsv]

For every DIR/owner+name/repo clone: its PRs (git source), each decided with the default
rules, and the chains among them (chains.detect): chains found and kept, links by kind. Then
every labelled link (data/labels/chain_links.tsv: `series` or `unrelated`, split `tune` or
`eval`) that the rules still find counts towards the precision of its split: the share of
found links labelled `series`. The `eval` split was drawn after the rules were tuned on the
`tune` split. Prints ten kept chains drawn at random (seed 10) to read.
"""

from __future__ import annotations

import argparse
import csv
import random
import sys
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from synth.chains import detect  # noqa: E402
from synth.filtering import decide, load_rules  # noqa: E402
from synth.sources.git import GitSource  # noqa: E402

GOAL = 0.8  # precision of links on the eval split


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mirrors", type=Path, required=True)
    ap.add_argument("--labels", type=Path,
                    default=Path(__file__).resolve().parents[2] / "data/labels/chain_links.tsv")
    args = ap.parse_args()
    rules = load_rules()
    found: set[tuple] = set()
    kept_chains = []
    for d in sorted(args.mirrors.iterdir()):
        if not (d / "repo").is_dir():
            continue
        name = d.name.replace("+", "/")
        try:
            src = GitSource(d / "repo", name)
            prs = list(src.pull_requests(src.list_pr_commits()))
        except Exception as exc:  # a broken clone: say so, go on
            print(f"{name}: skipped ({str(exc)[:150]})")
            continue
        decisions = {p.number: decide(p, rules) for p in prs}
        chains = detect(name, prs, decisions, rules.classify, rules.chains)
        titles = {p.number: p.title for p in prs}
        kinds = Counter(lk.kind for c in chains for lk in c.links)
        print(f"{name}: {len(prs)} PRs, {len(chains)} chains, {sum(c.kept for c in chains)} kept, "
              f"{sum(len(c.members) for c in chains if c.kept)} PRs in kept chains; links "
              + ", ".join(f"{k} {n}" for k, n in kinds.most_common()))
        found |= {(name, lk.earlier, lk.later, lk.kind) for c in chains for lk in c.links}
        kept_chains += [(name, c, titles) for c in chains if c.kept]
    with open(args.labels, newline="", encoding="utf-8") as fh:
        labels = list(csv.DictReader(fh, delimiter="\t"))
    for split in ("tune", "eval"):
        rows = [r for r in labels if r["split"] == split]
        hit = [r for r in rows
               if (r["repo"], int(r["earlier"]), int(r["later"]), r["kind"]) in found]
        if hit:
            p = sum(r["label"] == "series" for r in hit) / len(hit)
            print(f"link precision, {split}: {p:.3f} over {len(hit)} labelled links still found "
                  f"(of {len(rows)} labelled)" + (f"; goal >= {GOAL}" if split == "eval" else ""))
    random.seed(10)
    print("\nten kept chains:")
    for name, c, titles in random.sample(kept_chains, min(10, len(kept_chains))):
        print(f"  {name} {' -> '.join(f'#{n}' for n in c.members)} ({c.figures['span_days']} "
              f"days, {c.figures['logic_lines']} lines of logic)")
        for n in c.members:
            print(f"      #{n} {titles[n][:90]}")
        for lk in c.links:
            print(f"      {lk.kind}: {lk.detail[:120]}")


if __name__ == "__main__":
    main()
