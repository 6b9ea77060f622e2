"""`synth report`: the HTML page, its numbers, its scope, and the page in a real browser.

The browser tests start Debian's Chromium headless (``/usr/bin/chromium``, installed by
.ci/run) and drive it over the DevTools protocol with a small websocket client: the page
must load with no console error and no network request beyond the file itself, its
screenshot must not be blank, and the numbers in its DOM must match `synth stats`.
The second queue is made with the real CLI: three runs over two repositories (one with an
LLM stand-in that injects faults, so failures and costs exist), reviews by three reviewers.
"""

from __future__ import annotations

import base64
import io
import json
import os
import shutil
import subprocess
import tempfile
import time
import urllib.request
from datetime import datetime, timedelta
from pathlib import Path

import duckdb
import pytest

from dbutil import q as table
from histories import module_text
from standins.openai_server import OpenAIStandIn
from synth import app, config, report
from synth.clock import FakeClock
from synth.filtering import INFO_CODES
from synth.queue import Queue
from synth.sources.history import build_repository

CHROMIUM = "/usr/bin/chromium"


# ---------------------------------------------------------------- a headless browser

class Browser:
    """Headless Chromium on a loopback DevTools port, one page, driven over a websocket."""

    def __init__(self, workdir: Path):
        import websocket
        self.profile = Path(tempfile.mkdtemp(prefix="chromium-", dir=workdir))
        self.proc = subprocess.Popen(
            [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             "--no-first-run", "--no-default-browser-check", "--hide-scrollbars",
             f"--user-data-dir={self.profile}", "--remote-debugging-port=0",
             "--remote-debugging-address=127.0.0.1", "--window-size=1280,900", "about:blank"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        port_file = self.profile / "DevToolsActivePort"
        deadline = time.monotonic() + 30
        while not (port_file.exists() and port_file.read_text().strip()):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"chromium did not start (exit {self.proc.poll()})")
            time.sleep(0.05)
        port = int(port_file.read_text().split()[0])
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=10) as r:
            targets = json.load(r)
        url = next(t["webSocketDebuggerUrl"] for t in targets if t["type"] == "page")
        self.ws = websocket.create_connection(url, timeout=30, suppress_origin=True)
        self.events: list[dict] = []
        self._id = 0
        for domain in ("Page", "Runtime", "Log", "Network"):
            self.call(f"{domain}.enable")

    def call(self, method: str, **params) -> dict:
        self._id += 1
        self.ws.send(json.dumps({"id": self._id, "method": method, "params": params}))
        while True:
            msg = json.loads(self.ws.recv())
            if msg.get("id") == self._id:
                if "error" in msg:
                    raise RuntimeError(f"{method}: {msg['error']}")
                return msg.get("result", {})
            self.events.append(msg)

    def open(self, path: Path) -> "PageVisit":
        self.events = []
        self.call("Page.navigate", url=path.resolve().as_uri())
        while not any(e.get("method") == "Page.loadEventFired" for e in self.events):
            self.events.append(json.loads(self.ws.recv()))
        self.call("Runtime.evaluate", expression="1")  # events of the load arrive before this
        return PageVisit(self, path)

    def close(self) -> None:
        self.ws.close()
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        shutil.rmtree(self.profile, ignore_errors=True)


class PageVisit:
    def __init__(self, browser: Browser, path: Path):
        self.browser, self.path = browser, path

    def js(self, expression: str):
        res = self.browser.call("Runtime.evaluate", expression=expression, returnByValue=True)
        if "exceptionDetails" in res:
            raise RuntimeError(res["exceptionDetails"])
        return res["result"].get("value")

    def errors(self) -> list[str]:
        out = []
        for e in self.browser.events:
            m, p = e.get("method"), e.get("params", {})
            if m == "Runtime.consoleAPICalled" and p["type"] in ("error", "assert", "warning"):
                out.append(f"console.{p['type']}: {p['args']}")
            elif m == "Runtime.exceptionThrown":
                out.append(f"exception: {p['exceptionDetails']}")
            elif m == "Log.entryAdded" and p["entry"]["level"] in ("error", "warning"):
                out.append(f"log: {p['entry']['text']}")
        return out

    def requests(self) -> list[str]:
        return [e["params"]["request"]["url"] for e in self.browser.events
                if e.get("method") == "Network.requestWillBeSent"]

    def screenshot(self, dest: Path):
        """A PNG of the viewport, saved to dest; returns its pixels (H x W x channels)."""
        import matplotlib.image
        png = base64.b64decode(self.browser.call("Page.captureScreenshot", format="png")["data"])
        dest.write_bytes(png)
        return matplotlib.image.imread(io.BytesIO(png))


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    if not os.access(CHROMIUM, os.X_OK):
        if os.environ.get("CI"):
            pytest.fail(f"{CHROMIUM} is missing: .ci/run installs Debian's chromium")
        pytest.skip(f"{CHROMIUM} is not installed (apt-get install chromium; .ci/run does it)")
    b = Browser(tmp_path_factory.mktemp("browser"))
    yield b
    b.close()


