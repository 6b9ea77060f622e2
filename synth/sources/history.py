"""Build a real git repository from a readable history description.

Used by ``synth run --demo`` (data/demo/history.toml) and by tests. A history is a list of
commits, each ``direct``, ``merge`` (a branch commit merged with --no-ff as GitHub's merge
button does: "Merge pull request #N from BRANCH"), ``squash`` (one commit "TITLE (#N)") or
``merge_branch`` (a long-lived branch ``source`` merged into ``into``, e.g. a maintenance
branch merged forward, with "Merge pull request #N from owner/SOURCE" when ``pr`` is given).
A commit lands on the default branch, or on the branch named by ``on`` (created from
``from``, default the default branch, the first time). Each commit writes whole files
(``files``), applies exact find/replace ``edits``, ``delete``s paths and makes paths
``executable``. Dates and authors are fixed, so the same description gives the same commit
ids on every machine.
"""

from __future__ import annotations

import os
import subprocess
import tomllib
from pathlib import Path

from ..errors import SourceError


def load_history(path: str | Path) -> dict:
    try:
        with open(path, "rb") as fh:
            return tomllib.load(fh)
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise SourceError(f"cannot read the history description {path}: {exc}") from None


def build_repository(history: dict, dest: str | Path) -> Path:
    """Create a git repository at ``dest`` from ``history``; returns its path."""
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    meta = history.get("repo", {})
    branch = meta.get("default_branch", "main")
    g = _Git(dest)
    g("init", "-q", "-b", branch)
    g("config", "user.name", "synth")
    g("config", "user.email", "synth@example.invalid")
    g("config", "commit.gpgsign", "false")
    if meta.get("name"):
        g("remote", "add", "origin", f"https://github.com/{meta['name']}.git")
    for i, commit in enumerate(history.get("commits", [])):
        try:
            _apply_commit(g, dest, branch, commit)
        except SourceError as exc:
            raise SourceError(f"history commit {i + 1}: {exc}") from None
    return dest


def _apply_commit(g: "_Git", root: Path, default: str, c: dict) -> None:
    kind = c.get("kind", "direct")
    if kind == "merge_branch":
        _merge_branch(g, default, c)
        return
    branch = c.get("on") or default
    if branch != default:
        exists = g("branch", "--list", branch).strip()
        g("checkout", "-q", *([branch] if exists else ["-b", branch, c.get("from") or default]))
    try:
        _apply_on(g, root, branch, c, kind)
    finally:
        if branch != default:
            g("checkout", "-q", default)


def _merge_branch(g: "_Git", default: str, c: dict) -> None:
    into = c.get("into") or default
    source = c["source"]
    g("checkout", "-q", into)
    title = c.get("title") or f"Merge {source} into {into}"
    if c.get("pr"):
        owner = c.get("owner", "acme")
        msg = f"Merge pull request #{c['pr']} from {owner}/{source}\n\n{title}"
    else:
        msg = f"Merge branch '{source}' into {into}"
    g("merge", "-q", "--no-ff", "--no-edit", "-m", msg, source,
      env=_ident(c.get("merger", c["author"]), c["date"]))
    if into != default:
        g("checkout", "-q", default)


def _apply_on(g: "_Git", root: Path, branch: str, c: dict, kind: str) -> None:
    author, date = c["author"], c["date"]
    if kind == "direct":
        _write_changes(root, c)
        g.commit(c["message"], author, date)
    elif kind == "squash":
        _write_changes(root, c)
        msg = f"{c['title']} (#{c['pr']})"
        if c.get("body"):
            msg += "\n\n" + c["body"].strip()
        g.commit(msg, author, date)
    elif kind == "merge":
        topic = c.get("branch") or f"pr-{c['pr']}"
        g("checkout", "-q", "-b", topic)
        _write_changes(root, c)
        g.commit(c["title"], author, date)
        g("checkout", "-q", branch)
        msg = f"Merge pull request #{c['pr']} from {topic}\n\n{c['title']}"
        if c.get("body"):
            msg += "\n\n" + c["body"].strip()
        merger = c.get("merger", author)
        g("merge", "-q", "--no-ff", "--no-edit", "-m", msg, topic, env=_ident(merger, date))
        g("branch", "-q", "-D", topic)
    else:
        raise SourceError(f"unknown commit kind {kind!r} (direct, merge, squash or "
                          "merge_branch)")


def _write_changes(root: Path, c: dict) -> None:
    for path in c.get("delete", []):
        (root / path).unlink()
    for path, content in c.get("files", {}).items():
        target = root / path
        target.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            target.write_bytes(content)
        else:
            target.write_text(content, encoding="utf-8")
    for path in c.get("executable", []):  # a mode change: git sees the executable bit
        os.chmod(root / path, 0o755)
    for edit in c.get("edits", []):
        target = root / edit["path"]
        text = target.read_text(encoding="utf-8")
        if text.count(edit["find"]) != 1:
            raise SourceError(f"edit of {edit['path']}: the text to find occurs "
                              f"{text.count(edit['find'])} times, expected once")
        target.write_text(text.replace(edit["find"], edit["replace"]), encoding="utf-8")


def _ident(who: str, date: str) -> dict[str, str]:
    name, _, email = who.partition("<")
    name, email = name.strip(), email.rstrip(">").strip() or "nobody@example.invalid"
    return {"GIT_AUTHOR_NAME": name, "GIT_AUTHOR_EMAIL": email, "GIT_AUTHOR_DATE": date,
            "GIT_COMMITTER_NAME": name, "GIT_COMMITTER_EMAIL": email, "GIT_COMMITTER_DATE": date}


class _Git:
    def __init__(self, root: Path):
        self.root = root

    def __call__(self, *args: str, env: dict[str, str] | None = None) -> str:
        full_env = {**os.environ, "GIT_CONFIG_NOSYSTEM": "1", "GIT_TERMINAL_PROMPT": "0",
                    **(env or {})}
        proc = subprocess.run(["git", *args], cwd=self.root, env=full_env,
                              capture_output=True, text=True)
        if proc.returncode != 0:
            raise SourceError(f"git {' '.join(args[:2])} failed: {proc.stderr.strip()[:300]}")
        return proc.stdout

    def commit(self, message: str, author: str, date: str) -> None:
        self("add", "-A")
        self("commit", "-q", "--allow-empty", "-m", message, env=_ident(author, date))
