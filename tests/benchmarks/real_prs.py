"""The labelled set of real PRs: draw a seeded sample from clones, and dump each sampled PR's
diff for reading.

    python -m tests.benchmarks.real_prs sample --clones DIR --out data/labels/real_prs.tsv \\
        --seed 11 pallets/flask=60:tune psf/requests=70:heldout ...
    python -m tests.benchmarks.real_prs dump --clones DIR --labels data/labels/real_prs.tsv \\
        --out /tmp/labelling

The sample is drawn from every PR synth's git source finds in a clone (all branches), so it
has the repositories' own mix of trivial and substantive PRs. Labels are written by reading
the dumped diffs against filters/RUBRIC.md; `synth filters eval --clones DIR` scores the rules.
Nothing here is part of the test run: it needs real clones (brought here with the search
tool's fetch, or `git clone --bare`).
"""

from __future__ import annotations

import argparse
import csv
import random
import subprocess
import sys
from pathlib import Path

from synth.evaluation import LABEL_COLUMNS, find_clone
from synth.sources.git import GitSource

MAX_DUMP = 60_000  # characters of patch per PR in a dump; the rest is summarised


def sample(clones: Path, specs: list[str], seed: int, out: Path, append: bool = False) -> int:
    """Draw N PRs per repository; with ``append``, PRs already in ``out`` are left out of
    the draw and the new rows are added after them (a second, larger draw)."""
    taken: set[tuple[str, int]] = set()
    old: list[dict] = []
    if append and out.exists():
        with open(out, encoding="utf-8") as fh:
            old = list(csv.DictReader(fh, delimiter="\t"))
        taken = {(r["repo"], int(r["number"])) for r in old}
    rows = []
    for spec in specs:
        repo, _, rest = spec.partition("=")
        n, _, split = rest.partition(":")
        src = GitSource(find_clone(clones, repo), repo)
        listed = src.list_pr_commits(fix_authors=False)
        unreadable: list = []  # commits whose diff git cannot read in this clone: not drawn
        for _ in src.pull_requests(listed, unreadable=unreadable):
            pass
        gone = {f.number for f in unreadable}
        commits = sorted((c for c in listed
                          if (repo, c.number) not in taken and c.number not in gone),
                         key=lambda c: c.number)
        if gone:
            print(f"{repo}: {len(gone)} PRs left out, git cannot read their diff here",
                  file=sys.stderr)
        rng = random.Random(f"{seed}:{repo}")
        picked = sorted(rng.sample(commits, min(int(n), len(commits))), key=lambda c: c.number)
        for c in picked:
            rows.append({"repo": repo, "number": c.number, "commit": c.sha, "label": "",
                         "category": "", "split": split or "tune", "reason": ""})
        print(f"{repo}: {len(picked)} of {len(commits)} PRs", file=sys.stderr)
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out, "w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, LABEL_COLUMNS, delimiter="\t", lineterminator="\n")
        w.writeheader()
        w.writerows(old + rows)
    return len(rows)


def dump(clones: Path, labels: Path, out: Path) -> int:
    with open(labels, encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh, delimiter="\t"))
    n = 0
    for row in rows:
        git_dir = find_clone(clones, row["repo"])
        show = subprocess.run(
            ["git", "--git-dir", str(git_dir), "show", "--diff-merges=first-parent", "--stat",
             "-p", "--no-color", "--format=commit %H%nparents %P%nauthor %an%ndate %cI%n%n%B",
             row["commit"]], capture_output=True, check=True)
        text = show.stdout.decode("utf-8", errors="replace")
        if len(text) > MAX_DUMP:
            text = text[:MAX_DUMP] + f"\n[... {len(text) - MAX_DUMP} more characters of patch]\n"
        target = out / row["repo"].replace("/", "+") / f"{int(row['number']):06d}.txt"
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(f"PR {row['repo']}#{row['number']}\n{text}", encoding="utf-8")
        n += 1
    return n


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="real_prs", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("sample", help="draw the seeded sample")
    s.add_argument("--clones", type=Path, required=True)
    s.add_argument("--out", type=Path, required=True)
    s.add_argument("--seed", type=int, default=11)
    s.add_argument("--append", action="store_true",
                   help="leave out PRs already in --out and add the new draw after them")
    s.add_argument("specs", nargs="+", metavar="OWNER/NAME=N:SPLIT")
    d = sub.add_parser("dump", help="write each sampled PR's message and diff to a file")
    d.add_argument("--clones", type=Path, required=True)
    d.add_argument("--labels", type=Path, required=True)
    d.add_argument("--out", type=Path, required=True)
    args = p.parse_args(argv)
    if args.cmd == "sample":
        print(f"{sample(args.clones, args.specs, args.seed, args.out, args.append)} PRs -> {args.out}")
    else:
        print(f"{dump(args.clones, args.labels, args.out)} PRs -> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
