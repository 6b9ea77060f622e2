"""Secret scrubbing (synth.rewrite.guards.scrub): the planted-secret corpus never leaves the
machine (not in what reaches the endpoint, not in stored task fields, not in an export), and
ordinary code is left alone (the false-positive figure, printed)."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from dbutil import q as table
from histories import module_text
from secret_corpus import PLACES, corpus
from standins.openai_server import OpenAIStandIn, task_responder
from synth.clock import FakeClock
from synth.filtering import load_rules
from synth.models import FileChange, LinkedIssue, PullRequest
from synth.rewrite.guards import scrub, scrub_spec
from synth.rewrite.llm import LLMClient
from synth.rewrite.rewriter import LLMRewriter
from synth.rewrite.template import TemplateRewriter
from synth.sources.history import build_repository

CORPUS = corpus()


def test_the_corpus_is_large_and_varied():
    kinds = Counter(s.kind for s in CORPUS)
    assert len(CORPUS) >= 80 and len(kinds) >= 15
    assert {s.place for s in CORPUS} == set(PLACES)


@pytest.mark.parametrize("secret", CORPUS, ids=lambda s: f"{s.kind}-{s.place}")
def test_every_planted_secret_is_scrubbed(secret):
    assert secret.value not in scrub(secret.line)
    assert "[REDACTED:" in scrub(secret.line)


def test_every_pattern_has_the_text_its_matches_hold():
    """scrub looks for its own patterns only in text holding one of a pattern's needles (a
    substring test, far cheaper than the regex on long lines): every pattern has needles,
    and every match of a pattern in the planted corpus holds one of its own."""
    import synth.rewrite.guards as g
    kinds = [k for k, _ in g._SECRET_PATTERNS]
    assert set(kinds) == set(g._NEEDLES) | set(g._NEEDLES_LOWER)
    matched = set()
    for secret in CORPUS:
        for kind, rx in g._SECRET_PATTERNS:
            for m in rx.finditer(secret.line):
                matched.add(kind)
                needles = g._NEEDLES.get(kind, ())
                lower = g._NEEDLES_LOWER.get(kind, ())
                assert any(n in m.group(0) for n in needles) or any(
                    n in m.group(0).lower() for n in lower), (kind, m.group(0))
    assert len(matched) >= 15  # the corpus exercises most patterns


def test_secrets_in_one_text_are_all_scrubbed():
    text = "\n".join(f"- {s.line}" for s in CORPUS)
    out = scrub(text)
    assert [s.kind for s in CORPUS if s.value in out] == []


@pytest.mark.parametrize("line,value", [
    ("password for staging: hunter2", "hunter2"),
    ("Password for the staging box: letmein", "letmein"),
    ("passwd=abc", "abc"),
    ("the root password is changeme42", "changeme42"),
    ("token: 0x7f3a-dev", "0x7f3a-dev"),
    ("api key = sandbox", "sandbox"),
    ("DB_PASSWORD=staging", "staging"),
    ('{"password": "pa55"}', "pa55"),
    ("use --password swordfish9 to log in", "swordfish9"),
    ("secret: opensesame", "opensesame"),
])
def test_keyword_pairs_are_caught_whatever_the_entropy(line, value):
    assert value not in scrub(line), scrub(line)


@pytest.mark.parametrize("line", [
    "def login(password: str, token: Optional[str] = None) -> Session:",
    "self.token = token",
    "token = os.environ['GITHUB_TOKEN']",
    "api_key = settings.openai_api_key.get_secret_value()",
    "password = getpass.getpass()",
    "export GITHUB_TOKEN=${{ secrets.GITHUB_TOKEN }}",
    "max_tokens = 4096",
    'token_type = "bearer"',
    "if not password:",
    "secret_key: SecretStr",
    "The secret is to keep the cache small.",
    "Tokens are refreshed every hour.",
    "password: <your password here>",
    "Authentication uses HTTP Basic authentication.",
    "see https://github.com/PyGithub/PyGithub/pull/2703 and 2016-09-14-Integrations-Early-Access",
    "commit 3f786850e387550fdab836ed7e6dc881de23001b fixed it",
    # met in real PRs (scrapy, redis/go-redis, sanic): templates, placeholders, headings
    'return f"{scheme}://{self.auth_user}:{self.auth_pass}@{host_port}"',
    "Example URI: ``ftp://user:pass@ftp.example.com/path/to/export.csv``",
    "(``socks5://username:password@some_proxy_server:port``)",
    "//\tredis://<user>:<password>@<host>:<port>/<db_number>",
    '"ftp://user:%(password)s@ftp.example.com/%(name)s.csv",',
    "\t// --- Example 1: Basic SetFromBuffer / GetToBuffer round-trip ---",
    't.Fatalf("missing token in args: KNN=%d SHARD_K_RATIO=%d FILTER=%d (args=%v)",',
    'request.meta["proxy"] = "https://user1:password1@example.com"',
    '"AWS_SECRET_ACCESS_KEY": "secret_key",',
    ".. _temporary security credentials: https://docs.aws.amazon.com/IAM/latest/x.html",
    # a local service's default (the password is the user name), published example keys
    'broker="pyamqp://guest:guest@rabbit:5672//",', 'sql.Open("mysql", "mysql://root:root@tcp(db)/x")',
    "AZURE=DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey=Eby8vdM02xNOcq"
    "FlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==;",
])
def test_code_and_prose_are_left_alone(line):
    assert scrub(line) == line


@pytest.mark.parametrize("line,value", [
    ("ftp://user:2%23um25%21M%23JZ@ftp.example.com/x.csv", "2%23um25%21M%23JZ"),
    ('os.environ["http_proxy"] = "https://user:s3cr3t@proxy:3128"', "s3cr3t"),
    ('assert h == b"Basic dXNlcjpwYXNz"', "dXNlcjpwYXNz"),  # base64 of user:pass
    ("Authorization: Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ==", "QWxhZGRpbjpvcGVuIHNlc2FtZQ"),
    ("Authorization: Basic k9Xq2LmZp7RtVw3N", "k9Xq2LmZp7RtVw3N"),  # not base64 of a pair, random
    ("password = 'hunter2%'", "hunter2%"),
    ("postgres://app:app2@db/x", "app2"),  # only the very user name is a default
    ("AccountKey=Zby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/"
     "KBHBeksoGMGw==;", "Zby8vdM02xNOcq"),  # one character off the published key
])
def test_credentials_next_to_those_placeholders_are_still_caught(line, value):
    assert value not in scrub(line), scrub(line)


CERT = """-----BEGIN CERTIFICATE-----
MIIEVTCCAz2gAwIBAgIJANuZ/6fbAJNcMA0GCSqGSIb3DQEBCwUAMH0xCzAJBgNV
BAYTAlhXMQswCQYDVQQIDAJYVzEVMBMGA1UEBwwMVGhlIEludGVybmV0MQ8wDQYD
-----END CERTIFICATE-----"""
KEY_LINE = "MIIEowIBAAKCAQEA5r2BzxXivtQXvIwrTGug8l6vjuDhf0WDHBU5yIHWvX1rT2MQ"


def test_a_certificate_is_public_and_a_private_key_is_not():
    """A PEM certificate is public by design: a test fixture's certificate stays whole, in text
    and in a diff. A private key next to it is replaced, line by line in a diff too."""
    from synth.patches import redact
    assert scrub(CERT) == CERT
    text = CERT + "\n-----BEGIN RSA PRIVATE KEY-----\n" + KEY_LINE + "\n-----END RSA PRIVATE KEY-----"
    assert KEY_LINE not in scrub(text) and CERT in scrub(text)
    diff = ("diff --git a/k.pem b/k.pem\n--- /dev/null\n+++ b/k.pem\n@@ -0,0 +1,7 @@\n"
            + "\n".join("+" + ln for ln in text.split("\n")))
    out, changed = redact(diff)
    assert changed and KEY_LINE not in out
    assert all(("+" + ln) in out.split("\n") for ln in CERT.split("\n"))
    # a random base64 line with no certificate around it is still a finding
    assert KEY_LINE not in redact("diff --git a/x b/x\n@@ -0,0 +1 @@\n+" + KEY_LINE)[0]


def _python_lines(root: Path) -> list[str]:
    lines: list[str] = []
    for f in sorted(root.rglob("*.py")):
        lines += f.read_text(encoding="utf-8", errors="replace").split("\n")
    return lines


def test_false_positives_on_ordinary_code(capsys):
    """How many lines of real projects' source the scrubber changes: synth itself and two
    installed libraries that handle credentials (httpx's auth and URL code, click)."""
    import click
    import httpx

    import synth
    total = changed = 0
    shown: list[str] = []
    for pkg in (synth, httpx, click):
        root = Path(pkg.__file__).parent
        lines = _python_lines(root)
        out = scrub("\n".join(lines)).split("\n")
        assert len(out) == len(lines)
        diff = [a for a, b in zip(lines, out) if a != b]
        total += len(lines)
        changed += len(diff)
        shown += [f"{pkg.__name__}: {a.strip()[:100]}" for a in diff]
    rate = changed / total
    with capsys.disabled():
        print(f"\nscrub false positives: {changed} of {total} lines of synth, httpx and click "
              f"changed ({rate:.3%})" + "".join(f"\n  {s}" for s in shown[:10]))
    assert rate <= 0.001, shown


# ---------------------------------------------------------------- end to end

def echo_model(request: dict) -> str:
    """A model that repeats what it was sent: anything that reached it reaches the task."""
    base = json.loads(task_responder(request))
    user = request["messages"][-1]["content"]
    lines = [ln.strip()[:200] for ln in user.splitlines() if ln.strip()]
    base["background"] = user[:1000]
    base["query"] = user[-1000:]
    for st in base["subtasks"]:
        st["constraints"] = lines[:8]
        st["goal"] = " ".join(lines)[:600]
    return json.dumps(base)


def _history(secrets) -> dict:
    commits = [{"kind": "direct", "message": "init", "author": "A <a@b.c>",
                "date": "2024-01-01T00:00:00+00:00", "files": {"README.md": "# x\n"}}]
    for i, s in enumerate(secrets):
        title = f"Add service part {i}"
        body = f"Part {i} of the service."
        files = {f"src/part_{i}.py": module_text(f"part_{i}", 9),
                 f"src/glue_{i}.py": module_text(f"glue_{i}", 9)}
        kind = "squash" if i % 2 else "merge"
        if s.place == "title":
            title = f"Add part {i} ({s.line})"
        elif s.place in ("body", "issue"):  # issues are linked on GitHub only: the body here
            body += f"\n\nNotes:\n{s.line}\n"
        elif s.place == "commit":
            kind = "squash"  # the squash commit's message is the PR's description
            body += f"\n\nCo-authored-by: B <b@c.d>\n{s.line}"
        else:  # patch
            files[f"src/config_{i}.py"] = f"# settings\n{s.line}\n" + module_text(f"config_{i}", 8)
        commits.append({"kind": kind, "pr": 100 + i, "title": title, "body": body,
                        "author": "Dev <dev@example.com>",
                        "date": f"2024-02-{1 + i % 27:02d}T{i % 24:02d}:00:00+00:00",
                        "files": files})
    return {"repo": {"name": "acme/leaky"}, "commits": commits}


def _leaks(text: str) -> list[str]:
    return [f"{s.kind}@{s.place}" for s in CORPUS if s.value in text]


def test_planted_secrets_never_leave_the_machine(cli, tmp_path, monkeypatch):
    """A history whose PR titles, descriptions, commit messages and patches carry the corpus:
    nothing reaches the endpoint, the queue's task fields or an export, through the LLM
    rewriter (a model that echoes what it reads) or the template rewriter."""
    repo = build_repository(_history(CORPUS), tmp_path / "leaky")
    for rewriter, args in (("llm", ["--model", "m-test"]), ("template", ["--rewriter", "template"])):
        db = tmp_path / f"{rewriter}.duckdb"
        with OpenAIStandIn(responder=echo_model) as llm:
            monkeypatch.setenv("OPENAI_BASE_URL", llm.base_url)
            monkeypatch.setenv("OPENAI_API_KEY", "sk-test-key-0000")
            r = cli("run", "--git", repo, "--db", db, *args)
            sent = json.dumps(llm.chat_requests)
        assert r.code == 0, r
        if rewriter == "llm":
            assert len(llm.chat_requests) >= len(CORPUS) and "[REDACTED:" in sent
            assert _leaks(sent) == []
        tasks = table(db, "SELECT title, background, query, subtasks::VARCHAR, modified_files::VARCHAR, "
                          "related_files::VARCHAR, flags::VARCHAR FROM tasks")
        assert len(tasks) == len(CORPUS)
        assert _leaks(json.dumps(tasks)) == []
        assert cli("review", "approve", "--where", "true", "--reviewer", "ann", "--db", db).code == 0
        out = tmp_path / f"export-{rewriter}"
        for fmt in ("jsonl", "parquet"):
            assert cli("export", "--out", out / fmt, "--format", fmt, "--db", db).code == 0, fmt
        exported = b"".join(f.read_bytes() for f in sorted(out.rglob("*")) if f.is_file())
        assert exported and _leaks(exported.decode("utf-8", "replace")) == []


def test_secrets_in_linked_issues_never_reach_the_endpoint_or_a_task():
    """Linked issues come from GitHub: PRs built here, rewritten directly."""
    secrets = [s for s in CORPUS if s.place in ("issue", "body")]
    prs = []
    for i, s in enumerate(secrets):
        files = (FileChange(f"src/m{i}.py", "added", 9, 0, patch="@@ -0,0 +1,9 @@\n"
                            + "".join(f"+x{j} = compute({j})\n" for j in range(9))),
                 FileChange(f"src/n{i}.py", "added", 9, 0, patch="@@ -0,0 +1,9 @@\n"
                            + "".join(f"+y{j} = compute({j})\n" for j in range(9))))
        prs.append(PullRequest(
            repo="acme/issues", number=i + 1, title=f"Fix part {i}", body="Fixes the part.",
            author="dev", merged_at=None, base_sha="a" * 40, merge_sha="b" * 40,
            url=f"https://github.com/acme/issues/pull/{i + 1}", files=files,
            linked_issues=(LinkedIssue(50 + i, f"Part {i} broken: {s.line}"[:200],
                                       f"Steps:\n{s.line}\nthanks"),)))
    rules = load_rules()
    with OpenAIStandIn(responder=echo_model) as llm:
        client = LLMClient("m-test", base_url=llm.base_url, api_key="sk-x", clock=FakeClock())
        results = LLMRewriter(client, rules, concurrency=4).rewrite_many(prs, {})
        sent = json.dumps(llm.chat_requests)
    assert all(hasattr(r, "spec") for r in results), results
    assert _leaks(sent) == [] and "[REDACTED:" in sent
    assert _leaks(json.dumps([r.spec.model_dump() for r in results])) == []
    templated = TemplateRewriter(rules).rewrite_many(prs, {})
    assert _leaks(json.dumps([t.spec.model_dump() for t in templated])) == []


def test_scrubbed_task_stays_within_the_schema_bounds():
    """A redaction marker is longer than a short secret: the field is cut to its bound, not
    turned into an invalid task."""
    from synth.models import TaskSpec
    item = ("x" * 180) + " password: hunter2"
    spec = TaskSpec.model_validate({
        "title": "t", "category": "backend", "background": "b", "query": "q",
        "subtasks": [{"title": "s", "goal": "g", "constraints": [item], "deliverables": ["d"],
                      "acceptance_criteria": ["a"]}] * 2, "difficulty": "easy"})
    clean = scrub_spec(spec)
    assert "hunter2" not in clean.model_dump_json()
