"""Benchmark: filter throughput, `decide(pr, rules)` over synthetic pull requests.

    python tests/benchmarks/bench_filter.py [--prs 50000] [--seed 7] [--repeat 3] [--goal PRS_PER_S]

Builds --prs realistic synthetic PullRequests (seeded, so every run sees the same PRs): a mix
of docs-only, tests-only, CI and lockfile changes, small fixes (with and without a regression
test), multi-file features with Python / TypeScript / Go patches holding comments, docstrings
and blank lines, formatter runs, comment-only edits, import reorders, renames, binary assets,
bot authors and release / bump / revert / typo titles. Then times `decide(pr, rules)` over all
of them with `rules = load_rules()` (the default filters/default.toml). Each pass loads the
rules afresh so the path-class cache starts cold; the best pass is reported, the first too.

Prints PRs/s, the kept / dropped split and the most frequent reason codes. No assertion on
time: with --goal, the figure is printed next to it with "ok" or "over goal".
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from collections import Counter
from datetime import datetime, timedelta, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from synth.filtering import DROP_CODES, decide, load_rules  # noqa: E402
from synth.models import FileChange, PullRequest  # noqa: E402

# ---------------------------------------------------------------- vocabulary

WORDS = ("cache config parser router session token client server worker queue schema index "
         "handler request response retry timeout buffer stream report export import loader "
         "metrics auth user order invoice search filter plugin render layout event store").split()
PKGS = ("core api utils services models storage cli web jobs sync").split()
HUMANS = ("alice bob carol dmitri eun-ji farah gustavo hiro ines jonas kwame lena mateo "
          "nadia olek priya quinn rafael sofia tomasz uma viktor wen xiadani yusuf zoe").split()
BOTS = ("dependabot[bot]", "renovate[bot]", "github-actions[bot]", "pre-commit-ci[bot]",
        "mergify[bot]")

TITLES_FEATURE = ("Add {w} support to {p}", "Implement {w} {w2} for the {p} module",
                  "Support streaming {w} in {p}", "Refactor {p} {w} handling",
                  "Introduce {w2} backoff for {w}", "Allow configuring {w} via {w2}")
TITLES_FIX = ("Fix {w} crash when {w2} is empty", "Fix off-by-one in {p} {w}",
              "Handle missing {w} in {w2} handler", "Fix race in {w} {w2}",
              "Don't drop {w} on {w2} retry")
TITLES_RELEASE = ("Release 2.{a}.{b}", "v1.{a}.{b}", "chore(release): 3.{a}.{b}",
                  "Bump version to 0.{a}.{b}", "Prepare release 4.{a}")
TITLES_BUMP = ("Bump {w} from 1.{a}.0 to 1.{b}.0", "chore(deps): update {w} to v{a}",
               "build(deps-dev): bump {w}-lint", "Update dependency {w}-js to v{b}")
TITLES_MISC = ('Revert "Add {w} support"', "Fix typo in {w} docs", "chore: tidy {w}",
               "style: run formatter", "ci: cache {w} deps")


def _w(rng: random.Random) -> str:
    return rng.choice(WORDS)


# ---------------------------------------------------------------- patch builders

def _hunk(rng: random.Random, removed: list[str], added: list[str], context: int = 3) -> str:
    start = rng.randint(1, 400)
    ctx_before = [f"    {_w(rng)}_{i} = {_w(rng)}({i})" for i in range(context)]
    ctx_after = [f"    return {_w(rng)}" for _ in range(min(context, 2))]
    old_n = len(ctx_before) + len(removed) + len(ctx_after)
    new_n = len(ctx_before) + len(added) + len(ctx_after)
    lines = [f"@@ -{start},{old_n} +{start},{new_n} @@ def {_w(rng)}_{_w(rng)}(self):"]
    lines += [" " + c for c in ctx_before]
    lines += ["-" + r for r in removed]
    lines += ["+" + a for a in added]
    lines += [" " + c for c in ctx_after]
    return "\n".join(lines)


def py_block(rng: random.Random, n: int, docstring: bool = True) -> list[str]:
    """A Python function of roughly n lines with a docstring, comments and blank lines."""
    name = f"{_w(rng)}_{_w(rng)}"
    out = [f"def {name}(self, {_w(rng)}, {_w(rng)}=None):"]
    if docstring:
        if rng.random() < 0.5:
            out.append(f'    """Return the {_w(rng)} for a {_w(rng)}."""')
        else:
            out += ['    """', f"    Build the {_w(rng)} from the {_w(rng)}.", "",
                    f"    Raises ValueError when the {_w(rng)} is missing.", '    """']
    while len(out) < n:
        r = rng.random()
        if r < 0.12:
            out.append(f"    # {_w(rng)}: keep the {_w(rng)} in sync with {_w(rng)}")
        elif r < 0.2:
            out.append("")
        elif r < 0.3:
            out.append(f"    if {_w(rng)} is None:")
            out.append(f"        raise ValueError('missing {_w(rng)}')")
        elif r < 0.38:
            out.append(f"    for item in self.{_w(rng)}s:")
            out.append(f"        item.{_w(rng)}({_w(rng)}, timeout={rng.randint(1, 90)})")
        else:
            out.append(f"    {_w(rng)} = self.{_w(rng)}.get({_w(rng)!r}, {rng.randint(0, 99)})")
    out.append(f"    return {_w(rng)}")
    return out


