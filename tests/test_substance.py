"""Substance analysis: mechanical change that touches code is told apart from new logic.

Pure tests of the line sorting, then one built history with a PR for each rule, mined by
synth, decided, and explained (`synth explain` shows each rule firing)."""

from __future__ import annotations

import pytest

from synth.diffs import changed_lines, code_flags
from synth.filtering import decide, load_rules
from synth.substance import analyse, file_lines
from synth.sources.history import build_repository


def lines_of(path: str, patch: str):
    sides = changed_lines(patch)
    return file_lines(path, patch, sides, (code_flags(path, sides[0]), code_flags(path, sides[1])))


def patch(*lines: str) -> str:
    return "@@ -1,1 +1,1 @@\n" + "\n".join(lines) + "\n"


def test_a_three_line_fix_counts_three_not_six():
    p = patch(" def f(x):", "-    if x > 1:", "-        return 2", "-    return x",
              "+    if x >= 1:", "+        return 3", "+    return x + 1")
    s = analyse([lines_of("a.py", p)])
    assert (s.code_added, s.code_deleted, s.logic_lines) == (3, 3, 3)


def test_code_moved_between_files_is_moved_not_logic():
    body = ["def parse(text):", "    parts = text.split(',')", "    values = [int(p) for p in parts]",
            "    return sum(values) / len(values)"]
    old = lines_of("old.py", patch(*("-" + ln for ln in body)))
    new = lines_of("new.py", patch(*("+" + ln for ln in body)))
    s = analyse([old, new])
    assert s.moved_lines == 4 and s.logic_lines == 0


def test_a_common_line_on_both_sides_is_not_a_move():
    # `if err != nil {` deleted in one place and added in another is a coincidence, not a
    # moved block: only runs of three or more lines count as moved
    p = patch("-\tif err != nil {", "-\t\treturn fmt.Errorf(\"old: %w\", err)", "+\tv, err := load(path)",
              "+\tif err != nil {", "+\t\treturn nil, wrap(err)")
    s = analyse([lines_of("a.go", p)])
    assert s.moved_lines == 0 and s.logic_added == 3


def test_a_symbol_renamed_across_files_is_renamed():
    a = lines_of("a.py", patch("-    stream = BaseTCPStream(sock)", "+    stream = BaseSocketStream(sock)",
                               "-class BaseTCPStream:", "+class BaseSocketStream:"))
    b = lines_of("b.py", patch("-from .streams import BaseTCPStream",
                               "+from .streams import BaseSocketStream",
                               "-def open(s) -> BaseTCPStream:", "+def open(s) -> BaseSocketStream:"))
    s = analyse([a, b])
    assert s.renamed_lines >= 3 and ("BaseTCPStream", "BaseSocketStream", 4) in s.renames
    assert s.logic_lines == 0


def test_parameters_declared_and_forwarded_are_plumbing():
    p = patch("+    timeout: float = 5.0,", "+        timeout=timeout,", "+    self.timeout = timeout",
              "+    Timeout: timeout,", "+import socket", "+    )")
    s = analyse([lines_of("a.py", p)])
    assert s.logic_lines == 0 and s.plumbing_lines == 5 and s.syntax_lines == 1


def test_a_line_that_only_gains_type_annotations_is_plumbing():
    # loguru#1368, scrapy#6276: annotations added across a module are not new logic
    p = patch("-def parse_size(size):", "+def parse_size(size: str) -> Optional[float]:",
              "-    async def get(self, key, default=None):",
              "+    async def get(self, key: str, default: Any = None) -> Any:",
              "-    count = 0", "+    count: int = 0",
              "-    self.streams = dict()", "+    self.streams = dict()  # type: Dict[int, Stream]",
              "-def f(x: Optional[int]) -> Optional[str]:", "+def f(x: int | None) -> str | None:",
              # a changed default, a new parameter, a changed value: logic, annotated or not
              "-def g(a, b=1):", "+def g(a: int, b: int = 2):",
              "-def h(a):", "+def h(a: int, strict: bool):",
              "-    total = 0", "+    total: float = 0.5")
    s = analyse([lines_of("a.py", p)])
    assert s.plumbing_lines == 10 and s.logic_added == 3 and s.logic_deleted == 3, s
    # only Python lines are read this way
    assert analyse([lines_of("a.go", patch("-x := 0", "+x: int = 0"))]).plumbing_lines == 0