def assert_clean_visit(visit: PageVisit, shot: Path) -> None:
    assert visit.errors() == []
    assert visit.requests() == [visit.path.resolve().as_uri()]
    # ids are unique across the inline SVGs; every chart is an image named by its caption
    assert visit.js("(() => { const ids = [...document.querySelectorAll('[id]')].map(e => e.id);"
                    " return ids.length - new Set(ids).size; })()") == 0
    assert visit.js("[...document.querySelectorAll('svg')].every(s => s.getAttribute('role')"
                    " === 'img' && document.getElementById(s.getAttribute('aria-labelledby')))")
    pixels = visit.screenshot(shot)[:, :, :3]
    assert pixels.std() > 0.05  # not one flat colour
    background = pixels[0, 0]
    assert (abs(pixels - background).sum(axis=2) > 0.1).mean() > 0.02  # drawn on, not blank


def dom_numbers(visit: PageVisit) -> dict:
    return visit.js("""JSON.stringify({
        tiles: Object.fromEntries([...document.querySelectorAll('dd[id^="n-"]')]
                                  .map(e => [e.id.slice(2), Number(e.dataset.value)])),
        reasons: Object.fromEntries([...document.querySelectorAll('#t-reasons tr[data-key]')]
                 .map(tr => [tr.dataset.key, Number(tr.querySelector('td[data-col="prs"]').dataset.value)])),
        kappa: [...document.querySelectorAll('#t-kappa tr[data-key]')].map(tr =>
                 ['reviewer_a', 'reviewer_b', 'shared_tasks', 'kappa'].map(c => {
                     const td = tr.querySelector(`td[data-col="${c}"]`);
                     return td.dataset.value === undefined ? td.textContent : Number(td.dataset.value); })),
        fleiss: document.querySelector('#fleiss') ? document.querySelector('#fleiss').dataset.value : null,
        queue: document.querySelector('#queue-file').textContent,
        version: document.querySelector('#synth-version').textContent,
        made: document.querySelector('#made-at').getAttribute('datetime'),
        svgs: document.querySelectorAll('svg').length,
        charts_without_table: [...document.querySelectorAll('figure')].filter(
            f => f.querySelector('.chart') && !f.querySelector('table')).length,
    })""")


def assert_matches_stats(visit: PageVisit, db: Path) -> dict:
    """The page's numbers against `synth stats` (app.stats) on the same queue."""
    settings = settings_for(db)
    stats = app.stats(settings)
    got = json.loads(dom_numbers(visit))
    tiles = got["tiles"]
    for key in ("repos", "pull_requests", "kept", "dropped", "tasks", "open_failures", "runs"):
        assert tiles[key] == stats[key], key
    assert {k[7:]: v for k, v in tiles.items() if k.startswith("status-") and v} == \
        stats["tasks_by_status"]
    assert got["reasons"] == stats["dropped_by_reason"]
    assert got["queue"] == str(db.resolve())
    from synth import __version__
    assert got["version"] == __version__ and got["made"].endswith("Z")
    assert got["charts_without_table"] == 0
    return got


def settings_for(db: Path):
    settings = config.load(None)
    settings.queue.db = str(db)
    return settings


# ---------------------------------------------------------------- queues

