"""Deterministic GitHub fixture data for the GitHub stand-in server.

The data model is deliberately plain: :class:`Repo` holds :class:`PR` objects, which hold
:class:`File` objects and :class:`IssueRef` closing references.  Everything can be built by
hand in a test (only a handful of fields are required, the rest get deterministic defaults),
or generated in bulk by :func:`make_fixtures`, which produces varied, realistic repositories:
typo fixes, version bumps, CI tweaks, lockfile-only changes, dependabot/renovate bumps,
bug fixes and multi-module features with tests, renames, binary assets, and a few very large
PRs (250+ files) to exercise paging.  Patches are real unified-diff hunks whose ``+``/``-``
line counts match ``additions``/``deletions``.

Timestamps are ISO-8601 UTC strings (``2024-03-05T12:34:56Z``) exactly as GitHub serialises
them, and nothing depends on the wall clock, so a seed always yields the same data.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import random
import re
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

__all__ = [
    "BOT_LOGINS",
    "CHANGE_TYPES",
    "LICENSES",
    "PR_STATES",
    "SearchQueryError",
    "File",
    "Fixtures",
    "IssueRef",
    "PR",
    "Repo",
    "format_iso",
    "make_fixtures",
    "make_hunk",
    "parse_iso",
    "search_repositories",
    "synth_patch",
]

CHANGE_TYPES = ("ADDED", "MODIFIED", "DELETED", "RENAMED")
PR_STATES = ("MERGED", "OPEN", "CLOSED")
AUTHOR_ASSOCIATIONS = ("OWNER", "MEMBER", "COLLABORATOR", "CONTRIBUTOR", "FIRST_TIME_CONTRIBUTOR", "NONE")
BOT_LOGINS = ("dependabot[bot]", "renovate[bot]", "github-actions[bot]")

#: SPDX id -> (GitHub licence key, GitHub licence name)
LICENSES: dict[str, tuple[str, str]] = {
    "MIT": ("mit", "MIT License"),
    "Apache-2.0": ("apache-2.0", "Apache License 2.0"),
    "BSD-3-Clause": ("bsd-3-clause", 'BSD 3-Clause "New" or "Revised" License'),
    "BSD-2-Clause": ("bsd-2-clause", 'BSD 2-Clause "Simplified" License'),
    "GPL-3.0": ("gpl-3.0", "GNU General Public License v3.0"),
    "AGPL-3.0": ("agpl-3.0", "GNU Affero General Public License v3.0"),
    "LGPL-2.1": ("lgpl-2.1", "GNU Lesser General Public License v2.1"),
    "MPL-2.0": ("mpl-2.0", "Mozilla Public License 2.0"),
    "ISC": ("isc", "ISC License"),
    "Unlicense": ("unlicense", "The Unlicense"),
    "NOASSERTION": ("other", "Other"),
}

_BASE_TIME = datetime(2024, 1, 1, tzinfo=timezone.utc)
_ZERO_OID = "0" * 40


# --------------------------------------------------------------------------- helpers


def format_iso(dt: datetime) -> str:
    """Format a datetime the way GitHub does (``2024-01-02T03:04:05Z``)."""
    return dt.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_iso(value: str) -> datetime:
    """Parse a GitHub ISO-8601 timestamp."""
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def _sha1(*parts: object) -> str:
    return hashlib.sha1("\x1f".join(map(str, parts)).encode()).hexdigest()


def _node_id(prefix: str, *parts: object) -> str:
    raw = hashlib.sha256("\x1f".join(map(str, parts)).encode()).digest()[:12]
    return prefix + base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _stable_int(*parts: object, lo: int = 1, hi: int = 2**31 - 1) -> int:
    h = int(_sha1(*parts)[:12], 16)
    return lo + h % (hi - lo)


def _range_count(n: int) -> str:
    """Hunk-range length as git prints it (omitted when it is 1)."""
    return "" if n == 1 else f",{n}"


def make_hunk(
    old_start: int,
    before: Sequence[str],
    removed: Sequence[str],
    added: Sequence[str],
    after: Sequence[str] = (),
    *,
    section: str = "",
    new_start: int | None = None,
) -> str:
    """Build one unified-diff hunk (header plus body, no trailing newline)."""
    old_len = len(before) + len(removed) + len(after)
    new_len = len(before) + len(added) + len(after)
    if new_start is None:
        new_start = old_start
    o_start = old_start if old_len else max(old_start - 1, 0)
    n_start = new_start if new_len else max(new_start - 1, 0)
    header = f"@@ -{o_start}{_range_count(old_len)} +{n_start}{_range_count(new_len)} @@"
    if section:
        header += " " + section
    lines = [header]
    lines += [" " + s for s in before]
    lines += ["-" + s for s in removed]
    lines += ["+" + s for s in added]
    lines += [" " + s for s in after]
    return "\n".join(lines)


def count_patch(patch: str) -> tuple[int, int]:
    """Count (additions, deletions) in a GitHub-style patch (hunks only, no file headers)."""
    adds = dels = 0
    for line in patch.split("\n"):
        if line.startswith("@@"):
            continue
        if line.startswith("+"):
            adds += 1
        elif line.startswith("-"):
            dels += 1
    return adds, dels


# ------------------------------------------------------------------ content vocabulary

_NOUNS = [
    "config", "client", "session", "token", "request", "response", "cache", "record", "schema",
    "payload", "handler", "worker", "queue", "batch", "retry", "timeout", "parser", "buffer",
    "router", "plugin", "event", "metric", "entry", "snapshot", "index", "cursor", "manifest",
]
_VERBS = [
    "load", "parse", "build", "fetch", "resolve", "validate", "render", "flush", "merge",
    "normalize", "encode", "decode", "compute", "register", "dispatch", "collect", "apply",
]
_MODULES = [
    "client", "config", "parser", "cache", "auth", "models", "utils", "cli", "server",
    "storage", "scheduler", "metrics", "retry", "schema", "transport", "logging", "plugins",
    "render", "encoding", "queue", "events", "pool", "http", "errors",
]
_SUBPACKAGES = [
    "core", "io", "net", "api", "db", "ext", "compat", "internal", "tools", "contrib",
    "formats", "backends", "adapters", "handlers", "middleware", "services",
]
_SENTENCES = [
    "This makes the behaviour consistent with the documented defaults.",
    "The previous implementation silently ignored invalid values.",
    "Callers can now opt out by passing an explicit flag.",
    "Large inputs are processed in fixed-size chunks to bound memory use.",
    "Errors are wrapped so that the original traceback is preserved.",
    "See the migration guide for details on upgrading.",
    "The cache is invalidated whenever the configuration changes.",
    "Requests are retried with exponential backoff and jitter.",
    "This keeps the public API unchanged.",
    "Logging is quieter by default; use --verbose for the old output.",
]
_HUMANS = [
    "alice-dev", "bkowalski", "chen-wei", "dmitri-k", "emma-s", "fjordsen", "gpatel",
    "hanna-lee", "ivan-ru", "jmartin", "kofi-a", "lucia-m", "mnakamura", "noor-h",
    "oliver-t", "priya-r", "quentin-b", "rosa-g", "sam-o", "tomasz-w",
]
_ORGS = [
    "acme", "northwind", "globex", "initech", "umbrella-labs", "hooli", "vandelay",
    "cyberdyne", "soylent", "tyrell", "massive-dynamic", "aperture",
]
_REPO_NAMES = [
    "fastqueue", "httpkit", "configurator", "datapipe", "tinyorm", "logship", "gridcache",
    "pyforge", "streamline", "quickparse", "taskrunner", "metricsd", "authlite", "schemata",
]
_LANGS_MAIN = ["Python", "TypeScript", "Go", "Rust"]
_LANGS_SEARCH = [
    "Python", "JavaScript", "TypeScript", "Go", "Rust", "Java", "C++", "C", "Ruby", "PHP",
    "Kotlin", "Swift", "C#", "Scala", "Shell", "Jupyter Notebook", None,
]
_LICENSE_POOL = ["MIT", "MIT", "MIT", "Apache-2.0", "Apache-2.0", "BSD-3-Clause", "GPL-3.0",
                 "MPL-2.0", "BSD-2-Clause", "ISC", "AGPL-3.0", "LGPL-2.1", "Unlicense",
                 "NOASSERTION", None, None]
_TOPICS = ["cli", "http", "database", "machine-learning", "devtools", "web", "async",
           "security", "testing", "observability", "compiler", "gamedev", "data"]


@dataclass(frozen=True)
class _LangProfile:
    language: str
    ext: str
    src: str  # format with {pkg} {mod}
    test: str  # format with {pkg} {mod}
    manifest: str
    lockfile: str
    ecosystem: str  # dependabot ecosystem label
    deps: tuple[tuple[str, str, str], ...]


_PROFILES: dict[str, _LangProfile] = {
    "Python": _LangProfile(
        "Python", "py", "src/{pkg}/{mod}.py", "tests/test_{mod}.py", "pyproject.toml",
        "poetry.lock", "pip",
        (("requests", "2.31.0", "2.32.3"), ("pydantic", "2.6.4", "2.7.1"), ("click", "8.1.6", "8.1.7"),
         ("pytest", "7.4.4", "8.2.0"), ("httpx", "0.26.0", "0.27.0"), ("rich", "13.6.0", "13.7.1")),
    ),
    "TypeScript": _LangProfile(
        "TypeScript", "ts", "src/{mod}.ts", "test/{mod}.test.ts", "package.json",
        "package-lock.json", "npm_and_yarn",
        (("eslint", "8.56.0", "9.1.1"), ("typescript", "5.3.3", "5.4.5"), ("vitest", "1.2.0", "1.6.0"),
         ("zod", "3.22.4", "3.23.8"), ("prettier", "3.1.1", "3.2.5"), ("@types/node", "20.11.0", "20.12.7")),
    ),
    "Go": _LangProfile(
        "Go", "go", "internal/{mod}/{mod}.go", "internal/{mod}/{mod}_test.go", "go.mod", "go.sum",
        "go_modules",
        (("github.com/spf13/cobra", "1.7.0", "1.8.0"), ("golang.org/x/net", "0.19.0", "0.23.0"),
         ("github.com/stretchr/testify", "1.8.4", "1.9.0"), ("google.golang.org/grpc", "1.60.1", "1.63.2")),
    ),
    "Rust": _LangProfile(
        "Rust", "rs", "src/{mod}.rs", "tests/{mod}.rs", "Cargo.toml", "Cargo.lock", "cargo",
        (("serde", "1.0.195", "1.0.200"), ("tokio", "1.35.1", "1.37.0"), ("clap", "4.4.18", "4.5.4"),
         ("anyhow", "1.0.79", "1.0.82"), ("thiserror", "1.0.56", "1.0.59")),
    ),
}


_TEMPLATES: dict[str, tuple[str, ...]] = {
    "Python": (
        "def {fn}({noun}: dict, *, strict: bool = False) -> {Other}:",
        '    """{Doc} from the given {noun}."""',
        "    {noun} = {fn}({other}, timeout=self.timeout)",
        "    if {noun} is None:",
        '        raise ValueError("{noun} must not be empty")',
        "    return {other}",
        "from .{mod} import {Other}",
        '    logger.debug("{fn}: %s", {noun})',
        "    for {noun} in self._{other}s:",
        "        results.append({noun})",
        "    {noun}_count: int = 0",
        "# {sentence}",
        "",
    ),
    "TypeScript": (
        "export function {cfn}({noun}: {Other}): {Noun} | undefined {{",
        "  const {noun} = await {cfn}({other}, options);",
        "  if (!{noun}) {{",
        "    throw new Error(`{noun} is required`);",
        "  return {other};",
        "  }}",
        "}}",
        "import {{ {Other} }} from './{mod}';",
        "  {noun}: {Other};",
        "// {sentence}",
        "",
    ),
    "Go": (
        "func {Cfn}(ctx context.Context, {noun} *{Other}) error {{",
        "\t{noun}, err := {cfn}(ctx, {other})",
        "\tif err != nil {{",
        '\t\treturn fmt.Errorf("{fn}: %w", err)',
        "\t}}",
        "\treturn {noun}.Close()",
        "}}",
        "// {sentence}",
        "",
    ),
    "Rust": (
        "pub fn {fn}({noun}: &{Other}) -> Result<{Noun}> {{",
        "    let {noun} = {fn}(&{other})?;",
        "    if {noun}.is_empty() {{",
        '        return Err(anyhow!("{noun} is empty"));',
        "    }}",
        "    Ok({other})",
        "}}",
        "/// {sentence}",
        "",
    ),
    "md": (
        "{sentence}",
        "- `{fn}` now accepts a `{noun}` argument.",
        "## {Noun} {other}",
        "",
        "See [{noun}](docs/{noun}.md) for details.",
    ),
    "yml": (
        "      - uses: actions/checkout@v4",
        "      - name: {Doc}",
        "        run: make {noun}",
        "    runs-on: ubuntu-latest",
        "        python-version: ['3.10', '3.11', '3.12']",
        "      - uses: actions/cache@v4",
        "          key: ${{{{ runner.os }}}}-{noun}-${{{{ hashFiles('**/*.lock') }}}}",
    ),
    "tomllock": (
        "[[package]]",
        'name = "{noun}-{other}"',
        'version = "{ver}"',
        'checksum = "{digest}"',
        'files = [{{file = "{noun}_{other}-{ver}.tar.gz", hash = "sha256:{digest}"}}]',
        "",
    ),
    "npmlock": (
        '    "node_modules/{noun}-{other}": {{',
        '      "version": "{ver}",',
        '      "resolved": "https://registry.npmjs.org/{noun}-{other}/-/{noun}-{other}-{ver}.tgz",',
        '      "integrity": "sha512-{digest}",',
        "    }},",
    ),
    "gosum": (
        "github.com/{noun}/{other} v{ver} h1:{digest}=",
        "github.com/{noun}/{other} v{ver}/go.mod h1:{digest}=",
    ),
    "toml": (
        '{noun} = "^{ver}"',
        "[tool.{noun}]",
        "{other}_{noun} = true",
    ),
    "json": (
        '    "{noun}": "^{ver}",',
        '    "{other}": "{noun} --watch",',
    ),
    "": ("{noun} {other} {ver}",),
}
_EXT_TEMPLATES = {
    "py": "Python", "ts": "TypeScript", "js": "TypeScript", "go": "Go", "rs": "Rust",
    "md": "md", "rst": "md", "txt": "md", "yml": "yml", "yaml": "yml", "toml": "toml",
    "json": "json", "cfg": "toml", "ini": "toml", "sum": "gosum",
}


class _Vals(dict):
    """Template values drawn from the RNG only when a template asks for them."""

    def __init__(self, rng: random.Random) -> None:
        super().__init__()
        self.rng = rng

    def __missing__(self, key: str) -> str:
        rnd = self.rng.random
        if key in ("noun", "other"):
            value = _pick(rnd, _NOUNS)
        elif key in ("Noun", "Other"):
            value = self[key.lower()].title()
        elif key == "fn":
            value = f"{_pick(rnd, _VERBS)}_{self['noun']}"
        elif key in ("cfn", "Cfn"):
            verb, noun = self["fn"].split("_", 1)
            value = (verb.title() if key == "Cfn" else verb) + noun.title()
        elif key == "Doc":
            value = self["fn"].replace("_", " ").capitalize()
        elif key == "mod":
            value = _pick(rnd, _MODULES)
        elif key == "sentence":
            value = _pick(rnd, _SENTENCES)
        elif key == "ver":
            value = f"{int(rnd() * 10)}.{int(rnd() * 31)}.{int(rnd() * 21)}"
        elif key == "digest":
            value = base64.b64encode(self.rng.randbytes(24)).decode()
        else:
            raise KeyError(key)
        self[key] = value
        return value


def _pick(rnd: Callable[[], float], seq: Sequence[str]) -> str:
    """``random.choice`` without the overhead (patch text is generated by the ten thousand)."""
    return seq[int(rnd() * len(seq))]


def _code_line(rng: random.Random, kind: str) -> str:
    """One plausible line for a file of template ``kind`` (see :func:`_line_kind`)."""
    return _pick(rng.random, _TEMPLATES[kind]).format_map(_Vals(rng))


def _line_kind(path: str) -> str:
    name = path.rsplit("/", 1)[-1]
    if name in ("poetry.lock", "Cargo.lock", "uv.lock"):
        return "tomllock"
    if name in ("package-lock.json", "yarn.lock"):
        return "npmlock"
    ext = name.rsplit(".", 1)[-1].lower() if "." in name else ""
    return _EXT_TEMPLATES.get(ext, "")


def synth_patch(
    path: str,
    additions: int,
    deletions: int,
    change_type: str = "MODIFIED",
    *,
    rng: random.Random | None = None,
) -> str | None:
    """A deterministic unified-diff patch for ``path`` with exactly the given counts.

    Returns ``None`` when there is nothing to show (no additions and no deletions).
    """
    if additions == 0 and deletions == 0:
        return None
    rng = rng or random.Random(f"patch:{path}:{additions}:{deletions}:{change_type}")
    ext = _line_kind(path)
    if change_type == "ADDED":
        return make_hunk(1, [], [], [_code_line(rng, ext) for _ in range(additions)])
    if change_type == "DELETED":
        return make_hunk(1, [], [_code_line(rng, ext) for _ in range(deletions)], [], new_start=0)
    # Modifications: spread the changes over a few hunks with 3 lines of context.
    n_hunks = max(1, min(6, (additions + deletions) // 25 + 1, max(additions, deletions)))
    adds = _split(rng, additions, n_hunks)
    dels = _split(rng, deletions, n_hunks)
    hunks: list[str] = []
    old_line, offset = rng.randint(1, 40), 0
    for a, d in zip(adds, dels, strict=True):
        if a == 0 and d == 0:
            continue
        before = [_code_line(rng, ext) for _ in range(min(3, old_line - 1))]
        after = [_code_line(rng, ext) for _ in range(3)]
        start = old_line - len(before)
        section = ""
        if ext in _PROFILES and start > 1 and rng.random() < 0.6:
            section = _code_line(rng, ext).strip()
        hunks.append(make_hunk(
            start, before,
            [_code_line(rng, ext) for _ in range(d)],
            [_code_line(rng, ext) for _ in range(a)],
            after, section=section, new_start=start + offset,
        ))
        offset += a - d
        old_line += d + len(after) + rng.randint(8, 60)
    return "\n".join(hunks)


def _split(rng: random.Random, total: int, parts: int) -> list[int]:
    """Split ``total`` into ``parts`` non-negative integers."""
    if parts == 1:
        return [total]
    cuts = sorted(rng.randint(0, total) for _ in range(parts - 1))
    return [b - a for a, b in zip([0, *cuts], [*cuts, total], strict=True)]


# ------------------------------------------------------------------------ data model


@dataclass(frozen=True)
class IssueRef:
    """An issue referenced as closed by a PR (``closingIssuesReferences``)."""

    number: int
    title: str
    body: str | None = None
    created_at: str = ""
    state: str = "CLOSED"

    def __post_init__(self) -> None:
        if not self.created_at:
            stamp = format_iso(_BASE_TIME + timedelta(hours=self.number) - timedelta(days=3))
            object.__setattr__(self, "created_at", stamp)


@dataclass(frozen=True)
class File:
    """One file changed by a PR (an immutable value, shared between fixture copies).

    ``patch`` is a GitHub-style patch (hunks only, as in the REST files API). When omitted for a
    text file with changes, a consistent patch is synthesised; when given and the counts are both
    zero, the counts are derived from it. ``binary`` files have no patch and zero counts.
    """

    path: str
    additions: int = 0
    deletions: int = 0
    change_type: str = "MODIFIED"
    previous_path: str | None = None
    patch: str | None = None
    binary: bool = False

    def __post_init__(self) -> None:
        if self.change_type not in CHANGE_TYPES:
            raise ValueError(f"change_type must be one of {CHANGE_TYPES}, not {self.change_type!r}")
        if self.change_type == "RENAMED" and not self.previous_path:
            raise ValueError("a RENAMED file needs previous_path")
        set_ = object.__setattr__
        if self.binary:
            set_(self, "patch", None)
            set_(self, "additions", 0)
            set_(self, "deletions", 0)
        elif self.patch is not None:
            adds, dels = count_patch(self.patch)
            if self.additions == 0 and self.deletions == 0:
                set_(self, "additions", adds)
                set_(self, "deletions", dels)
            elif (adds, dels) != (self.additions, self.deletions):
                raise ValueError(
                    f"{self.path}: patch has +{adds}/-{dels}, not +{self.additions}/-{self.deletions}")
        else:
            set_(self, "patch", synth_patch(self.path, self.additions, self.deletions, self.change_type))

    @property
    def changes(self) -> int:
        return self.additions + self.deletions

    @property
    def status(self) -> str:
        """The REST ``status`` value."""
        return {"ADDED": "added", "MODIFIED": "modified", "DELETED": "removed",
                "RENAMED": "renamed"}[self.change_type]

    @property
    def old_blob(self) -> str:
        if self.change_type == "ADDED":
            return _ZERO_OID
        return _sha1("old", self.previous_path or self.path, self.patch, self.binary)

    @property
    def new_blob(self) -> str:
        if self.change_type == "DELETED":
            return _ZERO_OID
        return _sha1("new", self.path, self.patch, self.binary)

    def diff_section(self) -> str:
        """This file's part of ``git diff`` output (as served for ``application/vnd.github.diff``)."""
        old_path = self.previous_path or self.path
        out = [f"diff --git a/{old_path} b/{self.path}"]
        idx = f"index {self.old_blob[:7]}..{self.new_blob[:7]}"
        if self.change_type == "ADDED":
            out += ["new file mode 100644", idx]
        elif self.change_type == "DELETED":
            out += ["deleted file mode 100644", idx]
        elif self.change_type == "RENAMED":
            similarity = 100 if not self.patch else max(50, 100 - self.changes)
            out += [f"similarity index {similarity}%", f"rename from {old_path}", f"rename to {self.path}"]
            if self.patch or self.binary:
                out.append(idx + " 100644")
        else:
            out.append(idx + " 100644")
        a_name = "/dev/null" if self.change_type == "ADDED" else f"a/{old_path}"
        b_name = "/dev/null" if self.change_type == "DELETED" else f"b/{self.path}"
        if self.binary:
            out.append(f"Binary files {a_name} and {b_name} differ")
        elif self.patch:
            out += [f"--- {a_name}", f"+++ {b_name}", self.patch]
        return "\n".join(out) + "\n"