def test_lines_of_literals_only_are_data_not_logic():
    p = patch("+NAMES = [", '+    "Aaron",', "+    'Abbott',", '+    ("DE", 49),', '+    "de": -1.5,',
              "+    None,", "+    {'code': \"FR\", 'eu': True},", "+]",
              "+def name(i):", '+    return NAMES[i % len(NAMES)] or "?"', '+    fmt("x"),')
    s = analyse([lines_of("a.py", p)])
    # (a bare `None,` reads as a name declared, plumbing, before it is looked at as data)
    assert (s.data_lines, s.plumbing_lines, s.syntax_lines) == (5, 1, 1), s
    assert s.logic_lines == 4  # NAMES = [, the def, the return, a call


def test_the_same_edit_at_many_sites_counts_once():
    files = [lines_of(f"flag_{i}.go", patch("+\tif f.Value == nil {", "+\t\treturn nil", "+\t}"))
             for i in range(8)]
    s = analyse(files)
    assert s.logic_lines == 2 and s.repeated_lines == 14


# ---------------------------------------------------------------- a history, mined and explained

BASE = {
    "src/app/client.py": "\n".join([
        "import socket", "", "", "class Client:",
        "    def __init__(self, host, port=80):",
        "        self.host = host", "        self.port = port", "",
        "    def connect(self):",
        "        return socket.create_connection((self.host, self.port))", "",
        "    def legacy_send(self, data):",
        "        sock = self.connect()", "        sock.sendall(data)",
        "        reply = sock.recv(4096)", "        sock.close()",
        "        if not reply:", "            raise ValueError('empty reply')",
        "        return reply.decode('latin-1')", "",
        "    def legacy_ping(self):",
        "        return self.legacy_send(b'PING') == 'PONG'", ""]) + "\n",
    "src/app/util.py": "\n".join([
        "def checksum(data):", "    total = 0", "    for i, byte in enumerate(data):",
        "        total = (total * 31 + byte + i) % 65521", "    return total", "",
        "def chunks(data, size):", "    out = []", "    for start in range(0, len(data), size):",
        "        out.append(data[start:start + size])", "    return out", ""]) + "\n",
    "src/app/api.py": "\n".join([
        "from .client import Client", "", "",
        "def fetch(host, path):", "    client = Client(host)", "    return client.connect()", ""]) + "\n",
    "tests/test_client.py": "def test_placeholder():\n    assert True\n",
}

FEATURE = "\n".join([
    "import time", "", "",
    "class RetryPolicy:", "    def __init__(self, attempts=3, backoff=0.5):",
    "        if attempts < 1:", "            raise ValueError('attempts must be at least 1')",
    "        self.attempts = attempts", "        self.backoff = backoff", "",
    "    def delays(self):", "        delay = self.backoff", "        out = []",
    "        for _ in range(self.attempts - 1):", "            out.append(delay)",
    "            delay = min(delay * 2, 30.0)", "        return out", "",
    "    def run(self, call):", "        last = None", "        for wait in [0.0] + self.delays():",
    "            if wait:", "                time.sleep(wait)", "            try:",
    "                return call()", "            except OSError as exc:",
    "                last = exc", "        raise last", ""]) + "\n"


def _pr(n, title, day, **kw):
    return {"kind": "squash", "pr": n, "title": title, "author": "Ann <ann@example.com>",
            "date": f"2024-05-{day:02d}T10:00:00+00:00", **kw}


