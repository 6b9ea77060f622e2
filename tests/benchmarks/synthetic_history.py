"""A large, realistic-looking git history built in seconds with `git fast-import`.

Every commit on main is a squash-merged PR ("Title (#N)") that edits 1-6 files of a Python
project: new functions, changed bodies, docstrings, comments, tests, docs. Deterministic.
"""

from __future__ import annotations

import random
import subprocess
from pathlib import Path

WORDS = ("parse config token stream buffer cache retry queue worker session client record "
         "schema index batch merge window filter render export import handle route").split()


def _func(rng: random.Random, name: str) -> list[str]:
    body = [f"def {name}({rng.choice(WORDS)}, {rng.choice(WORDS)}=None):",
            f'    """{rng.choice(WORDS).capitalize()} the {rng.choice(WORDS)} for the {rng.choice(WORDS)}."""']
    for _ in range(rng.randint(3, 12)):
        kind = rng.random()
        if kind < 0.15:
            body.append(f"    # {' '.join(rng.choices(WORDS, k=5))}")
        elif kind < 0.3:
            body.append(f"    if {rng.choice(WORDS)} is None:")
            body.append(f"        {rng.choice(WORDS)} = {rng.randint(0, 99)}")
        else:
            body.append(f"    {rng.choice(WORDS)} = {rng.choice(WORDS)}_{rng.randint(0, 9)}"
                        f"({rng.choice(WORDS)}, {rng.randint(0, 999)})")
    body.append(f"    return {rng.choice(WORDS)}")
    return body + [""]


def build(dest: Path, commits: int = 2500, seed: int = 7) -> Path:
    rng = random.Random(seed)
    dest.mkdir(parents=True, exist_ok=True)
    subprocess.run(["git", "init", "-q", "-b", "main", str(dest)], check=True)
    subprocess.run(["git", "-C", str(dest), "remote", "add", "origin",
                    "https://github.com/bench/synthetic.git"], check=True)
    files: dict[str, list[str]] = {}
    for i in range(60):
        path = f"pkg/mod{i:03d}.py" if i < 45 else f"tests/test_mod{i:03d}.py"
        lines = ['"""Module."""', "", "import os", ""]
        for j in range(rng.randint(3, 10)):
            lines += _func(rng, f"f{j}")
        files[path] = lines
    files["README.md"] = ["# synthetic", ""]
    out = []
    t = 1_600_000_000
    for n in range(1, commits + 1):
        t += 3600
        touched = rng.sample(sorted(files), rng.randint(1, 6))
        for path in touched:
            lines = files[path]
            action = rng.random()
            if path.endswith(".md"):
                lines.append(f"- change {n}: {' '.join(rng.choices(WORDS, k=8))}")
            elif action < 0.5:
                lines += _func(rng, f"g{n}_{rng.randint(0, 99)}")
            else:
                for _ in range(rng.randint(1, 8)):
                    k = rng.randrange(len(lines))
                    lines[k] = f"    {rng.choice(WORDS)} = {rng.choice(WORDS)}({n})"
        title = f"{rng.choice(['Add', 'Fix', 'Improve', 'Refactor'])} {rng.choice(WORDS)} {rng.choice(WORDS)}"
        msg = f"{title} (#{n})\n\n{' '.join(rng.choices(WORDS, k=20))}\n".encode()
        out.append(b"commit refs/heads/main\n")
        out.append(f"committer Dev <dev@example.com> {t} +0000\n".encode())
        out.append(b"data %d\n%s\n" % (len(msg), msg))
        for path in touched:
            data = ("\n".join(files[path]) + "\n").encode()
            out.append(f"M 100644 inline {path}\n".encode())
            out.append(b"data %d\n%s\n" % (len(data), data))
    subprocess.run(["git", "-C", str(dest), "fast-import", "--quiet"], input=b"".join(out),
                   check=True)
    return dest
