"""The data types that flow between stages.

    source ──PullRequest──► filtering ──Decision──► rewrite ──Task──► queue ──► export

Every type that crosses a stage boundary lives here. Plain frozen dataclasses carry data
between stages; the task content (what an LLM writes, what a curator edits) is a pydantic
model because it is validated at the edges where it enters the system.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

FileStatus = Literal["added", "modified", "deleted", "renamed", "copied", "type_changed"]
SourceKind = Literal["git", "github", "demo"]
Rewriter = Literal["template", "llm"]
TaskStatus = Literal["pending", "approved", "rejected", "needs_edit", "skipped"]
TaskKind = Literal["pr", "chain"]  # one PR, or a chain of related PRs (chains.py)
RunStatus = Literal["running", "ok", "partial", "failed", "interrupted"]
Category = Literal[
    "algorithm", "app", "llm-app", "backend", "ui", "frontend",
    "build-deploy", "research", "data-processing", "debugging",
]
Difficulty = Literal["easy", "medium", "hard"]

# What each review action sets the task status to.
ACTION_STATUS: dict[str, TaskStatus] = {
    "approve": "approved",
    "reject": "rejected",
    "needs-edit": "needs_edit",
    "skip": "skipped",
}


@dataclass(frozen=True, slots=True)
class Repo:
    """A repository known to the queue."""

    owner: str
    name: str
    stars: int | None = None
    language: str | None = None
    license: str | None = None
    default_branch: str | None = None
    archived: bool = False
    fork: bool = False
    source: SourceKind = "git"

    @property
    def full_name(self) -> str:
        return f"{self.owner}/{self.name}"

    @classmethod
    def parse(cls, full_name: str, **kwargs) -> "Repo":
        owner, _, name = full_name.strip().partition("/")
        return cls(owner=owner, name=name, **kwargs)


@dataclass(frozen=True, slots=True)
class FileChange:
    """One file of a pull request.

    ``patch`` is the unified-diff text of the file (hunks only), or None when the file is
    binary, when the patch was not fetched (a GitHub metadata pass) or was too large to keep.
    ``patch_bytes`` is the size of the full patch as the source produced it, even when the
    stored text was cut (``patch_truncated``). ``undecodable`` is set when the patch was not
    valid UTF-8 and was decoded with replacement characters. ``old_mode``/``new_mode`` are
    git's file modes (``100644``, ``100755``, ``120000``) when the source knows them, so a
    whole git diff can be rebuilt from the hunks (patches.py).
    """

    path: str
    status: FileStatus
    additions: int
    deletions: int
    patch: str | None = None
    binary: bool = False
    old_path: str | None = None
    patch_bytes: int = 0
    patch_truncated: bool = False
    undecodable: bool = False
    old_mode: str | None = None
    new_mode: str | None = None


@dataclass(frozen=True, slots=True)
class LinkedIssue:
    number: int
    title: str
    body: str = ""


@dataclass(frozen=True, slots=True)
class PullRequest:
    """A merged pull request, from any source."""

    repo: str  # owner/name
    number: int
    title: str
    body: str
    author: str
    merged_at: datetime | None
    base_sha: str
    merge_sha: str
    url: str
    labels: tuple[str, ...] = ()
    linked_issues: tuple[LinkedIssue, ...] = ()
    files: tuple[FileChange, ...] = ()
    author_is_bot: bool = False
    head_sha: str | None = None
    source: SourceKind = "git"
    # Totals as the source reports them; when None they are summed from files.
    additions_total: int | None = None
    deletions_total: int | None = None
    changed_files_total: int | None = None
    # branch names when the source knows them (GitHub; a merge commit's "from owner/branch"):
    # a PR whose base is another PR's head is stacked on it (chains.py)
    head_ref: str | None = None
    base_ref: str | None = None

    @property
    def key(self) -> tuple[str, int]:
        return (self.repo, self.number)

    @property
    def additions(self) -> int:
        if self.additions_total is not None:
            return self.additions_total
        return sum(f.additions for f in self.files)

    @property
    def deletions(self) -> int:
        if self.deletions_total is not None:
            return self.deletions_total
        return sum(f.deletions for f in self.files)

    @property
    def changed_files(self) -> int:
        if self.changed_files_total is not None:
            return self.changed_files_total
        return len(self.files)


# reason codes that say something about a PR without dropping it
INFO_CODES = frozenset({
    "substantive", "has_tests", "binary_files", "non_utf8_patch", "patch_truncated",
    "patches_missing", "triage_substantive",
})


@dataclass(frozen=True, slots=True)
class Decision:
    """The filter's verdict on one PR, with every reason code that fired.

    Kept PRs carry reasons too (e.g. ``substantive``), so a curator can see why a PR was kept
    as well as why one was dropped. ``metrics`` holds the figures the rules looked at.
    """

    repo: str
    number: int
    kept: bool
    reasons: tuple[str, ...]
    filter_version: str
    metrics: dict = field(default_factory=dict, hash=False, compare=False)


@dataclass(frozen=True, slots=True)
class ChainLink:
    """Why two PRs of a chain belong together: ``kind`` is the signal (issue, reference,
    stacked, fix, revert, author), ``detail`` says what was seen, in words."""

    earlier: int
    later: int
    kind: str
    detail: str


@dataclass(frozen=True, slots=True)
class Chain:
    """A series of related merged PRs of one repository, in merge order, with the links that
    joined them and the chain's own verdict (kept when substantive as a whole)."""

    repo: str
    members: tuple[int, ...]
    links: tuple[ChainLink, ...]
    kept: bool
    reasons: tuple[str, ...]
    rules_version: str
    figures: dict = field(default_factory=dict, hash=False, compare=False)
    first_merged_at: datetime | None = None
    last_merged_at: datetime | None = None

    @property
    def chain_id(self) -> str:
        return chain_id(self.repo, self.members)