@dataclass
class PR:
    """A pull request. Only ``number`` and ``title`` are required; the rest is defaulted.

    ``state`` is the GraphQL state (MERGED, OPEN or CLOSED; CLOSED means closed unmerged).
    Timestamps default to ``2024-01-01`` plus ``number`` hours, merged one hour after creation.
    """

    number: int
    title: str
    body: str | None = None
    author: str = "octocat"
    author_is_bot: bool | None = None
    author_association: str = "CONTRIBUTOR"
    labels: list[str] = field(default_factory=list)
    state: str = "MERGED"
    created_at: str = ""
    updated_at: str = ""
    merged_at: str | None = None
    closed_at: str | None = None
    base_ref: str = "main"
    head_ref: str = ""
    base_oid: str = ""
    head_oid: str = ""
    merge_commit_oid: str | None = None
    files: list[File] = field(default_factory=list)
    closing_issues: list[IssueRef] = field(default_factory=list)
    database_id: int = 0
    draft: bool = False
    merged_by: str | None = None
    kind: str = "manual"

    def __post_init__(self) -> None:
        if self.state not in PR_STATES:
            raise ValueError(f"state must be one of {PR_STATES}, not {self.state!r}")
        if self.author_is_bot is None:
            self.author_is_bot = self.author.endswith("[bot]")
        if not self.created_at:
            self.created_at = format_iso(_BASE_TIME + timedelta(hours=self.number))
        created = parse_iso(self.created_at)
        if self.state == "MERGED":
            self.merged_at = self.merged_at or format_iso(created + timedelta(hours=1))
            self.closed_at = self.closed_at or self.merged_at
            self.merge_commit_oid = self.merge_commit_oid or _sha1("merge", self.number, self.title)
            self.merged_by = self.merged_by or ("octocat" if self.author_is_bot else self.author)
        else:
            self.merged_at = None
            self.merge_commit_oid = None
            self.merged_by = None
            if self.state == "CLOSED":
                self.closed_at = self.closed_at or format_iso(created + timedelta(hours=2))
            else:
                self.closed_at = None
        if not self.updated_at:
            self.updated_at = self.closed_at or self.created_at
        self.head_ref = self.head_ref or f"pr-{self.number}"
        self.base_oid = self.base_oid or _sha1("base", self.number, self.title)
        self.head_oid = self.head_oid or _sha1("head", self.number, self.title)
        self.database_id = self.database_id or _stable_int("pr", self.number, self.title, lo=10**9, hi=2 * 10**9)

    @property
    def merged(self) -> bool:
        return self.state == "MERGED"

    @property
    def additions(self) -> int:
        return sum(f.additions for f in self.files)

    @property
    def deletions(self) -> int:
        return sum(f.deletions for f in self.files)

    @property
    def changed_files(self) -> int:
        return len(self.files)

    @property
    def is_bot(self) -> bool:
        return bool(self.author_is_bot)

    @property
    def node_id(self) -> str:
        return _node_id("PR_kwDO", self.database_id)

    @property
    def graphql_login(self) -> str:
        """GraphQL reports bots without the ``[bot]`` suffix (REST keeps it)."""
        return self.author.removesuffix("[bot]") if self.is_bot else self.author

    def diff(self) -> str:
        """The whole ``git diff`` text GitHub serves for this PR."""
        return "".join(f.diff_section() for f in self.files)


