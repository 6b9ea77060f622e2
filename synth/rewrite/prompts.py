"""Pure prompt rendering: versioned templates in prompts/, PR material scrubbed and fenced,
the patch cut to a token budget by whole hunks (source first, tests and lockfiles last)."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from ..errors import ConfigError
from ..filtering import Rules
from ..models import PullRequest
from ..paths import prompts_dir
from .guards import fence, scrub

_PLACEHOLDER = re.compile(r"\{\{(\w+)\}\}")
# file class -> order in the patch section (lower first); missing classes go last
_CLASS_ORDER = {"code": 0, "build": 1, "ci": 2, "tests": 3, "docs": 4, "assets": 5,
                "generated": 6, "vendored": 6, "lockfile": 7}


def estimate_tokens(text: str) -> int:
    return (len(text) + 3) // 4


@lru_cache(maxsize=32)
def load_template(version: str, role: str, folder: str | None = None) -> str:
    path = Path(folder) if folder else prompts_dir()
    file = path / f"{version}.{role}.md"
    try:
        return file.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"prompt template not found: {file} (prompt version {version!r})") from None


def render(template: str, values: dict[str, str]) -> str:
    missing = sorted(set(_PLACEHOLDER.findall(template)) - set(values))
    if missing:
        raise ConfigError(f"prompt template needs values for {', '.join(missing)}")
    return _PLACEHOLDER.sub(lambda m: values[m.group(1)], template)


@dataclass(frozen=True)
class PatchCut:
    text: str
    tokens: int
    hunks_kept: int
    hunks_cut: int
    files_cut: tuple[str, ...]


def _hunks(patch: str) -> list[str]:
    out: list[str] = []
    for line in patch.splitlines(keepends=True):
        if line.startswith("@@") or not out:
            out.append(line)
        else:
            out[-1] += line
    return out


def cut_patch(pr: PullRequest, rules: Rules, budget_tokens: int) -> PatchCut:
    """The PR's patch as whole hunks within ``budget_tokens``, source files first."""
    files = sorted(pr.files, key=lambda f: (_CLASS_ORDER.get(rules.classify(f.path), 8), f.path))
    parts: list[str] = []
    used = kept = cut = 0
    files_cut: list[str] = []
    for f in files:
        if f.binary or not f.patch:
            if f.binary:
                parts.append(f"--- {f.path} (binary file, {f.status})\n")
            continue
        header = f"--- {f.path} ({f.status}, +{f.additions} -{f.deletions})\n"
        hunks = _hunks(scrub(f.patch))
        took = 0
        for h in hunks:
            cost = estimate_tokens(h) + (estimate_tokens(header) if took == 0 else 0)
            if used + cost > budget_tokens:
                cut += 1
                continue
            if took == 0:
                parts.append(header)
            parts.append(h if h.endswith("\n") else h + "\n")
            used += cost
            took += 1
            kept += 1
        if took == 0:
            files_cut.append(f.path)
    text = "".join(parts)
    if cut:
        note = f"[{cut} hunk(s) cut to fit the budget"
        if files_cut:
            shown = ", ".join(files_cut[:10]) + (" ..." if len(files_cut) > 10 else "")
            note += f"; files left out entirely: {shown}"
        text += note + "]\n"
    return PatchCut(text, used, kept, cut, tuple(files_cut))


def _schema_text(schema: dict) -> str:
    """The schema as prompt text (a few microseconds: no cache needed)."""
    return json.dumps(schema, indent=1)


def task_messages(pr: PullRequest, rules: Rules, *, version: str, schema: dict,
                  budget_tokens: int, language: str | None = None,
                  prompts_dir: str | None = None) -> tuple[list[dict], PatchCut]:
    """System and user messages for one PR; all PR material scrubbed and fenced. Templates come
    from ``prompts_dir`` when given, else from the prompts shipped with synth."""
    patch = cut_patch(pr, rules, budget_tokens)
    issues = "\n\n".join(f"#{i.number} {scrub(i.title)}\n{scrub(i.body)}" for i in pr.linked_issues)
    file_list = "\n".join(
        f"- {f.path} ({f.status}, +{f.additions} -{f.deletions}{', binary' if f.binary else ''})"
        for f in pr.files[:200])
    if len(pr.files) > 200:
        file_list += f"\n- ... and {len(pr.files) - 200} more files"
    values = {
        "repo": pr.repo, "language": language or "unknown",
        "pull_request": fence("pull_request", f"Title: {scrub(pr.title).replace(chr(10), ' ')}"
                              f"\n\n{scrub(pr.body) or '(no description)'}"),
        "linked_issues": fence("linked_issues", issues) if issues else "",
        "file_count": str(len(pr.files)), "additions": str(pr.additions),
        "deletions": str(pr.deletions),
        "file_list": fence("file_list", file_list),
        "patch": fence("patch", patch.text or "(no patch text available)"),
        "schema": _schema_text(schema),
    }
    system = load_template(version, "system", prompts_dir)
    user = render(load_template(version, "user", prompts_dir), values)
    return [{"role": "system", "content": system}, {"role": "user", "content": user}], patch


def chain_messages(prs: list[PullRequest], rules: Rules, *, version: str, schema: dict,
                   budget_tokens: int, language: str | None = None,
                   prompts_dir: str | None = None) -> list[dict]:
    """System and user messages for a chain of PRs (merge order): each PR as one step, its
    text, files and patch (the budget shared out), all scrubbed and fenced."""
    per = max(200, budget_tokens // max(1, len(prs)))
    steps = []
    for i, pr in enumerate(prs, 1):
        patch = cut_patch(pr, rules, per)
        issues = "\n\n".join(f"#{x.number} {scrub(x.title)}\n{scrub(x.body)}"
                             for x in pr.linked_issues)
        files = "\n".join(f"- {f.path} ({f.status}, +{f.additions} -{f.deletions})"
                          for f in pr.files[:100])
        steps.append("\n\n".join(filter(None, [
            f"Step {i} of {len(prs)} (+{pr.additions} -{pr.deletions}, {len(pr.files)} files):",
            fence(f"step_{i}", f"Title: {scrub(pr.title).replace(chr(10), ' ')}\n\n"
                  f"{scrub(pr.body) or '(no description)'}"),
            fence(f"linked_issues_{i}", issues) if issues else "",
            fence(f"file_list_{i}", files),
            fence(f"patch_{i}", patch.text or "(no patch text available)")])))
    values = {"repo": prs[0].repo, "language": language or "unknown",
              "stage_count": str(len(prs)), "stages": "\n\n".join(steps),
              "schema": _schema_text(schema)}
    system = load_template(version, "system", prompts_dir)
    user = render(load_template(version, "user", prompts_dir), values)
    return [{"role": "system", "content": system}, {"role": "user", "content": user}]
