"""The offline rewriter: a deterministic Task from PR metadata alone, no model.

It never reads patch text, so it cannot leak the solution; it is stored with
rewriter='template' and no model, and flagged ``template``, so nobody mistakes it for LLM
output. Files are grouped by folder into 2-6 subtasks; test files become acceptance criteria.
"""

from __future__ import annotations

import re
from collections import OrderedDict
from pathlib import PurePosixPath

from ..filtering import Rules
from ..models import Failure, Provenance, PullRequest, Subtask, Task, TaskSpec
from ..patches import tests_added
from .guards import scrub

PROMPT_VERSION = "template_v1"
CHAIN_PROMPT_VERSION = "template_chain_v1"
_CLOSES = re.compile(r"(?i)\b(?:close[sd]?|fix(?:e[sd])?|resolve[sd]?)\s+#\d+\b[.,]?")
_MD_NOISE = re.compile(r"(?m)^\s*(?:<!--.*?-->|- \[[ x]\].*)\s*$")


def rewrite(pr: PullRequest, rules: Rules, license: str | None = None) -> Task:
    classes = {f.path: rules.classify(f.path) for f in pr.files}
    code = [f for f in pr.files if classes[f.path] == "code" and f.status != "deleted"]
    tests = [f.path for f in pr.files if classes[f.path] == "tests" and f.status != "deleted"]
    others = [f for f in pr.files if classes[f.path] not in ("code", "tests")]
    groups = _group(code or others or list(pr.files))
    title = scrub(_clean_title(pr.title))
    background = _background(pr)
    subtasks = [_subtask(name, paths, title, tests) for name, paths in groups]
    if len(subtasks) < 2:
        subtasks.append(Subtask(
            title="Cover the change with tests",
            goal=_cut(f"Show that the change works: {title}.", 600),
            constraints=["Tests run with the project's existing test runner",
                         "Existing tests keep passing"],
            deliverables=[_cut(t, 200) for t in tests[:8]]
            or ["New or updated tests next to the existing ones"],
            acceptance_criteria=[_cut(f"`{t}` passes", 200) for t in tests[:8]]
            or ["A test fails before the change and passes after it"]))
    changed = sum(f.additions + f.deletions for f in code) or pr.additions + pr.deletions
    spec = TaskSpec(
        title=_cut(title, 200),
        category=_category(pr, classes),
        background=_cut(background, 1000),
        query=_cut(_query(pr, title, background), 1000),
        subtasks=subtasks[:6],
        modified_files=[_cut(f.path, 200) for f in pr.files if f.status != "deleted"][:50],
        related_files=[_cut(p, 200) for p in sorted(
            {str(PurePosixPath(f.path).parent) for f in pr.files} - {"."})][:20],
        difficulty="easy" if changed < 80 else "medium" if changed < 300 else "hard",
        flags=["template"],
        confidence=0.3,
    )
    prov = Provenance(repo=pr.repo, pr_number=pr.number, pr_url=pr.url, base_sha=pr.base_sha,
                      merge_sha=pr.merge_sha, merged_at=pr.merged_at, license=license)
    return Task(spec=spec, provenance=prov, rewriter="template", model=None,
                prompt_version=PROMPT_VERSION)