@dataclass
class Repo:
    """A repository. ``prs`` may be empty (discovery-only repositories)."""

    owner: str
    name: str
    stars: int = 0
    language: str | None = "Python"
    license: str | None = "MIT"
    archived: bool = False
    fork: bool = False
    private: bool = False
    visible_to: frozenset[str] = frozenset()
    default_branch: str = "main"
    created_at: str = "2019-06-01T10:00:00Z"
    pushed_at: str = ""
    description: str | None = None
    forks: int = 0
    topics: list[str] = field(default_factory=list)
    owner_type: str = "Organization"
    id: int = 0
    prs: list[PR] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.license is not None and self.license not in LICENSES:
            raise ValueError(f"unknown licence {self.license!r}; known: {sorted(LICENSES)}")
        self.visible_to = frozenset(self.visible_to)
        self.id = self.id or _stable_int("repo", self.owner.lower(), self.name.lower(), lo=10**7, hi=9 * 10**7)
        if not self.pushed_at:
            stamps = [p.updated_at for p in self.prs] or [self.created_at]
            self.pushed_at = max(stamps)
        if self.description is None:
            self.description = f"{self.name.replace('-', ' ').title()}: a {self.language or 'polyglot'} project"

    @property
    def full_name(self) -> str:
        return f"{self.owner}/{self.name}"

    @property
    def node_id(self) -> str:
        return _node_id("R_kgDO", self.id)

    @property
    def license_info(self) -> tuple[str, str, str] | None:
        """(spdx_id, key, name) or None."""
        if self.license is None:
            return None
        key, name = LICENSES[self.license]
        return self.license, key, name

    def visible(self, token: str | None) -> bool:
        """Whether a request authenticated with ``token`` may see this repository."""
        return not self.private or (token is not None and token in self.visible_to)

    def pr(self, number: int) -> PR | None:
        for p in self.prs:
            if p.number == number:
                return p
        return None

    def merged_prs(self) -> list[PR]:
        return [p for p in self.prs if p.merged]

    def max_number(self) -> int:
        nums = [p.number for p in self.prs] + [i.number for p in self.prs for i in p.closing_issues]
        return max(nums, default=0)


