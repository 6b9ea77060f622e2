"""synth as a user installs it: a wheel and an sdist that carry the rules, prompts and demo;
the wheel installed into a fresh virtual environment and run from a folder that is not the
checkout; ``synth --version``; ``synth init --copy-defaults`` for a curator's own rules and
prompts."""

from __future__ import annotations

import json
import os
import re
import shutil
import site
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

import synth
from synth import config, paths

ROOT = Path(__file__).resolve().parents[1]
# what the build reads: the project's top level, nothing else of the checkout
BUILD_INPUTS = ("pyproject.toml", "README.md", "synth", "filters", "prompts", "data/demo")
# the checkout's folders of data and where the package carries them
RESOURCES = {"filters": "synth/filters", "prompts": "synth/prompts", "data/demo": "synth/data/demo"}
# variables that would point synth (or Python) back at the checkout or at real services
_LEAKY_ENV = ("SYNTH_HOME", "SYNTH_DB", "SYNTH_CONFIG", "PYTHONPATH", "PYTHONHOME",
              "GITHUB_TOKEN", "GITHUB_TOKENS", "OPENAI_API_KEY", "OPENAI_BASE_URL",
              "GITHUB_API_URL", "GITHUB_GRAPHQL_URL", "VIRTUAL_ENV")


def _files(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file() and "__pycache__" not in p.parts}


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in _LEAKY_ENV}
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    return env


# ---------------------------------------------------------------- in the checkout (fast)

def test_version_flag(cli):
    r = cli("--version")
    assert r.code == 0 and r.out.strip() == f"synth {synth.__version__}"


def test_resources_are_found_in_a_checkout_and_synth_home_wins(monkeypatch, tmp_path):
    monkeypatch.delenv("SYNTH_HOME", raising=False)
    assert (paths.filters_dir() / "default.toml").is_file()
    assert (paths.prompts_dir() / "task_v1.system.md").is_file()
    assert (paths.demo_dir() / "history.toml").is_file()
    monkeypatch.setenv("SYNTH_HOME", str(tmp_path))
    assert paths.filters_dir() == tmp_path / "filters"
    assert paths.prompts_dir() == tmp_path / "prompts"
    assert paths.demo_dir() == tmp_path / "data" / "demo"


def test_the_sample_settings_name_prompts_dir():
    assert "# prompts_dir = " in config.SAMPLE
    assert config.load(env={}).rewrite.prompts_dir is None


def test_init_copies_the_default_rules_and_prompts_and_points_at_them(cli, tmp_path, monkeypatch):
    from standins.openai_server import OpenAIStandIn

    r = cli("init", "--copy-defaults", "mine")
    assert r.code == 0, r
    for name in ("filters", "prompts"):
        shipped = _files(getattr(paths, f"{name}_dir")())
        assert shipped and _files(tmp_path / "mine" / name) == shipped
    settings = config.load(env={})
    assert settings.filters.files == ["mine/filters/default.toml"]
    assert settings.rewrite.prompts_dir == "mine/prompts"
    again = cli("init", "--copy-defaults", "mine")
    assert again.code == 2 and "--force" in again.err
    assert cli("init", "--copy-defaults", "mine", "--force").code == 0

    # the copied prompts are the ones sent to the LLM
    system = tmp_path / "mine" / "prompts" / "task_v1.system.md"
    system.write_text(system.read_text() + "\nHOUSE-RULE-7: answer in British English.\n")
    with OpenAIStandIn() as llm:
        monkeypatch.setenv("OPENAI_BASE_URL", llm.base_url)
        r = cli("run", "--demo", "--model", "m-test", "--db", "llm.duckdb")
        sent = [m["content"] for body in llm.chat_requests for m in body["messages"]
                if m["role"] == "system"]
    assert r.code == 0, r
    task_prompts = [s for s in sent if s.startswith("You turn a merged pull request ")]
    assert task_prompts and all("HOUSE-RULE-7" in s for s in task_prompts)  # (chains: chain_v1)

    # the copied rules are the ones that decide
    rules = tmp_path / "mine" / "filters" / "default.toml"
    text, n = re.subn(r"(?m)^typo = \[.*\]$", "typo = ['.']", rules.read_text())  # every title
    assert n == 1
    rules.write_text(text)
    r = cli("run", "--demo", "--no-rewrite", "--db", "strict.duckdb")
    assert r.code == 0, r
    assert re.search(r"kept:\s+0\n", r.out) and re.search(r"typo\s+13\n", r.out), r.out


def test_a_missing_prompts_dir_is_a_clear_error(cli, tmp_path, monkeypatch):
    (tmp_path / "synth.toml").write_text('[rewrite]\nprompts_dir = "nowhere"\n')
    monkeypatch.setenv("OPENAI_BASE_URL", "http://127.0.0.1:9/v1")
    r = cli("run", "--demo", "--model", "m-test")
    assert r.code == 2 and "nowhere" in r.err and "Traceback" not in r.err


# ---------------------------------------------------------------- built and installed (slow)

@pytest.fixture(scope="module")
def built(tmp_path_factory) -> tuple[Path, Path, Path]:
    """``python -m build`` (an sdist, then a wheel from the sdist) on a copy of the project's
    top level, so nothing is written into the checkout. Returns (source copy, sdist, wheel)."""
    pytest.importorskip("build", reason="the test extra brings `build`")
    src = tmp_path_factory.mktemp("src") / "synth"
    for name in BUILD_INPUTS:
        if (ROOT / name).is_dir():
            shutil.copytree(ROOT / name, src / name,
                            ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            (src / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, src / name)
    out = tmp_path_factory.mktemp("dist")
    r = subprocess.run([sys.executable, "-m", "build", "--outdir", str(out), str(src)],
                       capture_output=True, text=True, env=_env(), timeout=600)
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-4000:]
    (sdist,), (wheel,) = list(out.glob("synth-*.tar.gz")), list(out.glob("synth-*.whl"))
    return src, sdist, wheel