def rewrite_chain(prs: list[PullRequest], chain_id: str, rules: Rules,
                  license: str | None = None) -> Task:
    """A chain of PRs (merge order) as one task: one subtask per PR, in order, each building
    on the one before, its acceptance criteria from that PR's tests where it has them."""
    first, last = prs[0], prs[-1]
    titles = [scrub(_clean_title(p.title)) for p in prs]
    subtasks = []
    for i, (pr, title) in enumerate(zip(prs[:6], titles)):
        tests = [f.path for f in pr.files if rules.classify(f.path) == "tests"
                 and f.status != "deleted"]
        named = [n for f in pr.files if f.path in tests for n in tests_added(f.path, f.patch)]
        goal = (f"Start the work: {title}." if i == 0 else
                f"Building on the previous step ({_cut(titles[i - 1], 150)}): {title}.")
        subtasks.append(Subtask(
            title=_cut(f"Step {i + 1}: {title}", 120), goal=_cut(goal, 600),
            constraints=["Keep what the earlier steps introduced working",
                         "Follow the code style of the surrounding files"],
            deliverables=[_cut(f.path, 200) for f in pr.files if f.status != "deleted"][:8]
            or ["The change described in the goal"],
            acceptance_criteria=[_cut(f"`{n}` passes", 200) for n in named[:8]]
            or [_cut(f"`{t}` passes", 200) for t in tests[:8]]
            or ["The project's existing test suite passes"]))
    repo = first.repo.split("/", 1)[-1]
    steps = "; ".join(f"{i}. {t}" for i, t in enumerate(titles, 1))
    background = "\n\n".join(f"Step {i}: {_background(p)}" for i, p in enumerate(prs, 1))
    classes = {f.path: rules.classify(f.path) for p in prs for f in p.files}
    changed = sum(f.additions + f.deletions for p in prs for f in p.files
                  if classes[f.path] == "code") or sum(p.additions + p.deletions for p in prs)
    spec = TaskSpec(
        title=_cut(f"{titles[0]}, then {len(prs) - 1} follow-up step(s)", 200),
        category=_category(first, classes),
        background=_cut(background, 1000),
        query=_cut(f"In the {repo} codebase{_CHAIN_OPENING} {steps}. {_CHAIN_CLOSING}", 1000),
        subtasks=subtasks,
        modified_files=list(dict.fromkeys(_cut(f.path, 200) for p in prs for f in p.files
                                          if f.status != "deleted"))[:50],
        related_files=[_cut(p, 200) for p in sorted(
            {str(PurePosixPath(f.path).parent) for p in prs for f in p.files} - {"."})][:20],
        difficulty="medium" if changed < 300 else "hard",
        flags=["template", "chain"],
        confidence=0.3,
    )
    prov = Provenance(repo=first.repo, pr_number=first.number, pr_url=first.url,
                      base_sha=first.base_sha, merge_sha=last.merge_sha,
                      merged_at=last.merged_at, license=license)
    return Task(spec=spec, provenance=prov, rewriter="template", model=None,
                prompt_version=CHAIN_PROMPT_VERSION, kind="chain",
                members=tuple(p.number for p in prs), chain_id=chain_id)


def _group(files) -> list[tuple[str, list[str]]]:
    """Files grouped by folder (two levels deep), merged down to at most 6 groups."""
    groups: "OrderedDict[str, list[str]]" = OrderedDict()
    for f in sorted(files, key=lambda f: f.path):
        parts = PurePosixPath(f.path).parts
        key = "/".join(parts[:2]) if len(parts) > 2 else (parts[0] if len(parts) > 1 else ".")
        groups.setdefault(key, []).append(f.path)
    items = list(groups.items())
    if len(items) == 1 and len(items[0][1]) > 1:  # one folder: one subtask per file, up to 6
        name, paths = items[0]
        items = [(p, [p]) for p in paths]
    while len(items) > 6:  # merge the two smallest neighbouring groups
        i = min(range(len(items) - 1), key=lambda j: len(items[j][1]) + len(items[j + 1][1]))
        (a, pa), (b, pb) = items[i], items[i + 1]
        items[i:i + 2] = [(f"{a}, {b}", pa + pb)]
    return items


def _subtask(name: str, paths: list[str], title: str, tests: list[str]) -> Subtask:
    where = name if name != "." else "the project root"
    return Subtask(
        title=_cut(f"Change {where}", 120),
        goal=_cut(f"Make the part of '{title}' that lives in {where}.", 600),
        constraints=["Keep the existing public behaviour unless the request changes it",
                     "Follow the code style of the surrounding files"],
        deliverables=[_cut(p, 200) for p in paths[:8]],
        acceptance_criteria=[_cut(f"`{t}` passes", 200) for t in tests[:5]]
        or ["The project's existing test suite passes"])


def _cut(text: str, limit: int) -> str:
    """``text`` within the task schema's bound for its field (models.TaskSpec)."""
    return text if len(text) <= limit else text[:limit - 1].rstrip() + "…"