@dataclass
class Fixtures:
    """All repositories the stand-in knows.

    ``repos`` are the crawl targets (with PRs, possibly private); ``search_repos`` only matter
    for discovery but can also be fetched. Lookups are case-insensitive like GitHub's.
    """

    repos: list[Repo] = field(default_factory=list)
    search_repos: list[Repo] = field(default_factory=list)
    seed: int = 0
    lock: threading.RLock = field(default_factory=threading.RLock, repr=False, compare=False)
    _index: dict[str, Repo] = field(default_factory=dict, repr=False, compare=False)
    _index_key: tuple[int, int] = field(default=(-1, -1), repr=False, compare=False)

    def all_repos(self) -> list[Repo]:
        return [*self.repos, *self.search_repos]

    def clone(self) -> Fixtures:
        """An independent copy (repositories and PRs copied; files and issues are immutable)."""
        def pr_copy(p: PR) -> PR:
            return dataclasses.replace(p, labels=list(p.labels), files=list(p.files),
                                       closing_issues=list(p.closing_issues))

        def repo_copy(r: Repo) -> Repo:
            return dataclasses.replace(r, topics=list(r.topics), prs=[pr_copy(p) for p in r.prs])

        with self.lock:
            return Fixtures(repos=[repo_copy(r) for r in self.repos],
                            search_repos=[repo_copy(r) for r in self.search_repos], seed=self.seed)

    def get_repo(self, full_name: str) -> Repo | None:
        with self.lock:
            key = (len(self.repos), len(self.search_repos))
            if key != self._index_key:
                self._index = {r.full_name.lower(): r for r in self.all_repos()}
                self._index_key = key
            return self._index.get(full_name.lower())

    def repo_by_id(self, repo_id: int) -> Repo | None:
        with self.lock:
            return next((r for r in self.all_repos() if r.id == repo_id), None)

    def add_repo(self, repo: Repo, *, search_only: bool = False) -> Repo:
        with self.lock:
            if self.get_repo(repo.full_name) is not None:
                raise ValueError(f"{repo.full_name} already exists")
            (self.search_repos if search_only else self.repos).append(repo)
            return repo

    def search(self, q: str, *, token: str | None = None, sort: str | None = None,
               order: str = "desc") -> list[Repo]:
        """Repository search over all repositories (see :func:`search_repositories`)."""
        with self.lock:
            return search_repositories(self.all_repos(), q, token=token, sort=sort, order=order)

    def merged_prs(self, full_name: str) -> list[PR]:
        repo = self.get_repo(full_name)
        if repo is None:
            raise KeyError(full_name)
        return repo.merged_prs()

    def latest_timestamp(self) -> datetime:
        stamps = [parse_iso(s) for r in self.all_repos() for p in r.prs
                  for s in (p.created_at, p.updated_at, p.merged_at, p.closed_at) if s]
        return max(stamps, default=_BASE_TIME)

    def add_pr(self, full_name: str, pr: PR | None = None, **fields: object) -> PR:
        """Add a PR newer than every existing one (for incremental-crawl tests).

        Either pass a ready :class:`PR` or keyword fields for one; ``number`` defaults to the
        next free number and the timestamps to one minute past the latest in the fixtures, so
        its ``createdAt``, ``mergedAt`` and ``updatedAt`` sort after everything else.
        """
        with self.lock:
            repo = self.get_repo(full_name)
            if repo is None:
                raise KeyError(full_name)
            if pr is None:
                latest = self.latest_timestamp()
                fields.setdefault("number", repo.max_number() + 1)
                fields.setdefault("title", f"Change #{fields['number']}")
                fields.setdefault("created_at", format_iso(latest + timedelta(minutes=1)))
                if fields.get("state", "MERGED") == "MERGED":
                    fields.setdefault("merged_at", format_iso(latest + timedelta(minutes=2)))
                    fields.setdefault("updated_at", format_iso(latest + timedelta(minutes=2, seconds=5)))
                if "files" not in fields:
                    fields["files"] = [File("README.md", 1, 1)]
                fields.setdefault("base_ref", repo.default_branch)
                pr = PR(**fields)  # type: ignore[arg-type]
            if repo.pr(pr.number) is not None:
                raise ValueError(f"{full_name}#{pr.number} already exists")
            repo.prs.append(pr)
            repo.pushed_at = max(repo.pushed_at, pr.updated_at)
            return pr