def chain_id(repo: str, members: tuple[int, ...] | list[int]) -> str:
    """A stable id for a chain: its repository and member PRs."""
    key = f"{repo}#" + ",".join(str(n) for n in members)
    return hashlib.sha256(key.encode()).hexdigest()[:16]


@dataclass(frozen=True, slots=True)
class Stage:
    """The reference change of one PR, as execution-based datasets ship it: ``patch`` (non-test
    files) and ``test_patch`` (test files) are whole git diffs that ``git apply`` accepts at
    ``base_commit``; ``tests_added`` names the tests the change adds or modifies (candidates
    for fail-to-pass checks). ``issues`` says why the change is not applicable when it is
    not (binary files, a truncated or missing patch, ...)."""

    number: int
    base_commit: str
    merge_commit: str
    patch: str
    test_patch: str
    tests_added: tuple[str, ...] = ()
    applicable: bool = True
    issues: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Reference:
    """A task's reference change: for one PR its only stage; for a chain the stages in order
    (each at its own base commit) and, at the top level, the stages as one series of diffs
    that applies at the first stage's base when the stages compose there."""

    patch: str
    test_patch: str
    tests_added: tuple[str, ...] = ()
    applicable: bool = True
    issues: tuple[str, ...] = ()
    stages: tuple[Stage, ...] = ()


def _text(n: int):
    return Annotated[str, Field(min_length=1, max_length=n)]


class Subtask(BaseModel):
    """One step of a task. Every list and string is bounded (see the README, "Rewriting with
    an LLM"): a good task never reaches a bound, and a grammar-constrained server stops there."""

    model_config = ConfigDict(extra="forbid")

    title: str = Field(min_length=1, max_length=120)
    goal: str = Field(min_length=1, max_length=600)
    constraints: list[_text(200)] = Field(min_length=1, max_length=8)
    deliverables: list[_text(200)] = Field(min_length=1, max_length=8)
    acceptance_criteria: list[_text(200)] = Field(min_length=1, max_length=8)

    @field_validator("constraints", "deliverables", "acceptance_criteria", mode="before")
    @classmethod
    def _no_blank_items(cls, items):
        if not isinstance(items, list):
            return items
        cleaned = [s.strip() if isinstance(s, str) else s for s in items
                   if not isinstance(s, str) or s.strip()]
        if not cleaned:
            raise ValueError("needs at least one non-empty item")
        return cleaned


