"""Local git source: the merged PRs anywhere in a clone's history.

A PR shows in history as either
- a merge commit "Merge pull request #N from owner/branch" (its change is the diff against the
  first parent, its title the first line of the message body), or
- a squash commit whose subject ends in "(#N)".

Every commit reachable from any local or remote branch is looked at (``--ref`` narrows that to
one ref), so a PR merged into a maintenance branch, on the second-parent side of a merge, or on
a branch never merged into the default one is found too. A PR number seen on several commits
(merged into a maintenance branch, then merged forward; a squash commit cherry-picked onto a
release branch) is one PR, taken at its own merge: a "Merge pull request #N" commit before a
"(#N)" subject, and the earliest such commit.

History is read through two streaming git processes, whatever its length: one cheap pass
lists the commits whose message may name a PR (``git log --grep``) and picks out the PRs; a
second streams the patches of only the PRs wanted (``git log --no-walk --stdin -p``), parsed as
they arrive. Beside them, ``rev-list --parents`` gives the commit graph that stacked PRs need,
and one more ``log`` the authors of merge heads.
"""

from __future__ import annotations

import dataclasses
import logging
import re
import subprocess
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Iterable, Iterator

import git  # GitPython

from ..clock import Clock
from ..errors import EmptyHistory, NotAGitRepository, SourceError
from ..models import Cursor, Failure, FileChange, PullRequest, Repo, SourceBatch
from .gitpatch import MAX_PATCH_KEEP, drained, parse_log_patches  # noqa: F401 (re-exported)

log = logging.getLogger(__name__)
# a first crawl that finds fewer PRs than this share of the history's commits (and the
# history has at least FEW_PRS_MIN_COMMITS) says why: the project keeps no PR numbers in git
FEW_PRS_SHARE = 0.05
FEW_PRS_MIN_COMMITS = 500

MAX_UNREADABLE = 10  # commits in a row whose diff git cannot read: then the repository fails
# what git's --grep keeps for the listing: every message that may hold a PR subject
_PR_GREP = ("-E", "--grep=^Merge pull request #[0-9]", "--grep=\\(#[0-9]+\\)[[:space:]]*$")
MERGE_RE = re.compile(r"^Merge pull request #(\d+)\b(?: from (\S+))?")
SQUASH_RE = re.compile(r"\(#(\d+)\)\s*$")
REMOTE_RE = re.compile(r"(?:github\.com|[\w.-]+)[:/]+([\w.-]+)/([\w.-]+?)(?:\.git)?/?$")

# file extension -> language, as GitHub names it (for the prompt's "primary language")
LANGUAGE_NAMES = {
    "py": "Python", "go": "Go", "js": "JavaScript", "mjs": "JavaScript", "jsx": "JavaScript",
    "ts": "TypeScript", "tsx": "TypeScript", "rs": "Rust", "java": "Java", "kt": "Kotlin",
    "rb": "Ruby", "php": "PHP", "c": "C", "h": "C", "cc": "C++", "cpp": "C++", "hpp": "C++",
    "cs": "C#", "swift": "Swift", "scala": "Scala", "ex": "Elixir", "exs": "Elixir",
    "dart": "Dart", "lua": "Lua", "r": "R", "jl": "Julia", "hs": "Haskell", "clj": "Clojure",
}
_SEP = "\x1e"  # record separator between commits in the listing pass


@dataclass(frozen=True, slots=True)
class PRCommit:
    """A commit that carries a PR."""

    sha: str
    parents: tuple[str, ...]
    number: int
    title: str
    body: str
    author: str
    merged_at: datetime
    style: str  # merge | squash
    head_ref: str | None = None  # the branch of "Merge pull request #N from owner/BRANCH"
    base_ref: str | None = None  # the head branch of the PR this one was merged into