def small_repo(root: Path, name: str, n: int, docs: int = 0) -> Path:
    """A clone of ``name`` with n substantive squash PRs (two new code modules each), then
    ``docs`` docs-only PRs, interleaved."""
    commits = [{"kind": "direct", "message": "init", "author": "A <a@example.com>",
                "date": "2024-01-01T00:00:00+00:00", "files": {"README.md": "# x\n"}}]
    short = name.split("/")[1]
    for i in range(n + docs):
        files = ({f"src/{short}_{i}.py": module_text(f"{short}_{i}", 9),
                  f"src/glue_{i}.py": module_text(f"glue_{i}", 9)} if i % 3 or i >= 3 * docs
                 else {f"docs/page_{i}.md": f"# Page {i}\n\nSome words.\n"})
        commits.append({
            "kind": "squash", "pr": 200 + i, "title": f"Add {short} part {i}",
            "body": f"Why part {i} is needed.", "author": "Dev <dev@example.com>",
            "date": (datetime(2024, 3, 1, 10) + timedelta(hours=i)).isoformat() + "+00:00",
            "files": files})
    return build_repository({"repo": {"name": name}, "commits": commits}, root / short)


@pytest.fixture(scope="module")
def busy_queue(tmp_path_factory):
    """Several runs (one with LLM faults), tasks by two rewriters, reviews by three people
    over three days, open failures: built with the real CLI."""
    from synth.cli import main
    work = tmp_path_factory.mktemp("busy")
    db = work / "queue.duckdb"
    engine = small_repo(work, "acme/engine", 8)
    widgets = small_repo(work, "acme/widgets", 12, docs=6)
    (work / "synth.toml").write_text("[rewrite.prices.m-test]\ninput = 2.5\noutput = 10.0\n")
    cwd, env = os.getcwd(), dict(os.environ)
    os.chdir(work)
    mp = pytest.MonkeyPatch()
    for var in ("SYNTH_DB", "SYNTH_CONFIG", "GITHUB_TOKEN", "GITHUB_TOKENS", "OPENAI_API_KEY",
                "OPENAI_BASE_URL", "GITHUB_API_URL", "GITHUB_GRAPHQL_URL"):
        mp.delenv(var, raising=False)
    clock = FakeClock()  # the LLM's retry waits take no time
    make = app.make_rewriter
    mp.setattr(app, "make_rewriter", lambda s, req, rules, *a, **kw: make(s, req, rules, clock=clock))

    def cli(*args) -> int:
        with open(os.devnull, "w") as null:
            import contextlib
            with contextlib.redirect_stdout(null), contextlib.redirect_stderr(null):
                return main([str(a) for a in args])
    try:
        # template tasks for the newest 10 PRs of acme/widgets; then the LLM for acme/engine
        # and every kept PR still without an LLM task (three PRs fail for good, other faults
        # are drawn at a seeded rate and mostly repaired); then the rest of acme/widgets,
        # filtered only
        assert cli("run", "--git", widgets, "--db", db, "--limit", "10") == 0
        with OpenAIStandIn(fault_rate=0.3, seed=4, kinds=["malformed", "refusal", "invalid_schema"]
                           ) as llm:
            llm.script("http_error", match="Add engine part 3", status=400)
            llm.script("truncated", match="Add engine part 5")
            llm.script("malformed", times=2, match="Add engine part 6")
            mp.setenv("OPENAI_BASE_URL", llm.base_url)
            mp.setenv("OPENAI_API_KEY", "sk-test-key-0000")
            assert cli("run", "--git", engine, "--db", db, "--model", "m-test", "--judge") == 3
        assert cli("run", "--git", widgets, "--db", db, "--no-rewrite") == 0
        ids = [r[0] for r in table(db, "SELECT task_id FROM tasks ORDER BY task_id")]
        assert len(ids) >= 12
        for i, reviewer in enumerate(["ann", "bob", "cy"]):
            mine = ids[i * 4: i * 4 + 8]  # overlapping slices: pairs share tasks
            assert cli("review", "approve", *mine[::2], "--reviewer", reviewer, "--db", db) == 0
            assert cli("review", "reject", *mine[1::3], "--reviewer", reviewer, "--db", db) == 0
            assert cli("review", "needs-edit", *mine[2::5], "--reviewer", reviewer,
                       "--db", db) == 0
        con = duckdb.connect(str(db))  # spread the actions over three days, as a week would
        con.execute("UPDATE review_events SET acted_at = acted_at - to_days((event_id % 3)::INT)")
        con.close()
    finally:
        mp.undo()
        os.chdir(cwd)
        os.environ.clear()
        os.environ.update(env)
    assert table(db, "SELECT count(*) FROM failures WHERE NOT resolved")[0][0] > 0
    assert table(db, "SELECT count(*) FROM tasks WHERE cost_usd > 0")[0][0] > 0
    return db