class TaskSpec(BaseModel):
    """The content of a task: what a rewriter produces and a curator reviews or edits."""

    model_config = ConfigDict(extra="forbid")

    title: str = Field(min_length=1, max_length=200)
    category: Category
    background: str = Field(min_length=1, max_length=1000)
    query: str = Field(min_length=1, max_length=1000)
    subtasks: list[Subtask] = Field(min_length=2, max_length=6)
    modified_files: list[_text(200)] = Field(default_factory=list, max_length=60)
    related_files: list[_text(200)] = Field(default_factory=list, max_length=20)
    difficulty: Difficulty
    flags: list[_text(40)] = Field(default_factory=list, max_length=8)
    confidence: float = Field(default=0.5, ge=0.0, le=1.0)


@dataclass(frozen=True, slots=True)
class Provenance:
    """Where a task came from: enough to find the PR and check out its base."""

    repo: str
    pr_number: int
    pr_url: str
    base_sha: str
    merge_sha: str
    merged_at: datetime | None = None
    license: str | None = None


@dataclass(frozen=True, slots=True)
class Usage:
    """What producing a task cost."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0
    calls: int = 0


@dataclass(frozen=True, slots=True)
class Task:
    """A task ready for the queue: its content, who wrote it and where it came from."""

    spec: TaskSpec
    provenance: Provenance
    rewriter: Rewriter
    model: str | None
    prompt_version: str
    usage: Usage = field(default_factory=Usage)
    judge_score: float | None = None
    judge: dict | None = field(default=None, hash=False, compare=False)
    kind: TaskKind = "pr"
    members: tuple[int, ...] = ()  # the PRs of the task in merge order (a chain's members)
    chain_id: str | None = None
    reference: Reference | None = field(default=None, hash=False, compare=False)

    @property
    def task_id(self) -> str:
        return task_id(self.provenance.repo, self.provenance.pr_number,
                       self.prompt_version, self.rewriter, self.model, self.chain_id)


def task_id(repo: str, number: int, prompt_version: str, rewriter: str, model: str | None,
            chain: str | None = None) -> str:
    """A stable id for (repo, PR number, prompt version, rewriter/model); a chain's task is
    keyed by the chain instead of its first PR."""
    what = f"chain:{chain}" if chain else str(number)
    key = f"{repo}#{what}|{prompt_version}|{rewriter}|{model or ''}"
    return hashlib.sha256(key.encode()).hexdigest()[:16]


@dataclass(frozen=True, slots=True)
class Failure:
    """A PR or repository a stage could not handle: recorded, never silently dropped."""

    stage: str  # source, filter, rewrite, queue
    reason: str  # a stable code, e.g. not_found, invalid_output, empty_history
    message: str
    repo: str | None = None
    number: int | None = None
    detail: str = ""
    transient: bool = False
    usage: "Usage | None" = None  # what LLM calls the failed attempt made and cost


@dataclass(frozen=True, slots=True)
class Cursor:
    """Incremental crawl state of one repository for one source (kept in the queue)."""

    repo: str
    source: SourceKind
    watermark: str | None = None
    cursor: str | None = None
    state: dict = field(default_factory=dict, hash=False, compare=False)


@dataclass(slots=True)
class Batch:
    """Everything one step of a run writes to the queue, in one transaction.

    A batch is spooled to disk before it is ingested, so a busy or crashed queue loses
    nothing: ingesting the same batch twice gives the same rows.
    """

    run_id: str | None = None
    repos: list[Repo] = field(default_factory=list)
    pull_requests: list[PullRequest] = field(default_factory=list)
    decisions: list[Decision] = field(default_factory=list)
    tasks: list[Task] = field(default_factory=list)
    failures: list[Failure] = field(default_factory=list)
    resolved: list[tuple[str, str, int]] = field(default_factory=list)  # (stage, repo, number)
    cursors: list[Cursor] = field(default_factory=list)
    chains: list[Chain] = field(default_factory=list)
    chain_repos: list[str] = field(default_factory=list)  # repos whose chains are replaced whole
    run: dict | None = None  # the run record as it stands
    # counter deltas (slash keys) the run's stats take on when this batch is written; they
    # travel with the rows they count, so the run record never counts what was not saved
    counts: dict[str, int] = field(default_factory=dict)

    def __len__(self) -> int:
        """Rows the batch writes (counts alone write nothing)."""
        return (len(self.repos) + len(self.pull_requests) + len(self.decisions)
                + len(self.tasks) + len(self.failures) + len(self.resolved)
                + len(self.cursors) + len(self.chains) + len(self.chain_repos)
                + (1 if self.run else 0))


def merge_batches(batches: list[Batch]) -> list[Batch]:
    """Back-to-back batches as few as possible, each writing the same rows as its parts
    written one after another (upserts: the last row of a key wins; the latest run record).

    Two batches stay apart when the later one records a failure that the earlier one
    resolves or records too: in one transaction failures are written before resolutions,
    and a repeated failure counts one attempt per batch.
    """
    if len(batches) < 2:
        return list(batches)
    out: list[Batch] = []
    resolved: set[tuple] = set()
    failed: set[tuple] = set()
    for b in batches:
        keys = {(f.stage, f.repo or "", f.number or 0) for f in b.failures}
        cur = out[-1] if out else None
        if cur is None or cur.run_id != b.run_id or keys & (resolved | failed):
            cur = Batch(run_id=b.run_id)
            out.append(cur)
            resolved, failed = set(), set()
        cur.repos += b.repos
        cur.pull_requests += b.pull_requests
        cur.decisions += b.decisions
        cur.tasks += b.tasks
        cur.failures += b.failures
        cur.resolved += b.resolved
        cur.cursors += b.cursors
        if b.chain_repos:  # a later detection replaces what an earlier one found
            cur.chains = [c for c in cur.chains if c.repo not in set(b.chain_repos)]
            cur.chain_repos += [r for r in b.chain_repos if r not in cur.chain_repos]
        cur.chains += b.chains
        cur.run = b.run or cur.run
        for k, n in b.counts.items():
            cur.counts[k] = cur.counts.get(k, 0) + n
        resolved |= {(st, r or "", n or 0) for st, r, n in b.resolved}
        failed |= keys
    return out


@dataclass
class SourceBatch:
    """What a source hands the pipeline: new PRs, and the cursor to save with them."""

    prs: list[PullRequest]
    repo: Repo | None = None
    cursor: Cursor | None = None
    failures: list[Failure] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)
    total: int | None = None  # PRs this source expects to hand over for the repo, if known


@dataclass(slots=True)
class RunSummary:
    """What one run did, for the run record and the printed summary."""

    run_id: str
    status: RunStatus = "running"
    counts: dict[str, int] = field(default_factory=dict)
    failures: list[Failure] = field(default_factory=list)

    def inc(self, key: str, n: int = 1) -> None:
        self.counts[key] = self.counts.get(key, 0) + n

    def take(self, batch: "Batch") -> None:
        """A written batch's counters and failures become the run's."""
        for k, n in batch.counts.items():
            self.counts[k] = self.counts.get(k, 0) + n
        for f in batch.failures:
            self.failures.append(f)
            self.inc(f"{f.stage}/failed/{f.reason}")


@dataclass(slots=True)
class DedupeResult:
    signed: int = 0  # tasks that got signatures now
    flagged: dict[str, int] = field(default_factory=dict)  # kind -> tasks flagged as twins