# ------------------------------------------------------------------------- search


class SearchQueryError(ValueError):
    """A repository search query GitHub would reject (answered with 422)."""


_LANG_ALIASES = {"c#": "csharp", "c++": "cpp", "f#": "fsharp", "jupyter notebook": "jupyter-notebook"}
_RANGE = re.compile(r"^(>=|<=|>|<)?(.+)$")


def _norm_lang(name: str) -> str:
    name = name.strip('"').lower()
    return _LANG_ALIASES.get(name, name.replace(" ", "-"))


def _compare(spec: str, convert: Callable[[str], object]) -> Callable[[object], bool]:
    """Predicate for GitHub range syntax: ``N``, ``>N``, ``>=N``, ``<N``, ``<=N``, ``A..B``, ``A..*``."""
    try:
        if ".." in spec:
            lo, hi = spec.split("..", 1)
            lo_v = None if lo in ("", "*") else convert(lo)
            hi_v = None if hi in ("", "*") else convert(hi)
            return lambda v: (lo_v is None or v >= lo_v) and (hi_v is None or v <= hi_v)  # type: ignore[operator]
        m = _RANGE.match(spec)
        assert m is not None
        op, val = m.group(1), convert(m.group(2))
    except (ValueError, AssertionError) as exc:
        raise SearchQueryError(f"invalid range {spec!r}") from exc
    return {
        None: lambda v: v == val, ">": lambda v: v > val, ">=": lambda v: v >= val,  # type: ignore[operator]
        "<": lambda v: v < val, "<=": lambda v: v <= val,  # type: ignore[operator]
    }[op]


def _date(value: str) -> str:
    value = value.strip('"')
    if not re.match(r"^\d{4}-\d{2}-\d{2}", value):
        raise ValueError(value)
    return value


def search_repositories(repos: Iterable[Repo], q: str, *, token: str | None = None,
                        sort: str | None = None, order: str = "desc") -> list[Repo]:
    """Filter and sort ``repos`` like ``GET /search/repositories``.

    Supported qualifiers: ``stars:``/``forks:`` ranges (``N``, ``>N``, ``>=N``, ``<N``, ``<=N``,
    ``A..B``, ``A..*``, ``*..B``), ``created:``/``pushed:`` date ranges, ``language:``
    (repeatable = OR), ``license:`` (licence key, e.g. ``mit``, ``apache-2.0``), ``archived:``,
    ``fork:true|only|false`` (forks are excluded unless asked for), ``is:public|private``,
    ``mirror:``/``template:``, ``user:``/``org:``, ``repo:``, ``topic:``, and ``-`` negation of
    ``language``/``license``/``topic``/``user``/``org``. Other words match name/description.
    Private repositories only appear for a token that may see them.
    """
    terms = re.findall(r'-?[\w.+#-]+:"[^"]*"|"[^"]*"|\S+', q or "")
    if not terms:
        raise SearchQueryError("q is missing")
    preds: list[Callable[[Repo], bool]] = []
    include_forks: str = "false"
    any_of: dict[str, set[str]] = {}
    none_of: dict[str, set[str]] = {}
    words: list[str] = []
    for term in terms:
        neg = term.startswith("-") and ":" in term
        key, sep, val = term.lstrip("-").partition(":")
        key, val = key.lower(), val.strip('"')
        if not sep or not val:
            words.append(term.strip('"').lower())
            continue
        if key in ("language", "license", "topic", "user", "org", "owner"):
            norm = _norm_lang(val) if key == "language" else val.lower()
            key = "user" if key in ("org", "owner") else key
            (none_of if neg else any_of).setdefault(key, set()).add(norm)
        elif key == "stars":
            f = _compare(val, int)
            preds.append(lambda r, f=f: f(r.stars))
        elif key == "forks":
            f = _compare(val, int)
            preds.append(lambda r, f=f: f(r.forks))
        elif key in ("created", "pushed"):
            f = _compare(val, _date)
            attr = "created_at" if key == "created" else "pushed_at"
            preds.append(lambda r, f=f, a=attr: f(getattr(r, a)[: 10]))
        elif key == "archived":
            want = val.lower() == "true"
            preds.append(lambda r, w=want: r.archived == w)
        elif key == "fork":
            include_forks = val.lower()
        elif key == "is":
            if val.lower() in ("public", "private"):
                want_private = val.lower() == "private"
                preds.append(lambda r, w=want_private: r.private == w)
            elif val.lower() == "archived":
                preds.append(lambda r: r.archived)
        elif key in ("mirror", "template"):
            if val.lower() == "true":
                preds.append(lambda r: False)
        elif key == "repo":
            wanted = val.lower()
            preds.append(lambda r, v=wanted: r.full_name.lower() == v)
        else:
            words.append(term.lower())
    if include_forks == "only":
        preds.append(lambda r: r.fork)
    elif include_forks != "true":
        preds.append(lambda r: not r.fork)

    def facets(r: Repo) -> dict[str, set[str]]:
        lic = r.license_info
        return {"language": {_norm_lang(r.language)} if r.language else set(),
                "license": {lic[1], lic[0].lower()} if lic else set(),
                "topic": set(r.topics), "user": {r.owner.lower()}}

    def keep(r: Repo) -> bool:
        if r.private and not r.visible(token):
            return False
        for pred in preds:
            if not pred(r):
                return False
        if any_of or none_of:
            fac = facets(r)
            if any(not (fac[k] & v) for k, v in any_of.items()):
                return False
            if any(fac[k] & v for k, v in none_of.items()):
                return False
        if words:
            text = f"{r.name} {r.description or ''}".lower()
            return all(w in text for w in words)
        return True

    sort_key: Callable[[Repo], object] = {
        "forks": lambda r: r.forks, "updated": lambda r: r.pushed_at,
    }.get(sort or "stars", lambda r: r.stars)
    hits = [r for r in repos if keep(r)]
    hits.sort(key=lambda r: r.id)
    hits.sort(key=sort_key, reverse=(order or "desc").lower() != "asc")
    return hits


# -------------------------------------------------------------------- PR generation