# ---------------------------------------------------------------- in the browser

def test_demo_report_in_a_browser(cli, tmp_path, browser):
    assert cli("run", "--demo").code == 0
    db = tmp_path / "data" / "queue.duckdb"
    r = cli("report", "--out", "report.html")
    assert r.code == 0 and "wrote report.html" in r.out, r
    visit = browser.open(tmp_path / "report.html")
    assert_clean_visit(visit, tmp_path / "demo.png")
    got = assert_matches_stats(visit, db)
    assert got["svgs"] >= 6 and got["kappa"] == [] and got["fleiss"] is None


def test_busy_queue_report_in_a_browser(cli, busy_queue, tmp_path, browser):
    r = cli("report", "--out", tmp_path / "busy.html", "--db", busy_queue)
    assert r.code == 0, r
    visit = browser.open(tmp_path / "busy.html")
    assert_clean_visit(visit, tmp_path / "busy.png")
    got = assert_matches_stats(visit, busy_queue)
    assert got["tiles"]["open_failures"] > 0 and got["tiles"]["cost_usd"] > 0
    # agreement: the same pairs and kappas as `synth review agreement`
    pairs, fleiss = app.review_agreement(settings_for(busy_queue))
    want = sorted((a, b, n, k) for a, b, n, k in pairs if n)
    shown = sorted(tuple(p) for p in got["kappa"])
    assert want and [p[:3] for p in shown] == [p[:3] for p in want]
    assert [p[3] for p in shown] == pytest.approx([p[3] for p in want])
    assert float(got["fleiss"]) == pytest.approx(fleiss, abs=5e-4)
    for section in ("funnel", "dropped", "llm", "quality", "review", "runs"):
        assert visit.js(f"document.querySelector('#{section} figure') !== null")
    for fig in ("llm_runs", "failures", "judge", "review_days", "kappa", "oldest", "runs"):
        assert visit.js(f"document.querySelector('#f-{fig} table') !== null"), fig


def test_the_browser_check_sees_errors_and_requests(browser, tmp_path):
    """The checks above can fail: a page with a console error and a remote image is caught."""
    page = tmp_path / "bad.html"
    page.write_text('<!DOCTYPE html><html><body><img src="http://127.0.0.1:9/x.png">'
                    '<script>console.error("boom")</script></body></html>')
    visit = browser.open(page)
    assert any("boom" in e for e in visit.errors())
    assert "http://127.0.0.1:9/x.png" in visit.requests()


# ---------------------------------------------------------------- the page itself

def test_funnel_tables_add_up(busy_queue):
    from synth.queue.report_sql import collect
    d = collect(Queue(busy_queue))
    repos = d.tables["funnel_repos"]
    assert repos.more == 0 and [r[0] for r in repos.rows] == ["acme/widgets", "acme/engine"]
    assert sum(r[1] for r in repos.rows) == d.totals["pull_requests"]
    assert sum(r[2] for r in repos.rows) == d.totals["kept"]
    assert sum(r[4] for r in repos.rows) == d.totals["tasks"]
    by_run = {}
    for run_id, _, _, n in d.tables["reasons_by_run"].rows:
        by_run[run_id] = by_run.get(run_id, 0) + n
    assert by_run and all(n > 0 for n in by_run.values())
    assert {r[0] for r in d.tables["rewriters"].rows} == {"llm", "template"}
    assert d.tables["judge"].rows and d.tables["review_days"].rows
    assert len({r[0] for r in d.tables["review_days"].rows}) == 3  # three days


def test_scope_by_repository_and_date(cli, busy_queue, tmp_path):
    settings = settings_for(busy_queue)
    out = tmp_path / "engine.html"
    assert cli("report", "--out", out, "--db", busy_queue, "--repo", "acme/engine").code == 0
    page = out.read_text()
    prs = table(busy_queue, "SELECT count(*) FROM pull_requests WHERE repo = 'acme/engine'")[0][0]
    assert f'id="n-pull_requests" data-value="{prs}"' in page and "acme/widgets" not in page
    res = app.report(settings, tmp_path / "future.html", since="2999-01-01")
    page = res.path.read_text()
    assert 'id="n-pull_requests" data-value="0"' in page and 'id="n-runs" data-value="0"' in page
    assert "since 2999-01-01" in page