def _clean_title(title: str) -> str:
    t = re.sub(r"^\s*(?:\[[^\]]*\]\s*|\w+(?:\([^)]*\))?!?:\s*)", "", title or "").strip()
    return (t[:1].upper() + t[1:]) if t else (title or "Untitled change")


def _background(pr: PullRequest) -> str:
    body = _MD_NOISE.sub("", pr.body or "")
    body = _CLOSES.sub("", body).strip()
    parts = [scrub(body)] if body else []
    for issue in pr.linked_issues:
        parts.append(f"Related issue: {scrub(issue.title)}\n{scrub(issue.body).strip()}".strip())
    return "\n\n".join(parts) or NO_DESCRIPTION


NO_DESCRIPTION = "No description was given with the change."
_CLOSING = "Work through the subtasks in order and keep the existing tests passing."
_CHAIN_OPENING = ", carry out this series of changes in order, each building on the one before:"
_CHAIN_CLOSING = "Keep the existing tests passing after every step."
# the fixed sentences of every query this rewriter writes (distinctive() takes them out)
_FIXED = re.compile("|".join([r"^In the [\w.-]+ codebase[:,]\s*", re.escape(NO_DESCRIPTION),
                              re.escape(_CLOSING), re.escape(_CHAIN_OPENING.lstrip(", ")),
                              re.escape(_CHAIN_CLOSING)]))


def distinctive(query: str) -> str:
    """A query without the sentences this rewriter puts in every query ("In the x codebase:",
    "No description was given ...", "Work through the subtasks ..."): what near-duplicate
    detection compares, so that two tasks are not twins for sharing the template's words."""
    return _FIXED.sub(" ", query or "").strip()


def _query(pr: PullRequest, title: str, background: str) -> str:
    first = background.split("\n\n", 1)[0].strip()
    repo = pr.repo.split("/", 1)[-1]
    return f"In the {repo} codebase: {title}.\n\n{first}\n\n{_CLOSING}"


def _category(pr: PullRequest, classes: dict[str, str]) -> str:
    text = f"{pr.title} {' '.join(pr.labels)}".lower()
    paths = [p for p, c in classes.items() if c == "code"]
    if re.search(r"\b(fix|bug|crash|regression|error|broken)\b", text):
        return "debugging"
    if any(c in ("ci", "build") for c in classes.values()) and not paths:
        return "build-deploy"
    exts = {PurePosixPath(p).suffix for p in paths}
    if exts & {".tsx", ".jsx", ".vue", ".svelte", ".css", ".scss", ".html"}:
        return "frontend"
    if re.search(r"\b(ui|widget|button|dialog|render)\b", text):
        return "ui"
    if re.search(r"\b(parse|parser|csv|json|etl|dataframe|data)\b", text):
        return "data-processing"
    if re.search(r"\b(algorithm|sort|graph|tree|cache|hash)\b", text):
        return "algorithm"
    return "backend"


class TemplateRewriter:
    """The offline rewriter as the pipeline calls it."""

    name = "template"
    model = None

    def __init__(self, rules: Rules):
        self.rules = rules
        self.prompt_version = PROMPT_VERSION
        self.chain_prompt_version = CHAIN_PROMPT_VERSION

    concurrency = 1  # pure and quick: no pool needed

    def rewrite_one(self, pr: PullRequest, license: str | None = None,
                    language: str | None = None) -> Task | Failure:
        from pydantic import ValidationError
        try:
            return rewrite(pr, self.rules, license)
        except ValidationError as exc:
            return Failure("rewrite", "invalid_output", f"template task invalid: {exc}",
                           repo=pr.repo, number=pr.number)

    def rewrite_chain(self, prs: list[PullRequest], chain_id: str, license: str | None = None,
                      language: str | None = None) -> Task | Failure:
        from pydantic import ValidationError
        try:
            return rewrite_chain(prs, chain_id, self.rules, license)
        except ValidationError as exc:
            return Failure("chain", "invalid_output", f"template chain task invalid: {exc}",
                           repo=prs[0].repo, number=prs[0].number)

    def rewrite_many(self, prs: list[PullRequest], licenses: dict[str, str | None]
                     ) -> list[Task | Failure]:
        return [self.rewrite_one(pr, licenses.get(pr.repo)) for pr in prs]
