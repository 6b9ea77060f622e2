"""Git histories for tests, built for real with git in a temporary folder.

``mixed_history(n_merge, n_squash)`` describes a project with PRs in both styles; the
expected file stats of every PR are known from the description, so tests can check what
the git source reads.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

START = datetime(2024, 1, 1, 9, 0, tzinfo=timezone.utc)


def module_text(name: str, n_funcs: int, version: int = 0, guard: bool = False) -> str:
    """A module of small functions; with ``guard`` each checks its argument first (a
    feature's functions branch: real logic, not only declarations)."""
    out = [f'"""Module {name}."""', "", "import os", ""]
    for i in range(n_funcs):
        out += [f"def {name}_f{i}(x):", f"    # step {i}"]
        if guard:
            out += [f"    if x < {i}:", f"        raise ValueError('{name}_f{i} needs x >= {i}')"]
        out += [f"    y = x * {i + version} + 1", f"    return y - {i}", ""]
    return "\n".join(out) + "\n"


def mixed_history(n_merge: int = 50, n_squash: int = 50, name: str = "acme/widgets") -> tuple[dict, dict]:
    """(history, expected) where expected maps PR number to
    {"style", "title", "files": {path: (status, additions, deletions)}}."""
    commits = [{
        "kind": "direct", "message": "Initial commit", "author": "Ada <ada@example.com>",
        "date": START.isoformat(),
        "files": {"README.md": "# widgets\n", "src/core.py": module_text("core", 3)},
    }]
    expected: dict[int, dict] = {}
    t = START
    total = n_merge + n_squash
    for i in range(total):
        number = 10 + i * 2
        t += timedelta(hours=5)
        style = "merge" if i % 2 == 0 and i // 2 < n_merge or i // 2 >= n_squash else "squash"
        k = i % 5
        files, exp = {}, {}
        if k == 0:  # a new module and its test: substantive
            mod = f"src/feature_{i}.py"
            files[mod] = module_text(f"feature_{i}", 6, guard=True)
            files[f"tests/test_feature_{i}.py"] = (
                f"from src.feature_{i} import feature_{i}_f1\n\n\n"
                f"def test_f1():\n    assert feature_{i}_f1(2) == 3\n")
            exp[mod] = ("added", files[mod].count("\n"), 0)
            exp[f"tests/test_feature_{i}.py"] = ("added", 5, 0)
        elif k == 1:  # a docs change
            files[f"docs/page_{i}.md"] = f"# Page {i}\n\nSome words.\n"
            exp[f"docs/page_{i}.md"] = ("added", 3, 0)
        elif k == 2:  # rewrite a module: 3 funcs -> 4 funcs with version bump in constants
            path = f"src/util_{i}.py"
            files[path] = module_text(f"util_{i}", 4)
            exp[path] = ("added", files[path].count("\n"), 0)
        elif k == 3:  # a binary asset plus code
            files[f"assets/logo_{i}.png"] = bytes(range(256)) * 4
            files[f"src/img_{i}.py"] = module_text(f"img_{i}", 2)
            exp[f"assets/logo_{i}.png"] = ("added", 0, 0)
            exp[f"src/img_{i}.py"] = ("added", files[f"src/img_{i}.py"].count("\n"), 0)
        else:  # a small edit to the core module
            files["src/core.py"] = module_text("core", 3, version=i)
            exp["src/core.py"] = ("modified", 3, 3) if i > 4 else ("modified", 3, 3)
        title = f"Change number {i}"
        c = {"kind": style, "pr": number, "title": title, "body": f"Body of change {i}.",
             "author": f"Dev{i % 7} <dev{i % 7}@example.com>", "date": t.isoformat(),
             "files": files}
        if style == "merge":
            c["branch"] = f"dev{i % 7}/change-{i}"
        commits.append(c)
        expected[number] = {"style": style, "title": title, "files": exp}
        if i % 10 == 9:  # a direct commit that is not a PR
            t += timedelta(minutes=30)
            commits.append({"kind": "direct", "message": f"Tidy up {i}",
                            "author": "Ada <ada@example.com>", "date": t.isoformat(),
                            "files": {"NOTES": f"note {i}\n"}})
    return {"repo": {"name": name, "default_branch": "main"}, "commits": commits}, expected