def ts_block(rng: random.Random, n: int) -> list[str]:
    name = f"{_w(rng)}{_w(rng).capitalize()}"
    out = ["/**", f" * Resolve the {_w(rng)} of a {_w(rng)}.", f" * @param {_w(rng)} the input",
           " */", f"export function {name}({_w(rng)}: string, opts?: {_w(rng).capitalize()}Options) {{"]
    while len(out) < n:
        r = rng.random()
        if r < 0.12:
            out.append(f"  // {_w(rng)} may be undefined on the first {_w(rng)}")
        elif r < 0.18:
            out.append("")
        elif r < 0.24:
            out.append(f"  /* {_w(rng)} */ const {_w(rng)}Id = {rng.randint(0, 999)};")
        elif r < 0.35:
            out.append(f"  if (!{_w(rng)}) {{ throw new Error('no {_w(rng)}'); }}")
        else:
            out.append(f"  const {_w(rng)} = await this.{_w(rng)}.{_w(rng)}({_w(rng)}, opts);")
    out.append("}")
    return out


def go_block(rng: random.Random, n: int) -> list[str]:
    name = f"{_w(rng).capitalize()}{_w(rng).capitalize()}"
    out = [f"// {name} returns the {_w(rng)} for a {_w(rng)}.",
           f"func (s *{_w(rng).capitalize()}) {name}(ctx context.Context, {_w(rng)} string) error {{"]
    while len(out) < n:
        r = rng.random()
        if r < 0.12:
            out.append(f"\t// {_w(rng)} is checked by the caller")
        elif r < 0.18:
            out.append("")
        elif r < 0.35:
            out += [f"\tif err := s.{_w(rng)}(ctx); err != nil {{",
                    f"\t\treturn fmt.Errorf(\"{_w(rng)}: %w\", err)", "\t}"]
        else:
            out.append(f"\t{_w(rng)} := s.{_w(rng)}[{rng.randint(0, 9)}]")
    out += ["\treturn nil", "}"]
    return out


def test_block(rng: random.Random, n: int) -> list[str]:
    out = [f"def test_{_w(rng)}_{_w(rng)}_{rng.randint(0, 99)}({_w(rng)}):"]
    while len(out) < n:
        out.append(f"    assert {_w(rng)}.{_w(rng)}({rng.randint(0, 9)}) == {rng.randint(0, 9)}")
    return out


def md_block(rng: random.Random, n: int) -> list[str]:
    return [f"The `{_w(rng)}` option sets the {_w(rng)} used by {_w(rng)}." if i % 3 else ""
            for i in range(n)]