class _RepoGen:
    """Generates the PR history of one repository."""

    def __init__(self, rng: random.Random, profile: _LangProfile, owner: str, name: str,
                 default_branch: str) -> None:
        self.rng = rng
        self.p = profile
        self.owner, self.name, self.branch = owner, name, default_branch
        self.pkg = name.replace("-", "_")
        self.modules = rng.sample(_MODULES, 12)
        self.version = [1, rng.randint(0, 9), rng.randint(0, 9)]
        self.open_issues: list[IssueRef] = []
        self.number = 0
        self.clock = datetime(2023, 1, 2, 9, 0, tzinfo=timezone.utc) + timedelta(hours=rng.randint(0, 500))

    # -- small helpers
    def src(self, mod: str) -> str:
        return self.p.src.format(pkg=self.pkg, mod=mod)

    def test(self, mod: str) -> str:
        return self.p.test.format(pkg=self.pkg, mod=mod)

    def text_file(self, path: str, adds: int, dels: int, ct: str = "MODIFIED", prev: str | None = None) -> File:
        return File(path, adds, dels, ct, prev, patch=synth_patch(path, adds, dels, ct, rng=self.rng))

    def next_number(self) -> int:
        # Issues and PRs share one number sequence on GitHub.
        while self.rng.random() < 0.3:
            self.number += 1
            self._open_issue(self.number)
        self.number += 1
        return self.number

    def _open_issue(self, number: int) -> None:
        noun, other = self.rng.choice(_NOUNS), self.rng.choice(_NOUNS)
        title = self.rng.choice([
            f"Crash when {noun} is empty",
            f"{noun.title()} is not reloaded after {other} changes",
            f"Support custom {noun} in {other}",
            f"Timeout while fetching large {noun}s",
            f"Feature request: configurable {noun} {other}",
        ])
        body = (f"### Description\n\n{title}.\n\n### Steps to reproduce\n\n1. Configure `{noun}`\n"
                f"2. Run `{self.pkg} {other}`\n\n### Expected behaviour\n\n{self.rng.choice(_SENTENCES)}")
        self.open_issues.append(IssueRef(number, title, body, format_iso(self.clock - timedelta(days=2))))

    def take_issue(self) -> list[IssueRef]:
        if self.open_issues and self.rng.random() < 0.8:
            return [self.open_issues.pop(self.rng.randrange(len(self.open_issues)))]
        return []

    def body(self, summary: str, issues: list[IssueRef], testing: bool = True) -> str | None:
        if self.rng.random() < 0.08:
            return None
        parts = ["## Summary", "", summary, ""]
        parts += [f"- {s}" for s in self.rng.sample(_SENTENCES, self.rng.randint(1, 3))]
        if testing:
            parts += ["", "## Testing", "", self.rng.choice(
                ["Added unit tests.", "Ran the full test suite locally.", "Covered by existing tests."])]
        for issue in issues:
            parts += ["", f"{self.rng.choice(['Fixes', 'Closes', 'Resolves'])} #{issue.number}"]
        return "\n".join(parts)

    def human(self) -> tuple[str, str]:
        return self.rng.choice(_HUMANS), self.rng.choice(
            ["MEMBER", "MEMBER", "CONTRIBUTOR", "CONTRIBUTOR", "OWNER", "COLLABORATOR", "FIRST_TIME_CONTRIBUTOR"])

    def dep_line(self, dep: str, version: str) -> str:
        """How ``dep`` pinned at ``version`` reads in this ecosystem's manifest."""
        return {
            "pyproject.toml": f'{dep} = "^{version}"',
            "package.json": f'    "{dep}": "^{version}",',
            "go.mod": f"\t{dep} v{version}",
            "Cargo.toml": f'{dep} = "{version}"',
        }[self.p.manifest]

    # -- PR kinds; each returns the kind-specific fields of a PR
    def typo(self) -> dict:
        word, fixed = self.rng.choice([("libary", "library"), ("enviroment", "environment"),
                                        ("recieve", "receive"), ("seperate", "separate"),
                                        ("occured", "occurred")])
        line = f"This {word} is used by the {self.name} command-line tool."
        start = self.rng.randint(5, 60)
        patch = make_hunk(start, ["", "## Installation", ""], [line], [line.replace(word, fixed)],
                          ["", "```sh", f"pip install {self.name}"])
        return dict(title=self.rng.choice(["Fix typo in README", f"docs: fix '{word}' typo",
                                           "README: fix spelling"]),
                    files=[File("README.md", patch=patch)], labels=["documentation"], summary="Fix a typo.",
                    testing=False)

    def docs(self) -> dict:
        topic = self.rng.choice(_NOUNS)
        files = [self.text_file(f"docs/{topic}.md", self.rng.randint(5, 60), self.rng.randint(0, 20))]
        if self.rng.random() < 0.4:
            files.append(File(f"docs/images/{topic}-overview.png", change_type="ADDED", binary=True))
        if self.rng.random() < 0.3:
            files.append(self.text_file("mkdocs.yml", 1, 0))
        return dict(title=f"docs: document {topic} options", files=files, labels=["documentation"],
                    summary=f"Document the `{topic}` options.", testing=False)

    def version_bump(self) -> dict:
        old = ".".join(map(str, self.version))
        self.version[2] += 1
        new = ".".join(map(str, self.version))
        if self.p.manifest == "package.json":
            old_l, new_l = f'  "version": "{old}",', f'  "version": "{new}",'
        elif self.p.manifest == "go.mod":
            old_l, new_l = f'const Version = "{old}"', f'const Version = "{new}"'
        else:
            old_l, new_l = f'version = "{old}"', f'version = "{new}"'
        manifest = self.p.manifest if self.p.manifest != "go.mod" else "internal/version/version.go"
        first = {"pyproject.toml": "[project]", "Cargo.toml": "[package]", "package.json": "{"}.get(
            manifest, "package version")
        files = [File(manifest, patch=make_hunk(1, [first], [old_l], [new_l], [""]))]
        notes = [f"## {new}", ""] + [f"- {s}" for s in self.rng.sample(_SENTENCES, 3)] + [""]
        files.insert(0, File("CHANGELOG.md", patch=make_hunk(1, ["# Changelog", ""], [], notes, [f"## {old}"])))
        return dict(title=self.rng.choice([f"Release v{new}", f"Bump version to {new}",
                                           f"chore: release {new}"]),
                    files=files, labels=["release"], summary=f"Prepare the {new} release.", testing=False)

    def ci(self) -> dict:
        title = self.rng.choice(["ci: add Python 3.13 to the test matrix", "ci: cache dependencies",
                                 "ci: pin actions/checkout to v4", "ci: run tests on macOS too",
                                 "ci: upload coverage reports"])
        files = [self.text_file(".github/workflows/ci.yml", self.rng.randint(1, 12), self.rng.randint(0, 6))]
        if self.rng.random() < 0.3:
            files.append(self.text_file(".github/workflows/release.yml",
                                        self.rng.randint(1, 4), self.rng.randint(1, 4)))
        return dict(title=title, files=files, labels=["ci"], summary="Tweak the CI workflow.", testing=False)

    def lockfile(self) -> dict:
        n = self.rng.randint(20, 400)
        return dict(title=self.rng.choice(["Update lockfile", "chore: refresh lock file",
                                           f"Regenerate {self.p.lockfile}"]),
                    files=[self.text_file(self.p.lockfile, n + self.rng.randint(-10, 10) if n > 10 else n, n)],
                    labels=["dependencies"], summary="Refresh locked dependency versions.", testing=False)

    def dependabot(self) -> dict:
        dep, old, new = self.rng.choice(self.p.deps)
        if self.rng.random() < 0.2:
            dep, old, new = "actions/setup-python", "4", "5"
            files = [File(".github/workflows/ci.yml", patch=make_hunk(
                18, ["    steps:", "      - uses: actions/checkout@v4"],
                [f"      - uses: {dep}@v{old}"], [f"      - uses: {dep}@v{new}"], ["        with:"]))]
            eco = "github_actions"
        else:
            eco = self.p.ecosystem
            files = [File(self.p.manifest, patch=make_hunk(
                self.rng.randint(8, 30), [self.dep_line("base", "1.0.0")],
                [self.dep_line(dep, old)], [self.dep_line(dep, new)], [self.dep_line("extra", "2.1.0")]))]
            n = self.rng.randint(3, 30)
            files.append(self.text_file(self.p.lockfile, n, n))
        body = (f"Bumps [{dep}](https://github.com/{dep}) from {old} to {new}.\n"
                "<details>\n<summary>Release notes</summary>\n\n"
                f"<blockquote><h2>v{new}</h2><ul><li>{self.rng.choice(_SENTENCES)}</li></ul></blockquote>\n"
                "</details>\n\n"
                f"[![Dependabot compatibility score](https://dependabot-badges.githubapp.com/badges/"
                f"compatibility_score?dependency-name={dep}&package-manager={eco}&previous-version={old}"
                f"&new-version={new})](https://docs.github.com/en/github/managing-security-vulnerabilities)\n\n"
                "Dependabot will resolve any conflicts with this PR as long as you don't alter it yourself.")
        return dict(title=f"Bump {dep} from {old} to {new}", files=files, raw_body=body,
                    labels=["dependencies", eco.split("_")[0]], author="dependabot[bot]",
                    association="NONE", head_ref=f"dependabot/{eco}/{dep}-{new}")

    def renovate(self) -> dict:
        dep, _old, new = self.rng.choice(self.p.deps)
        n = self.rng.randint(2, 40)
        files = [File(self.p.manifest, patch=make_hunk(
                     self.rng.randint(8, 30), [], [self.dep_line(dep, _old)], [self.dep_line(dep, new)], [])),
                 self.text_file(self.p.lockfile, n, n)]
        body = (f"This PR contains the following updates:\n\n| Package | Change |\n|---|---|\n"
                f"| {dep} | `{_old}` -> `{new}` |\n\n---\n\n### Configuration\n\n"
                "📅 **Schedule**: Branch creation - At any time.\n\n"
                "This PR was generated by [Mend Renovate](https://mend.io/renovate/).")
        return dict(title=f"chore(deps): update dependency {dep} to v{new}", files=files, raw_body=body,
                    labels=["dependencies"], author="renovate[bot]", association="NONE",
                    head_ref=f"renovate/{dep.replace('/', '-')}-{new.split('.')[0]}.x")

    def bugfix(self) -> dict:
        issues = self.take_issue()
        mods = self.rng.sample(self.modules, self.rng.randint(1, 2))
        files = [self.text_file(self.src(m), self.rng.randint(2, 30), self.rng.randint(1, 15)) for m in mods]
        files.append(self.text_file(self.test(mods[0]), self.rng.randint(8, 45), self.rng.randint(0, 4)))
        title = f"Fix {issues[0].title[0].lower() + issues[0].title[1:]}" if issues else \
            f"Fix {self.rng.choice(_NOUNS)} handling in {mods[0]}"
        return dict(title=title, files=files, labels=["bug"], issues=issues,
                    summary=f"Fix a bug in `{mods[0]}`.")

    def feature(self) -> dict:
        issues = self.take_issue()
        if issues and self.rng.random() < 0.2:
            issues += self.take_issue()
        mods = self.rng.sample(self.modules, self.rng.randint(3, 6))
        new_mod = f"{self.rng.choice(_NOUNS)}_{self.rng.choice(['support', 'backend', 'store', 'hooks'])}"
        files = [self.text_file(self.src(new_mod), self.rng.randint(60, 260), 0, "ADDED"),
                 self.text_file(self.test(new_mod), self.rng.randint(40, 160), 0, "ADDED")]
        files += [self.text_file(self.src(m), self.rng.randint(5, 80), self.rng.randint(0, 30)) for m in mods]
        files += [self.text_file(self.test(m), self.rng.randint(5, 60), self.rng.randint(0, 10)) for m in mods[:2]]
        if self.rng.random() < 0.5:
            files.append(self.text_file(f"docs/{new_mod}.md", self.rng.randint(10, 50), 0, "ADDED"))
        title = f"Add {new_mod.replace('_', ' ')}"
        return dict(title=title, files=files, labels=["enhancement"], issues=issues,
                    summary=f"Add `{new_mod}` and wire it into {', '.join(mods[:3])}.")

    def refactor(self) -> dict:
        mods = self.rng.sample(self.modules, 4)
        new = f"{mods[0]}_{self.rng.choice(['impl', 'core', 'base'])}"
        files = [
            File(self.src(new), change_type="RENAMED", previous_path=self.src(mods[0])),  # pure rename
            self.text_file(self.src(f"{mods[1]}_legacy"), 0, self.rng.randint(10, 90), "DELETED"),
            self.text_file(self.src(mods[2]), self.rng.randint(3, 40), self.rng.randint(3, 40)),
            self.text_file(self.test(new), self.rng.randint(1, 10), self.rng.randint(1, 10),
                           "RENAMED", self.test(mods[0])),
        ]
        return dict(title=f"Refactor {mods[0]} into {new}", files=files, labels=["refactor"],
                    summary=f"Move `{mods[0]}` to `{new}` and drop the legacy `{mods[1]}` shim.")

    def asset(self) -> dict:
        files = [File("docs/assets/logo.png", binary=True), File("docs/assets/logo-dark.svg", binary=True,
                                                                 change_type="ADDED"),
                 self.text_file("README.md", 1, 1)]
        return dict(title="Update project logo", files=files, labels=["documentation"],
                    summary="New logo, with a dark-mode variant.", testing=False)

    def large(self, n_files: int) -> dict:
        base = self.p.src.split("{mod}")[0].format(pkg=self.pkg).rstrip("/")
        paths = [f"{base}/{sub}/{mod}.{self.p.ext}" for sub in _SUBPACKAGES for mod in _MODULES]
        paths = paths[:n_files]
        while len(paths) < n_files:
            paths.append(f"legacy/part_{len(paths):04d}.{self.p.ext}")
        files = [self.text_file(p, self.rng.randint(1, 6), self.rng.randint(1, 6)) for p in sorted(paths)]
        title = self.rng.choice(["Apply formatter to the whole codebase", "Migrate to the new logging API",
                                 "Add type annotations across the codebase"])
        return dict(title=title, files=files, labels=["chore"], summary="Mechanical change, no behaviour change.")

    # -- assembly
    def make_pr(self, kind: str, state: str, n_files: int = 0) -> PR:
        spec = self.large(n_files) if kind == "large" else getattr(self, kind)()
        number = self.next_number()
        self.clock += timedelta(minutes=self.rng.randint(20, 60 * 70))
        created = self.clock
        author, assoc = self.human()
        author = spec.get("author", author)
        assoc = spec.get("association", assoc)
        body = spec.get("raw_body") or self.body(spec.get("summary", spec["title"]), spec.get("issues", []),
                                                 spec.get("testing", True))
        merged_at = closed_at = None
        if state == "MERGED":
            merged = created + timedelta(minutes=self.rng.randint(5, 60 * 24 * 6))
            merged_at = closed_at = format_iso(merged)
            late = self.rng.random() < 0.3  # comments/labels after merge move updatedAt on
            updated = merged + (timedelta(hours=self.rng.randint(1, 24 * 40)) if late
                                else timedelta(seconds=self.rng.randint(1, 30)))
        elif state == "CLOSED":
            closed = created + timedelta(hours=self.rng.randint(1, 24 * 20))
            closed_at = format_iso(closed)
            updated = closed + timedelta(seconds=self.rng.randint(1, 30))
        else:
            updated = created + timedelta(hours=self.rng.randint(0, 24 * 30))
        files = sorted(spec["files"], key=lambda f: f.path)
        return PR(
            number=number, title=spec["title"], body=body, author=author, author_association=assoc,
            labels=list(spec.get("labels", [])), state=state, created_at=format_iso(created),
            updated_at=format_iso(updated), merged_at=merged_at, closed_at=closed_at,
            base_ref=self.branch,
            head_ref=spec.get("head_ref") or f"{author.split('[')[0]}/{kind}-{number}",
            base_oid=_sha1(self.owner, self.name, number, "base"),
            head_oid=_sha1(self.owner, self.name, number, "head"),
            merge_commit_oid=_sha1(self.owner, self.name, number, "merge") if state == "MERGED" else None,
            files=files, closing_issues=spec.get("issues", []) if state == "MERGED" else [],
            database_id=_stable_int(self.owner, self.name, number, lo=10**9, hi=2 * 10**9),
            draft=state == "OPEN" and self.rng.random() < 0.2, kind=kind,
        )