HISTORY = {"repo": {"name": "acme/netkit"}, "commits": [
    {"kind": "direct", "message": "init", "author": "Ann <ann@example.com>",
     "date": "2024-05-01T09:00:00+00:00", "files": BASE},
    _pr(10, "Add a retry policy for flaky connections", 2, files={
        "src/app/retry.py": FEATURE,
        "tests/test_retry.py": "from app.retry import RetryPolicy\n\n\ndef test_delays():\n"
                               "    assert RetryPolicy(3, 1).delays() == [1, 2]\n"}),
    _pr(11, "Drop the deprecated legacy_send and legacy_ping", 3, edits=[{
        "path": "src/app/client.py",
        "find": BASE["src/app/client.py"][BASE["src/app/client.py"].index("    def legacy_send"):],
        "replace": ""}]),
    _pr(12, "Move chunks() to its own module", 4, edits=[
        {"path": "src/app/util.py", "find": "def chunks(data, size):\n    out = []\n"
         "    for start in range(0, len(data), size):\n        out.append(data[start:start + size])\n"
         "    return out\n", "replace": ""}],
        files={"src/app/chunking.py": "def chunks(data, size):\n    out = []\n"
               "    for start in range(0, len(data), size):\n"
               "        out.append(data[start:start + size])\n    return out\n"}),
    _pr(13, "Rename Client to Connection", 5, edits=[
        {"path": "src/app/client.py", "find": "class Client:", "replace": "class Connection:"},
        {"path": "src/app/api.py", "find": "from .client import Client",
         "replace": "from .client import Connection"},
        {"path": "src/app/api.py", "find": "    client = Client(host)",
         "replace": "    client = Connection(host)"}]),
    _pr(14, "Pass a timeout through fetch() to the client", 6, edits=[
        {"path": "src/app/api.py", "find": "def fetch(host, path):\n    client = Connection(host)",
         "replace": "def fetch(\n    host,\n    path,\n    timeout: float = 10.0,\n):\n"
                    "    client = Connection(\n        host,\n        timeout=timeout,\n    )"},
        {"path": "src/app/client.py", "find": "    def __init__(self, host, port=80):\n"
         "        self.host = host",
         "replace": "    def __init__(self, host, port=80, timeout=None):\n        self.timeout = timeout\n"
                    "        self.host = host"}]),
    _pr(15, "Fix off-by-one in checksum", 7, edits=[
        {"path": "src/app/util.py", "find": "byte + i) % 65521", "replace": "byte + i + 1) % 65521"}],
        files={"tests/test_util.py": "from app.util import checksum\n\n\n"
               + "".join(f"def test_checksum_{i}():\n    assert checksum(b'{'x' * i}') >= 0\n\n"
                         for i in range(6))}),
    _pr(16, "Fix flake8 warnings", 8, edits=[
        {"path": "src/app/util.py", "find": "    total = 0\n", "replace": "    total = 0  # noqa\n"}]),
    _pr(18, "Add default ports for more schemes", 10, files={
        "src/app/ports.py": "".join(f"{name.upper()}_PORT = {port}\n" for name, port in (
            ("http", 80), ("https", 443), ("ftp", 21), ("ssh", 22), ("smtp", 25),
            ("imap", 143), ("pop3", 110), ("ldap", 389))),
        "tests/test_ports.py": "".join(f"def test_port_{i}():\n    assert {i} >= 0\n\n"
                                       for i in range(5))}),
    _pr(19, "Add country calling codes", 11, files={
        "src/app/countries.py": "CODES = [\n" + "".join(
            f'    ("{c}", {n}),\n' for c, n in (
                ("DE", 49), ("FR", 33), ("IT", 39), ("ES", 34), ("PT", 351), ("NL", 31),
                ("BE", 32), ("LU", 352), ("AT", 43), ("CH", 41), ("PL", 48), ("CZ", 420),
                ("SK", 421), ("HU", 36), ("RO", 40), ("BG", 359), ("GR", 30), ("DK", 45),
                ("SE", 46), ("NO", 47), ("FI", 358), ("IE", 353), ("GB", 44), ("IS", 354)))
        + "]\n\n\ndef calling_code(country):\n    for c, n in CODES:\n        if c == country:\n"
        "            return n\n    raise KeyError(country)\n"}),
    _pr(20, "Type-annotate the client, retry and utilities", 12, edits=[
        {"path": f"src/app/{path}", "find": find, "replace": replace} for path, find, replace in (
            ("util.py", "def checksum(data):", "def checksum(data: bytes) -> int:"),
            ("util.py", "    total = 0  # noqa", "    total: int = 0  # noqa"),
            ("client.py", "    def __init__(self, host, port=80, timeout=None):",
             "    def __init__(self, host: str, port: int = 80, timeout: float | None = None) -> None:"),
            ("client.py", "    def connect(self):", "    def connect(self) -> socket.socket:"),
            ("chunking.py", "def chunks(data, size):", "def chunks(data: bytes, size: int) -> list[bytes]:"),
            ("chunking.py", "    out = []", "    out: list[bytes] = []"),
            ("retry.py", "    def __init__(self, attempts=3, backoff=0.5):",
             "    def __init__(self, attempts: int = 3, backoff: float = 0.5) -> None:"),
            ("retry.py", "    def delays(self):", "    def delays(self) -> list[float]:"),
            ("retry.py", "    def run(self, call):", "    def run(self, call: Callable[[], T]) -> T:"),
            ("retry.py", "        out = []", "        out: list[float] = []"))]),
    _pr(17, "Increase test coverage of the client", 9, files={
        "tests/test_client.py": "def test_placeholder():\n    assert True\n\n\ndef test_more():\n"
                                "    assert 1 + 1 == 2\n"}),
]}