def test_same_queue_same_page(busy_queue, tmp_path):
    now = datetime(2030, 1, 2, 3, 4, 5)
    a = report.write(Queue(busy_queue), tmp_path / "a.html", now=now)
    b = report.write(Queue(busy_queue), tmp_path / "b.html", now=now)
    assert a.path.read_bytes() == b.path.read_bytes()


def test_untrusted_text_is_escaped_and_nothing_loads(cli, tmp_path):
    assert cli("run", "--demo").code == 0
    db = tmp_path / "data" / "queue.duckdb"
    con = duckdb.connect(str(db))
    con.execute("UPDATE tasks SET title = '<script>alert(1)</script>', "
                "flags = ['$x$ <b>', 'template']")
    con.close()
    assert cli("report", "--out", "r.html").code == 0
    page = (tmp_path / "r.html").read_text()
    assert "<script" not in page.lower() and "&lt;script&gt;alert(1)" in page
    assert "$x$ &lt;b&gt;" in page  # in the flags chart and table, as text
    for attr in ("src=", "href=\"http", "@import", "url(http"):
        assert attr not in page


def test_an_empty_queue_gives_a_page(cli, tmp_path):
    Queue(tmp_path / "empty.duckdb").ensure()
    r = cli("report", "--out", "e.html", "--db", tmp_path / "empty.duckdb")
    assert r.code == 0, r
    page = (tmp_path / "e.html").read_text()
    assert 'id="n-pull_requests" data-value="0"' in page and "No run yet." in page


def test_run_writes_the_report_at_its_end(cli, tmp_path):
    r = cli("run", "--demo", "--report", "nightly.html")
    assert r.code == 0 and "report:        nightly.html" in r.out, r
    page = (tmp_path / "nightly.html").read_text()
    assert 'id="n-runs" data-value="1"' in page
    r = cli("run", "--demo", "--report", "missing/nightly.html")
    assert r.code == 2 and "does not exist" in r.err
    assert table(tmp_path / "data" / "queue.duckdb", "SELECT count(*) FROM runs")[0][0] == 1


@pytest.mark.parametrize("args, message", [
    (["--since", "last week"], "YYYY-MM-DD"), (["--out", "."], "is a folder")])
def test_bad_arguments_are_one_clear_line(cli, tmp_path, args, message):
    assert cli("run", "--demo").code == 0
    r = cli("report", *(["--out", "r.html"] if "--out" not in args else []), *args)
    assert r.code == 2 and message in r.err and "Traceback" not in r.err


def test_latest_decision_rule_is_the_candidates_views(cli, tmp_path):
    """The report counts PRs by their latest decision without the view's window; superseded
    decisions (a rescore), equal decision times and a third version give the same counts."""
    assert cli("run", "--demo").code == 0
    db = tmp_path / "data" / "queue.duckdb"
    con = duckdb.connect(str(db))
    # every PR re-decided under 'vb' a day later, flipped; under 'va' at that same time, as it
    # was (a tie: the smaller filter version wins); a third of them once more under 'vc'
    for version, flip, shift, where in (("vb", True, 1, "true"), ("va", False, 1, "true"),
                                        ("vc", True, 2, "number % 3 = 0")):
        con.execute(f"""
            INSERT INTO decisions (repo, number, filter_version, kept, reasons, metrics,
                                   decided_at, run_id)
            SELECT repo, number, '{version}', {'NOT kept' if flip else 'kept'},
                   CASE WHEN {'NOT kept' if flip else 'kept'} THEN ['substantive']
                        ELSE ['too_small', 'typo'] END, metrics,
                   decided_at + INTERVAL {shift} DAY, run_id
            FROM decisions WHERE filter_version NOT IN ('va', 'vb', 'vc') AND {where}""")
    con.close()
    from synth.queue.report_sql import collect
    stats = app.stats(settings_for(db))
    d = collect(Queue(db), info_codes=INFO_CODES)
    assert (d.totals["kept"], d.totals["dropped"]) == (stats["kept"], stats["dropped"])
    assert dict(d.tables["reasons"].rows) == stats["dropped_by_reason"]
    assert table(db, "SELECT count(DISTINCT filter_version) FROM decisions")[0][0] == 4