_KIND_WEIGHTS = {
    "typo": 7, "docs": 7, "version_bump": 6, "ci": 6, "lockfile": 5, "dependabot": 14,
    "renovate": 6, "bugfix": 20, "feature": 15, "refactor": 7, "asset": 4,
}


def _gen_repo_prs(gen: _RepoGen, n_prs: int, large_sizes: Sequence[int]) -> list[PR]:
    rng = gen.rng
    kinds, weights = zip(*_KIND_WEIGHTS.items(), strict=True)
    large_at = {rng.randrange(n_prs // 4, max(n_prs // 4 + 1, 3 * n_prs // 4)) + i: size
                for i, size in enumerate(large_sizes)} if n_prs else {}
    prs = []
    for i in range(n_prs):
        if i in large_at:
            prs.append(gen.make_pr("large", "MERGED", large_at[i]))
            continue
        roll = rng.random()
        state = "MERGED" if roll < 0.85 else ("OPEN" if roll < 0.93 else "CLOSED")
        prs.append(gen.make_pr(rng.choices(kinds, weights)[0], state))
    return prs


def _search_repos(rng: random.Random, n: int, taken: set[str]) -> list[Repo]:
    adjectives = ["awesome", "tiny", "fast", "open", "deep", "smart", "super", "hyper", "micro",
                  "neo", "easy", "modern", "simple", "secure", "cloud", "rusty", "py", "go"]
    nouns = ["api", "kit", "lab", "db", "ml", "ui", "cli", "ops", "net", "bot", "vm", "os", "sdk",
             "engine", "server", "parser", "router", "store", "grid", "flow", "viz", "shell"]
    owners = [f"{a}{b}" for a in ("ana", "ben", "cyd", "dev", "eli", "fox", "gus", "hal", "ida", "jon")
              for b in ("", "-labs", "-io", "hq", "42", "-org")]
    repos: list[Repo] = []
    for i in range(n):
        while True:
            owner, name = rng.choice(owners), f"{rng.choice(adjectives)}-{rng.choice(nouns)}"
            if rng.random() < 0.5:
                name += f"-{rng.choice(nouns)}"
            if f"{owner}/{name}".lower() not in taken:
                taken.add(f"{owner}/{name}".lower())
                break
        stars = round(10_000 * 40 ** rng.random())  # log-uniform over 10k..400k
        created = datetime(2010, 1, 1, tzinfo=timezone.utc) + timedelta(days=rng.randint(0, 4700))
        pushed = datetime(2023, 6, 1, tzinfo=timezone.utc) + timedelta(minutes=rng.randint(0, 60 * 24 * 600))
        lang = rng.choice(_LANGS_SEARCH)
        repos.append(Repo(
            owner=owner, name=name, stars=stars, language=lang, license=rng.choice(_LICENSE_POOL),
            archived=rng.random() < 0.06, fork=rng.random() < 0.05,
            default_branch=rng.choice(["main", "main", "master", "develop"]),
            created_at=format_iso(created), pushed_at=format_iso(pushed),
            description=f"{name.replace('-', ' ').capitalize()} for {rng.choice(_TOPICS)} "
                        f"({lang or 'docs'})",
            forks=stars // rng.randint(5, 40), topics=rng.sample(_TOPICS, rng.randint(0, 3)),
            owner_type=rng.choice(["Organization", "User"]),
            id=10**8 + i * 37 + rng.randint(0, 30),
        ))
    return repos


def make_fixtures(
    seed: int = 0,
    n_repos: int = 3,
    prs_per_repo: int = 120,
    *,
    n_search_repos: int = 2500,
    n_private_repos: int = 1,
    private_prs: int = 12,
    private_tokens: Iterable[str] = ("tok-a",),
    large_pr_files: Sequence[int] = (250, 320),
) -> Fixtures:
    """Generate deterministic fixtures.

    * ``n_repos`` public crawl targets with ``prs_per_repo`` PRs each (~85 % merged, the rest
      OPEN or CLOSED-unmerged), stars between 12k and 150k, languages Python/TypeScript/Go/Rust.
    * Repository ``i`` gets one extra-large merged PR with ``large_pr_files[i % len]`` files
      (defaults: 250 and 320 files; more than 300 files makes the diff media type answer 406).
    * ``n_private_repos`` private repositories (``private_prs`` PRs) visible only to
      ``private_tokens``.
    * ``n_search_repos`` discovery-only repositories with stars spread log-uniformly between
      10k and 400k (some archived, some forks, many languages and licences).

    Generation takes a few hundred milliseconds, so results are cached per argument set and
    each call returns a fresh :meth:`Fixtures.clone` that the caller may mutate freely.
    """
    key = (seed, n_repos, prs_per_repo, n_search_repos, n_private_repos, private_prs,
           tuple(private_tokens), tuple(large_pr_files))
    with _CACHE_LOCK:
        cached = _CACHE.get(key)
        if cached is None:
            cached = _CACHE[key] = _generate(*key)
    return cached.clone()


_CACHE: dict[tuple, Fixtures] = {}
_CACHE_LOCK = threading.Lock()


def _generate(seed: int, n_repos: int, prs_per_repo: int, n_search_repos: int, n_private_repos: int,
              private_prs: int, private_tokens: tuple[str, ...], large_pr_files: tuple[int, ...]) -> Fixtures:
    rng = random.Random(f"fixtures:{seed}")
    fixtures = Fixtures(seed=seed)
    taken: set[str] = set()
    names = rng.sample(_REPO_NAMES, min(len(_REPO_NAMES), n_repos + n_private_repos))
    for i in range(n_repos + n_private_repos):
        private = i >= n_repos
        owner = rng.choice(_ORGS)
        name = names[i] if i < len(names) else f"project-{i}"
        lang = _LANGS_MAIN[i % len(_LANGS_MAIN)] if not private else "Python"
        branch = "main" if rng.random() < 0.8 else "master"
        repo_rng = random.Random(f"repo:{seed}:{i}")
        gen = _RepoGen(repo_rng, _PROFILES[lang], owner, name, branch)
        sizes = [] if private or not large_pr_files else [large_pr_files[i % len(large_pr_files)]]
        prs = _gen_repo_prs(gen, private_prs if private else prs_per_repo, sizes)
        repo = Repo(
            owner=owner, name=name, stars=rng.randint(12_000, 150_000), language=lang,
            license=rng.choice(["MIT", "Apache-2.0", "BSD-3-Clause", "MPL-2.0"]) if i % 3 != 2 else None,
            private=private, visible_to=frozenset(private_tokens) if private else frozenset(),
            default_branch=branch,
            created_at=format_iso(datetime(2016, 1, 1, tzinfo=timezone.utc) + timedelta(days=rng.randint(0, 2000))),
            forks=rng.randint(300, 9000), topics=rng.sample(_TOPICS, 3), prs=prs,
        )
        taken.add(repo.full_name.lower())
        fixtures.repos.append(repo)
    fixtures.search_repos = _search_repos(random.Random(f"search:{seed}"), n_search_repos, taken)
    return fixtures