@pytest.fixture(scope="module")
def netkit(tmp_path_factory):
    return build_repository(HISTORY, tmp_path_factory.mktemp("netkit") / "netkit")


@pytest.fixture(scope="module")
def mined(netkit, tmp_path_factory):
    from synth.sources.git import GitSource
    src = GitSource(netkit)
    return {pr.number: pr for pr in src.pull_requests(src.list_pr_commits())}


@pytest.mark.parametrize("number,code", [
    (11, "removal"), (12, "move_only"), (13, "symbol_rename"), (14, "pass_through"),
    (15, "too_small"), (16, "lint_only"), (17, "tests_only"), (19, "data_table"),
    (20, "pass_through")])  # 20: type annotations only
def test_mechanical_prs_are_dropped_with_their_code(mined, number, code):
    d = decide(mined[number], load_rules())
    assert not d.kept and code in d.reasons, (number, d.reasons, d.metrics)


def test_a_small_change_with_no_new_branch_is_too_small(mined):
    d = decide(mined[18], load_rules())
    assert not d.kept and "too_small" in d.reasons
    assert d.metrics["logic_lines"] == 8 and d.metrics["logic_branches"] == 0


def test_explain_says_a_change_opens_no_branch(cli, netkit, tmp_path):
    db = tmp_path / "q.duckdb"
    assert cli("run", "--git", netkit, "--no-rewrite", "--db", db).code == 0
    r = cli("explain", "acme/netkit#18", "--db", db)
    line = next(ln for ln in r.out.splitlines() if "substance.min_logic_lines" in ln)
    assert "FIRED" in line and "opens no new branch or loop" in line, r.out


def test_the_feature_is_kept(mined):
    d = decide(mined[10], load_rules())
    assert d.kept and d.metrics["logic_lines"] >= 20 and d.metrics["moved_lines"] == 0


def test_coverage_push_with_code_is_coverage_only(mined):
    from dataclasses import replace
    from synth.models import FileChange
    pr = mined[17]
    code = FileChange("src/app/util.py", "modified", 12, 0,
                      patch="@@ -1 +1 @@\n" + "".join(f"+    value_{i} = compute({i}) + {i}\n"
                                                       for i in range(12)))
    d = decide(replace(pr, files=pr.files + (code,)), load_rules())
    assert not d.kept and "coverage_only" in d.reasons


@pytest.mark.parametrize("number,rule", [
    (11, "substance.removal"), (12, "substance.moved"), (13, "substance.renamed"),
    (14, "substance.plumbing"), (15, "substance.min_logic_lines"), (16, "titles.lint_only"),
    (19, "substance.data"), (20, "substance.plumbing")])
def test_explain_shows_each_rule_firing(cli, netkit, tmp_path, number, rule):
    db = tmp_path / "q.duckdb"
    assert cli("run", "--git", netkit, "--no-rewrite", "--db", db).code == 0
    r = cli("explain", f"acme/netkit#{number}", "--db", db)
    assert r.code == 0, r.err
    line = next(ln for ln in r.out.splitlines() if rule in ln)
    assert "FIRED" in line, r.out
    assert "decision: DROPPED" in r.out