class GitSource:
    """Reads PRs from a local clone (bare or not)."""

    def __init__(self, path: str | Path, repo_name: str | None = None, ref: str | None = None,
                 clock: Clock | None = None):
        self.path = Path(path)
        self.clock = clock or Clock()
        if not self.path.exists():
            raise SourceError(f"no such path: {self.path}")
        try:
            self._repo = git.Repo(self.path)
        except (git.InvalidGitRepositoryError, git.NoSuchPathError):
            raise NotAGitRepository(f"{self.path} is not a git repository") from None
        self.git_dir = Path(self._repo.git_dir)
        self.ref = ref
        self.repo_name = repo_name or self._name_from_remote()
        if not self.repo_name or "/" not in self.repo_name:
            raise SourceError(
                f"cannot tell the repository's name for {self.path}: it has no GitHub origin "
                "remote; pass --repo owner/name")
        if ref is not None:
            proc = subprocess.run(["git", "--git-dir", str(self.git_dir), "rev-parse", "--verify",
                                   "--quiet", f"{ref}^{{commit}}"], capture_output=True, text=True)
            if proc.returncode != 0:
                raise EmptyHistory(f"{self.path} has no commits on {ref}")
        else:
            proc = subprocess.run(["git", "--git-dir", str(self.git_dir), "for-each-ref",
                                   "--count=1", "--format=%(objectname)", "refs/heads",
                                   "refs/remotes"], capture_output=True, text=True)
            if proc.returncode != 0 or not proc.stdout.strip():
                raise EmptyHistory(f"{self.path} has no commits on any branch")

    @property
    def revisions(self) -> list[str]:
        """What the listing pass walks: one ref, or every local and remote branch."""
        return [self.ref] if self.ref is not None else ["--branches", "--remotes", "--tags"]

    @property
    def repo(self) -> Repo:
        branch = None
        try:
            branch = self._repo.head.reference.name
        except (TypeError, ValueError):
            pass
        return Repo.parse(self.repo_name, default_branch=branch, source="git",
                          language=self.primary_language())

    def primary_language(self) -> str | None:
        """The language most of the tracked source files are in (by file name), as GitHub
        names it; None when no known source file is tracked. One `git ls-tree`."""
        try:
            out = self._git("ls-tree", "-r", "--name-only", self.ref or "HEAD")
        except SourceError:
            return None
        counts: dict[str, int] = {}
        for path in out.splitlines():
            lang = LANGUAGE_NAMES.get(path.rpartition(".")[2].lower()) if "." in path else None
            if lang:
                counts[lang] = counts.get(lang, 0) + 1
        return max(counts, key=lambda k: (counts[k], k)) if counts else None

    def _name_from_remote(self) -> str | None:
        try:
            url = self._repo.remotes.origin.url
        except (AttributeError, IndexError, ValueError):
            return None
        m = REMOTE_RE.search(url.strip())
        return f"{m.group(1)}/{m.group(2)}" if m else None

    # -- pass 1: which commits are PRs

    def list_pr_commits(self, fix_authors: bool = True) -> list[PRCommit]:
        """Every PR in the history, one commit per PR number (see the module docstring),
        newest merge first, stacked PRs with their base_ref; two git processes (the PRs and
        the commit graph), three with ``fix_authors`` (see ``head_authors``)."""
        commits, stack_bases = self.listing()
        bases = stack_bases(commits)
        commits = [_with_base(c, bases) for c in commits]
        if fix_authors:
            authors = self.head_authors(commits)
            commits = [_with_author(c, authors) for c in commits]
        return commits

    def listing(self) -> tuple[list[PRCommit], Callable[[list[PRCommit]], dict[str, str]]]:
        """Every PR's commit as ``list_pr_commits`` (without base_ref and the authors of
        merge heads), and a function that answers the base_ref of the stacked ones among
        given commits (sha -> base_ref: it asks git, so a caller may run it meanwhile).

        git itself picks the commits whose message may name a PR (``--grep``, a superset of
        the subjects ``_pr_commit`` accepts), so only those are read here; the commit graph
        that stacking needs comes from ``rev-list --parents`` on a thread of its own."""
        graph = _Background(self._graph)
        fmt = _SEP + "%H%x00%P%x00%an%x00%ct%x00%s%x00%b"
        out = self._git("log", *_PR_GREP, f"--format={fmt}", *self.revisions, "--")
        best: dict[int, PRCommit] = {}
        for record in out.split(_SEP)[1:]:
            sha, parents, author, date, subject, body = record.split("\x00", 5)
            pr = _pr_commit(sha, parents.split(), author, date, subject, body.strip())
            if pr is not None:
                have = best.get(pr.number)
                if have is None or _rank(pr) < _rank(have):
                    best[pr.number] = pr
        commits = sorted(best.values(), key=lambda c: (c.merged_at, c.number), reverse=True)
        heads = {c.parents[1]: c for c in commits
                 if c.style == "merge" and len(c.parents) > 1 and c.head_ref}

        def stack_bases(some: list[PRCommit]) -> dict[str, str]:
            g = graph.result()
            return _stack_bases(some, heads, g.child, g.is_ancestor)
        return commits, stack_bases

    def commit_count(self) -> int:
        """How many commits the history holds (its revisions: every branch, or --ref)."""
        return int(self._git("rev-list", "--count", *self.revisions, "--").strip() or 0)

    def _graph(self) -> "_Graph":
        """The history's commit graph, in topological order (one git process)."""
        return _Graph(self._git("rev-list", "--parents", "--topo-order", *self.revisions,
                                "--").splitlines())

    def head_authors(self, commits: list[PRCommit]) -> dict[str, str]:
        """A merge commit's author is whoever pressed the button; the PR's author is the
        author of its head (second parent): merge sha -> that author. One git process."""
        heads = {c.parents[1]: c.sha for c in commits if c.style == "merge" and len(c.parents) > 1}
        if not heads:
            return {}
        out = self._git("log", "--no-walk", "--stdin", "--format=%H%x00%an",
                        input="\n".join(heads) + "\n")
        return {heads[sha]: name for sha, _, name in
                (line.partition("\x00") for line in out.splitlines()) if sha in heads}

    # -- pass 2: patches of the wanted PRs, streamed

    def pull_requests(self, commits: Iterable[PRCommit],
                      authors: "Callable[[], dict[str, str]] | None" = None,
                      bases: "Callable[[], dict[str, str]] | None" = None,
                      unreadable: "list[Failure] | None" = None) -> Iterator[PullRequest]:
        """Full PRs (files, stats, patches) for the given commits, in the order given.
        ``authors`` and ``bases``, when given, answer ``head_authors`` and the stacked PRs'
        base_ref for commits listed without them (``listing``); they are asked once the
        patches are under way (so they may run meanwhile).

        A commit whose diff git cannot read (an object missing from a partial or damaged
        clone) is never handed over as a PR: with ``unreadable``, it goes there as a Failure
        and git starts again after it (the PRs after it are read all the same; after
        MAX_UNREADABLE such commits in a row, SourceError); without, SourceError."""
        commits = list(commits)
        names: dict[str, str] | None = None
        stacked: dict[str, str] | None = None

        def to_pr(c: PRCommit, files: tuple[FileChange, ...]) -> PullRequest:
            nonlocal names, stacked
            if names is None:
                names = authors() if authors is not None else {}
                stacked = bases() if bases is not None else {}
            return self._to_pr(_with_base(_with_author(c, names), stacked), files)

        in_a_row = 0
        while commits:
            failed = yield from self._stream(commits, to_pr)
            if failed is None:
                return
            c, err, done = failed
            in_a_row = 1 if done else in_a_row + 1
            message = (f"git cannot read the diff of {c.sha[:12]} (PR #{c.number}) in "
                       f"{self.path}: {err}")
            if unreadable is None or in_a_row >= MAX_UNREADABLE:
                more = (f" ({in_a_row} commits in a row: are objects missing from this "
                        "clone, a partial or shallow one? `git fetch` them, or run "
                        "`git fsck`)") if in_a_row > 1 else ""
                raise SourceError(message + more)
            unreadable.append(Failure("source", "unreadable_diff", message, repo=self.repo_name,
                                      number=c.number, detail=err))
            commits = commits[commits.index(c) + 1:]

    def _stream(self, commits: list[PRCommit], to_pr) -> Iterator[PullRequest]:
        """One git process over ``commits``: their PRs, in order. Returns None when git
        read them all, or (the commit git failed on, git's message, how many PRs came
        before it) when git failed in the middle of a commit's diff; every commit before
        that one was handed over whole, that one is not (its record may be cut short)."""
        by_sha = {c.sha: c for c in commits}
        files_by_sha: dict[str, tuple[FileChange, ...]] = {}
        proc = subprocess.Popen(
            ["git", "--git-dir", str(self.git_dir), "-c", "core.quotePath=false",
             "log", "--no-walk=unsorted", "--stdin", "--diff-merges=first-parent", "-M",
             "-p", "--no-color", "--no-ext-diff", "--format=%x00%x00synth-commit%x00%H"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        assert proc.stdin and proc.stdout
        proc.stdin.write(("\n".join(by_sha) + "\n").encode())
        proc.stdin.close()
        blocks = drained(proc.stdout, self.clock)
        done = 0
        try:
            order = iter(commits)
            pending: PRCommit | None = next(order)
            last: tuple[str, tuple[FileChange, ...]] | None = None  # whole once the next begins
            for record in parse_log_patches(blocks):
                if last is not None:
                    files_by_sha[last[0]] = last[1]
                    while pending is not None and pending.sha in files_by_sha:
                        yield to_pr(pending, files_by_sha.pop(pending.sha))
                        done += 1
                        pending = next(order, None)
                last = record
            blocks.close()
            proc.stdout.close()
            err = proc.stderr.read().decode(errors="replace").strip() if proc.stderr else ""
            code = proc.wait()
            if code < 0:  # killed (out of memory, say): no commit's fault, the run fails
                raise SourceError(f"git log was killed (signal {-code}) in {self.path}; "
                                  "the PRs not read yet are read by the next run")
            if code != 0:  # git stopped at a commit it could not read: which one?
                if last is not None and self._readable(last[0]):
                    files_by_sha[last[0]] = last[1]  # whole: git failed on the next one
                    while pending is not None and pending.sha in files_by_sha:
                        yield to_pr(pending, files_by_sha.pop(pending.sha))
                        done += 1
                        pending = next(order, None)
                if pending is None or pending.sha in files_by_sha:
                    raise SourceError(f"git log failed in {self.path}: {err[:500]}")
                return pending, err[:500], done
            if last is not None:
                files_by_sha[last[0]] = last[1]
            while pending is not None:  # a commit git printed no diff for (empty change)
                yield to_pr(pending, files_by_sha.pop(pending.sha, ()))
                pending = next(order, None)
            return None
        finally:
            if proc.poll() is None:  # stopped early (a stop, a limit, an error)
                proc.kill()
            blocks.close()
            proc.stdout.close()
            if proc.stderr:
                proc.stderr.close()
            proc.wait()

    def applies_at(self, base: str, patch: str) -> bool:
        """Whether ``patch`` applies at commit ``base`` (``git apply --check`` in an index of
        its own, read from ``base``: no work tree, safe beside other calls)."""
        import os
        import tempfile
        with tempfile.TemporaryDirectory(prefix="synth-apply-") as tmp:
            env = {**os.environ, "GIT_INDEX_FILE": os.path.join(tmp, "index")}
            git_dir = str(self.git_dir)
            if subprocess.run(["git", "--git-dir", git_dir, "read-tree", base], env=env,
                              capture_output=True).returncode != 0:
                return False
            return subprocess.run(["git", "--git-dir", git_dir, "apply", "--check", "--cached",
                                   "-"], input=patch.encode(), env=env,
                                  capture_output=True).returncode == 0

    def _readable(self, sha: str) -> bool:
        """Whether git can write the whole diff of this one commit (as ``_stream`` asks)."""
        return subprocess.run(
            ["git", "--git-dir", str(self.git_dir), "log", "--no-walk", "-1",
             "--diff-merges=first-parent", "-M", "-p", "--no-color", "--no-ext-diff",
             "--format=%H", sha], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        ).returncode == 0

    def _to_pr(self, c: PRCommit, files: tuple[FileChange, ...]) -> PullRequest:
        return PullRequest(
            repo=self.repo_name, number=c.number, title=c.title, body=c.body, author=c.author,
            merged_at=c.merged_at, base_sha=c.parents[0] if c.parents else "",
            merge_sha=c.sha, head_sha=c.parents[1] if c.style == "merge" and len(c.parents) > 1 else None,
            url=f"https://github.com/{self.repo_name}/pull/{c.number}", files=files,
            author_is_bot=_looks_like_bot(c.author), source="git", head_ref=c.head_ref,
            base_ref=c.base_ref)

    def _git(self, *args: str, input: str | None = None) -> str:
        proc = subprocess.run(
            ["git", "--git-dir", str(self.git_dir), "-c", "core.quotePath=false", *args],
            input=input.encode() if input is not None else None,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        if proc.returncode != 0:
            err = proc.stderr.decode(errors="replace").strip()
            if "does not have any commits" in err or "unknown revision" in err:
                raise EmptyHistory(f"{self.path} has no commits on "
                                   f"{self.ref or 'any branch'}")
            raise SourceError(f"git {args[0]} failed in {self.path}: {err[:500]}")
        return proc.stdout.decode("utf-8", errors="replace")


def _rank(c: PRCommit) -> tuple:
    """Which commit of a PR number is the PR's own merge: a "Merge pull request" commit
    before a squash subject (which may be a cherry-pick or a branch commit that names it),
    then the earliest, then the lowest sha (a stable choice)."""
    return (c.style != "merge", c.merged_at, c.sha)


def _with_author(c: PRCommit, authors: dict[str, str]) -> PRCommit:
    name = authors.get(c.sha)
    if name is None or name == c.author:
        return c
    return dataclasses.replace(c, author=name)


def _with_base(c: PRCommit, bases: dict[str, str]) -> PRCommit:
    base = bases.get(c.sha)
    return c if base is None else dataclasses.replace(c, base_ref=base)


STACK_WALK = 50  # first-parent steps from a PR's commit to the head of the PR it went into


class _Graph:
    """A history's commits with their parents, in topological order (every commit before
    its parents), for the questions stacking asks: a commit's only first-parent child, and
    whether one commit is an ancestor of another (asked of git before, one process per
    question)."""

    def __init__(self, lines: list[str]):
        self.parents: dict[str, list[str]] = {}
        self.order: dict[str, int] = {}
        self.child: dict[str, str | None] = {}  # commit -> its only first-parent child
        for i, line in enumerate(lines):
            sha, *parents = line.split()
            self.parents[sha] = parents
            self.order[sha] = i
            if parents:
                p = parents[0]
                self.child[p] = None if p in self.child else sha

    def is_ancestor(self, commit: str, of: str) -> bool:
        """Whether ``commit`` is ``of`` or one of its ancestors. Only commits between the
        two in topological order can lie on a path from one to the other."""
        limit = self.order.get(commit)
        if limit is None or of not in self.order:
            return False
        seen = {of}
        todo = [of]
        while todo:
            at = todo.pop()
            if at == commit:
                return True
            for p in self.parents.get(at, ()):
                if p not in seen and self.order.get(p, limit + 1) <= limit:
                    seen.add(p)
                    todo.append(p)
        return False


def _stack_bases(commits: list[PRCommit], heads: dict[str, PRCommit],
                 child: dict[str, str | None], is_ancestor) -> dict[str, str]:
    """PRs merged into another PR's branch (stacked PRs) get that branch as their base_ref
    (sha -> branch): from a PR's commit, the branch's later commits follow one by one (each
    the only first-parent child of the one before) until the head of the PR that merged the
    branch (``heads``: merge head -> that PR). A commit with several first-parent children
    (a branch forks there) ends the walk. A PR already in the other PR's base
    (``is_ancestor(commit, base)``: its branch was only started after the merge) is not
    stacked on it."""
    out: dict[str, str] = {}
    for c in commits:
        at: str | None = c.sha
        for _ in range(STACK_WALK):
            into = heads.get(at)
            if into is not None and into.number != c.number:
                if not is_ancestor(c.sha, into.parents[0]):
                    out[c.sha] = into.head_ref
                break
            at = child.get(at)
            if at is None:
                break
    return out


def _pr_commit(sha: str, parents: list[str], author: str, date: str, subject: str,
               body: str) -> PRCommit | None:
    # seconds since the epoch: a commit's own time-zone text can be garbage ("+518:00")
    merged_at = datetime.fromtimestamp(int(date or 0), timezone.utc)
    m = MERGE_RE.match(subject)
    if m and len(parents) > 1:
        title, _, rest = body.partition("\n")
        branch = m.group(2).split("/", 1)[-1] if m.group(2) else None
        return PRCommit(sha, tuple(parents), int(m.group(1)), title.strip() or subject,
                        rest.strip(), author, merged_at, "merge", head_ref=branch)
    m = SQUASH_RE.search(subject)
    if m:
        title = SQUASH_RE.sub("", subject).strip()
        return PRCommit(sha, tuple(parents), int(m.group(1)), title, body, author, merged_at,
                        "squash")
    return None


_BOT_RE = re.compile(r"(\[bot\]$|^dependabot|^renovate|^pre-commit-ci|^github-actions)", re.I)


def _looks_like_bot(author: str) -> bool:
    return bool(_BOT_RE.search(author or ""))


# ---------------------------------------------------------------- patch stream parsing

class GitRepoSource:
    """A local clone as a pipeline source: the PRs not decided yet, in batches."""

    kind = "git"

    def __init__(self, path, repo_name: str | None = None, label: str | None = None,
                 ref: str | None = None, clock: Clock | None = None):
        self.git = GitSource(path, repo_name, ref, clock)
        self.label = label or f"git:{path}"
        # listed while the queue opens; the PR authors of merge commits and the bases of
        # stacked PRs while patches stream
        self._listing = _Background(self.git.listing)

    @property
    def repo_name(self) -> str:
        return self.git.repo_name

    def applies_at(self, base: str, patch: str) -> bool:
        return self.git.applies_at(base, patch)

    def repos(self) -> list[Repo]:
        return [self.git.repo]

    def batches(self, repo: Repo, known: set[int], batch_size: int, limit: int,
                cursor: Cursor | None = None) -> Iterator[SourceBatch]:
        commits, stack_bases = (self._listing.result() if self._listing
                                else self.git.listing())
        self._listing = None  # a later crawl of this source lists afresh
        listed = len(commits)
        if not known:  # a first crawl: say so when the history hides its PRs
            self._few_prs(listed)
        if limit:
            commits = commits[:limit]
        todo = [c for c in commits if c.number not in known]
        first = {"source/prs_listed": listed, "source/prs_known": len(commits) - len(todo)}
        if not todo:
            yield SourceBatch(prs=[], counts=first, total=0)
            return
        buf: list[PullRequest] = []
        unreadable: list[Failure] = []  # commits whose diff git cannot read: recorded, skipped
        sent = 0  # of them, already in a batch
        authors = _Background(lambda: self.git.head_authors(todo))
        bases = _Background(lambda: stack_bases(todo))
        for pr in self.git.pull_requests(todo, authors.result, bases.result, unreadable):
            buf.append(pr)
            if len(buf) >= batch_size:
                yield SourceBatch(prs=buf, counts=first, total=len(todo) - len(unreadable),
                                  failures=unreadable[sent:])
                first, buf, sent = {}, [], len(unreadable)
        if buf or first or len(unreadable) > sent:
            yield SourceBatch(prs=buf, counts=first, total=len(todo) - len(unreadable),
                              failures=unreadable[sent:])


    def _few_prs(self, listed: int) -> None:
        total = self.git.commit_count()
        if total >= FEW_PRS_MIN_COMMITS and listed < FEW_PRS_SHARE * total:
            log.warning(
                "%s: only %d of its %d commits name a PR ('Merge pull request #N' or a subject "
                "ending in '(#N)'): a project that rebase-merges keeps no PR numbers in git; "
                "crawl it with --github to see its PRs", self.repo_name, listed, total)


class _Background:
    """A call started on a thread now, its result (or its exception) taken later."""

    def __init__(self, fn):
        import threading
        self._value = self._error = None

        def run() -> None:
            try:
                self._value = fn()
            except BaseException as exc:  # raised to whoever takes the result
                self._error = exc

        self._thread = threading.Thread(target=run, name="synth-git-listing", daemon=True)
        self._thread.start()

    def result(self):
        self._thread.join()
        if self._error is not None:
            raise self._error
        return self._value