@pytest.mark.slow
def test_wheel_and_sdist_carry_every_module_and_the_data(built):
    src, sdist, wheel = built
    with zipfile.ZipFile(wheel) as zf:
        in_wheel = {name: zf.read(name) for name in zf.namelist()}
        dist_info = next(n.split("/")[0] for n in in_wheel if n.endswith(".dist-info/METADATA"))
        metadata = in_wheel[f"{dist_info}/METADATA"].decode()
        entry_points = in_wheel[f"{dist_info}/entry_points.txt"].decode()
    # every module of the package (a subpackage missing from pyproject's list would fail here)
    for rel in _files(src / "synth"):
        assert f"synth/{rel}" in in_wheel, f"synth/{rel} is not in the wheel"
    # the rules, prompts and demo, byte for byte, inside the package
    for folder, target in RESOURCES.items():
        files = _files(src / folder)
        assert files, folder
        for rel, data in files.items():
            assert in_wheel.get(f"{target}/{rel}") == data, f"{target}/{rel}"
    with tarfile.open(sdist) as tf:
        top = tf.getnames()[0].split("/")[0]
        in_sdist = set(tf.getnames())
    for folder in RESOURCES:
        for rel in _files(src / folder):
            assert f"{top}/{folder}/{rel}" in in_sdist, f"{folder}/{rel} is not in the sdist"
    assert f"Version: {synth.__version__}" in metadata
    assert "License-Expression: MIT" in metadata
    assert "Classifier: " in metadata and "Project-URL: " in metadata
    assert re.search(r"^Summary: \S", metadata, re.M)
    assert "synth = synth.cli:main" in entry_points


@pytest.fixture(scope="module")
def installed(built, tmp_path_factory) -> Path:
    """A fresh virtual environment with the wheel installed (``--no-deps``). The dependencies
    are made importable from the environment running the tests by a plain path line, which
    does not run that environment's .pth files: the checkout's editable finder stays out."""
    _, _, wheel = built
    venv = tmp_path_factory.mktemp("venv") / "env"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True,
                   env=_env(), timeout=120)
    python = venv / "bin" / "python"
    r = subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install",
                        "--no-deps", "--no-index", "--quiet", str(wheel)],
                       capture_output=True, text=True, env=_env(), timeout=300)
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-4000:]
    purelib = subprocess.run([str(python), "-c", "import sysconfig; "
                              "print(sysconfig.get_paths()['purelib'])"], capture_output=True,
                             text=True, check=True, env=_env()).stdout.strip()
    deps = [p for p in dict.fromkeys([*site.getsitepackages(), site.getusersitepackages()])
            if Path(p).is_dir() and Path(p).resolve() != ROOT]
    Path(purelib, "_synth_test_dependencies.pth").write_text("\n".join(deps) + "\n")
    return venv


def _run(venv: Path, cwd: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(venv / "bin" / "synth"), *args], cwd=cwd, capture_output=True,
                          text=True, env=_env(), timeout=300)


@pytest.mark.slow
def test_installed_wheel_runs_the_demo_from_any_folder(installed, tmp_path):
    venv = installed
    work = tmp_path / "elsewhere"
    work.mkdir()
    probe = subprocess.run(
        [str(venv / "bin" / "python"), "-c", "import json, synth, synth.paths as p; print(json.dumps("
         "[synth.__file__, str(p.filters_dir()), str(p.prompts_dir()), str(p.demo_dir())]))"],
        cwd=work, capture_output=True, text=True, env=_env(), timeout=60)
    assert probe.returncode == 0, probe.stderr
    for found in json.loads(probe.stdout):
        assert Path(found).resolve().is_relative_to(venv.resolve()), found  # not the checkout

    r = _run(venv, work, "--version")
    assert r.returncode == 0 and r.stdout.strip() == f"synth {synth.__version__}"

    r = _run(venv, work, "run", "--demo")
    assert r.returncode == 0, r.stderr
    assert "PRs seen:" in r.stdout and "tasks written:" in r.stdout
    assert (work / "data" / "queue.duckdb").is_file()  # the README's default: ./data/queue.duckdb
    assert not list(venv.rglob("*.duckdb"))

    r = _run(venv, work, "stats")
    assert r.returncode == 0 and "pull requests:" in r.stdout, r.stderr
    r = _run(venv, work, "review", "approve", "--where", "true", "--reviewer", "ci")
    assert r.returncode == 0, r.stderr
    r = _run(venv, work, "export", "--out", "exports/v1")
    assert r.returncode == 0, r.stderr
    records = (work / "exports" / "v1" / "train.jsonl").read_text().splitlines()
    assert records and all(json.loads(line)["repo"] for line in records)

    r = _run(venv, work, "init", "--copy-defaults", "mine")
    assert r.returncode == 0, r.stderr
    assert (work / "mine" / "filters" / "default.toml").read_bytes() == \
        (ROOT / "filters" / "default.toml").read_bytes()
    assert (work / "mine" / "prompts" / "task_v1.user.md").is_file()