def code_file(rng: random.Random, lang: str, size: int, status: str = "modified") -> FileChange:
    pkg, mod = rng.choice(PKGS), _w(rng)
    if lang == "py":
        path, block = f"src/{pkg}/{mod}.py", py_block(rng, size)
    elif lang == "ts":
        path, block = f"web/src/{pkg}/{mod}.ts", ts_block(rng, size)
    else:
        path, block = f"internal/{pkg}/{mod}.go", go_block(rng, size)
    if status == "added":
        patch = f"@@ -0,0 +1,{len(block)} @@\n" + "\n".join("+" + ln for ln in block)
        return _fc(path, "added", patch, len(block), 0)
    removed = block[1:1 + rng.randint(0, max(1, size // 4))]
    patch = _hunk(rng, removed, block)
    if size > 40 and rng.random() < 0.5:  # a second hunk
        extra = py_block(rng, 8, docstring=False) if lang == "py" else (
            ts_block(rng, 8) if lang == "ts" else go_block(rng, 8))
        patch += "\n" + _hunk(rng, extra[:2], extra)
    return _fc(path, status, patch)


def _fc(path: str, status: str, patch: str | None, adds: int | None = None,
        dels: int | None = None, binary: bool = False) -> FileChange:
    if patch is not None and adds is None:
        adds = sum(1 for ln in patch.splitlines() if ln.startswith("+"))
        dels = sum(1 for ln in patch.splitlines() if ln.startswith("-"))
    return FileChange(path=path, status=status, additions=adds or 0, deletions=dels or 0,
                      patch=patch, binary=binary,
                      patch_bytes=len(patch.encode()) if patch else 0)


def test_file(rng: random.Random, size: int) -> FileChange:
    block = test_block(rng, size)
    return _fc(f"tests/test_{_w(rng)}.py", "modified", _hunk(rng, [], block))


def doc_file(rng: random.Random, size: int) -> FileChange:
    path = rng.choice(["README.md", f"docs/{_w(rng)}.md", "CHANGELOG.md", f"docs/guide/{_w(rng)}.rst"])
    block = md_block(rng, size)
    return _fc(path, "modified", _hunk(rng, block[:2], block, context=1))


def binary_file(rng: random.Random) -> FileChange:
    path = rng.choice([f"docs/img/{_w(rng)}.png", f"web/public/{_w(rng)}.svg",
                       f"assets/fonts/{_w(rng)}.woff2", f"static/{_w(rng)}.jpg"])
    return FileChange(path=path, status="added", additions=0, deletions=0, patch=None, binary=True)


def lock_file(rng: random.Random) -> FileChange:
    path = rng.choice(["package-lock.json", "poetry.lock", "go.sum", "yarn.lock"])
    lines = [f'    "{_w(rng)}": "^{rng.randint(1, 9)}.{rng.randint(0, 20)}.{rng.randint(0, 9)}",'
             for _ in range(6)]
    return _fc(path, "modified", _hunk(rng, lines[:3], lines[3:], context=1))


def ci_file(rng: random.Random) -> FileChange:
    lines = [f"      - run: make {_w(rng)}", f"        python-version: '3.{rng.randint(9, 13)}'"]
    return _fc(f".github/workflows/{_w(rng)}.yml", "modified", _hunk(rng, lines[:1], lines, context=1))


# ---------------------------------------------------------------- PR kinds

def _feature(rng):
    langs = rng.choice([("py",), ("ts",), ("go",), ("py", "ts"), ("go", "ts")])
    files = [code_file(rng, rng.choice(langs), rng.randint(15, 70),
                       "added" if rng.random() < 0.25 else "modified")
             for _ in range(rng.randint(2, 8))]
    if rng.random() < 0.6:
        files.append(test_file(rng, rng.randint(8, 40)))
    if rng.random() < 0.3:
        files.append(doc_file(rng, rng.randint(4, 20)))
    if rng.random() < 0.08:
        files.append(binary_file(rng))
    return "feature", files


def _small_fix(rng):
    files = [code_file(rng, rng.choice(("py", "ts", "go")), rng.randint(3, 12))]
    if rng.random() < 0.5:
        files.append(test_file(rng, rng.randint(6, 20)))
    return "fix", files


def _docs_only(rng):
    return "docs", [doc_file(rng, rng.randint(3, 30)) for _ in range(rng.randint(1, 3))] + (
        [binary_file(rng)] if rng.random() < 0.2 else [])


def _tests_only(rng):
    return "tests", [test_file(rng, rng.randint(5, 40)) for _ in range(rng.randint(1, 3))]


def _chore(rng):
    return "chore", rng.choice([[lock_file(rng)], [ci_file(rng)], [lock_file(rng), ci_file(rng)]])


def _formatting(rng):
    lines = [f"    {_w(rng)} = call({_w(rng)}, {_w(rng)})" for _ in range(rng.randint(4, 12))]
    reformatted = [ln.replace(", ", ",  ").replace("(", "( ") for ln in lines]
    return "format", [_fc(f"src/{rng.choice(PKGS)}/{_w(rng)}.py", "modified",
                          _hunk(rng, lines, reformatted))]


def _comment_only(rng):
    old = [f"    # {_w(rng)} {_w(rng)} {_w(rng)}" for _ in range(rng.randint(2, 6))]
    new = [f"    # {_w(rng)} {_w(rng)} ({_w(rng)})" for _ in old]
    return "comments", [_fc(f"src/{rng.choice(PKGS)}/{_w(rng)}.py", "modified", _hunk(rng, old, new))]


def _import_order(rng):
    imps = [f"import {w}" for w in rng.sample(WORDS, 5)]
    shuffled = imps[:]
    rng.shuffle(shuffled)
    return "imports", [_fc(f"src/{rng.choice(PKGS)}/{_w(rng)}.py", "modified",
                           _hunk(rng, imps, shuffled, context=0))]


def _rename(rng):
    files = [FileChange(path=f"src/{rng.choice(PKGS)}/{_w(rng)}_{i}.py", status="renamed",
                        additions=0, deletions=0, old_path=f"src/old/{_w(rng)}_{i}.py")
             for i in range(rng.randint(1, 4))]
    return "rename", files


def _version_string(rng):
    a, b = rng.randint(0, 9), rng.randint(0, 30)
    return "version", [_fc(f"src/{rng.choice(PKGS)}/__init__.py", "modified",
                           _hunk(rng, [f'__version__ = "1.{a}.{b}"'], [f'__version__ = "1.{a}.{b + 1}"'],
                                 context=1))]


def _huge(rng):
    return "huge", [code_file(rng, "py", rng.randint(150, 300), "added") for _ in range(rng.randint(12, 20))]


KINDS = [  # (weight, builder)
    (30, _feature), (20, _small_fix), (12, _docs_only), (7, _tests_only), (7, _chore),
    (3, _formatting), (3, _comment_only), (2, _import_order), (2, _rename),
    (1, _version_string), (2, _huge),
]


def build_prs(n: int, seed: int = 7) -> list[PullRequest]:
    rng = random.Random(seed)
    weights = [w for w, _ in KINDS]
    builders = [b for _, b in KINDS]
    base = datetime(2024, 1, 1, tzinfo=timezone.utc)
    prs = []
    for i in range(n):
        _, files = rng.choices(builders, weights)[0](rng)
        fmt = {"w": _w(rng), "w2": _w(rng), "p": rng.choice(PKGS),
               "a": rng.randint(0, 30), "b": rng.randint(0, 30)}
        r = rng.random()
        if r < 0.03:
            title = rng.choice(TITLES_RELEASE).format(**fmt)
        elif r < 0.07:
            title = rng.choice(TITLES_BUMP).format(**fmt)
        elif r < 0.10:
            title = rng.choice(TITLES_MISC).format(**fmt)
        else:
            title = rng.choice(TITLES_FEATURE + TITLES_FIX).format(**fmt)
        bot = rng.random() < 0.04
        author = rng.choice(BOTS) if bot else rng.choice(HUMANS)
        labels = tuple(rng.sample(["bug", "enhancement", "documentation", "performance",
                                   "refactor", "api"], rng.choice((0, 0, 1, 1, 2))))
        if rng.random() < 0.02:  # the odd trivial label: drops the PR on its own
            labels += (rng.choice(["dependencies", "chore", "release", "skip-changelog"]),)
        repo = f"org{i % 97}/repo{i % 389}"
        number = 1000 + i
        prs.append(PullRequest(
            repo=repo, number=number, title=title,
            body=f"Closes #{number - rng.randint(1, 500)}.\n\nThis changes the {_w(rng)} {_w(rng)}.",
            author=author, merged_at=base + timedelta(minutes=17 * i), base_sha=f"{rng.getrandbits(160):040x}",
            merge_sha=f"{rng.getrandbits(160):040x}", url=f"https://github.com/{repo}/pull/{number}",
            labels=labels, files=tuple(files), author_is_bot=bot and rng.random() < 0.5,
            source="github"))
    return prs


# ---------------------------------------------------------------- run

def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--prs", type=int, default=50_000)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--repeat", type=int, default=3, help="timed passes; the best is reported")
    ap.add_argument("--goal", type=float, default=None, help="PRs/s goal to compare against")
    args = ap.parse_args()

    t = time.perf_counter()
    prs = build_prs(args.prs, args.seed)
    gen = time.perf_counter() - t
    n_files = sum(len(p.files) for p in prs)
    patch_mb = sum(f.patch_bytes for p in prs for f in p.files) / 1e6
    changed = sorted(p.additions + p.deletions for p in prs)
    print(f"built {len(prs):,} synthetic PRs ({n_files:,} files, {patch_mb:.1f} MB of patches; "
          f"changed lines per PR: median {changed[len(changed) // 2]}, mean "
          f"{sum(changed) / len(changed):.0f}, p95 {changed[int(len(changed) * 0.95)]}) "
          f"in {gen:.1f} s (seed {args.seed}; not timed)")

    times, decisions = [], []
    for _ in range(max(1, args.repeat)):
        rules = load_rules()  # fresh rules: the path-class cache starts cold each pass
        t = time.perf_counter()
        decisions = [decide(pr, rules) for pr in prs]
        times.append(time.perf_counter() - t)
    best = min(times)
    rate = len(prs) / best
    line = (f"filter throughput: {rate:,.0f} PRs/s  (best of {len(times)}: {best:.2f} s for "
            f"{len(prs):,} PRs; first pass {times[0]:.2f} s, {len(prs) / times[0]:,.0f} PRs/s)")
    if args.goal:
        line += f"  goal >= {args.goal:,.0f} PRs/s: {'ok' if rate >= args.goal else 'over goal'}"
    print(line)
    print(f"  per PR: {best / len(prs) * 1e6:.0f} us on average; per changed line: "
          f"{best / max(1, sum(changed)) * 1e6:.2f} us")

    kept = sum(d.kept for d in decisions)
    dropped = len(decisions) - kept
    print(f"kept {kept:,} ({kept / len(decisions):.1%}), dropped {dropped:,} "
          f"({dropped / len(decisions):.1%})")
    drop_codes = Counter(c for d in decisions if not d.kept for c in d.reasons if c in DROP_CODES)
    info_codes = Counter(c for d in decisions for c in d.reasons if c not in DROP_CODES)
    print("drop reasons, most frequent first (a dropped PR can carry several):")
    for code, n in drop_codes.most_common():
        print(f"  {code:<22} {n:>7,}  {n / len(decisions):6.1%}")
    print("information codes:")
    for code, n in info_codes.most_common():
        print(f"  {code:<22} {n:>7,}  {n / len(decisions):6.1%}")


if __name__ == "__main__":
    main()
