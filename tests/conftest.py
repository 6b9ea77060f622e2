"""Shared fixtures: real git repositories, real DuckDB files, the CLI run in-process."""

from __future__ import annotations

import contextlib
import io
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from histories import mixed_history  # noqa: E402

from synth.cli import main  # noqa: E402
from synth.sources.history import build_repository  # noqa: E402


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch, tmp_path):
    """No test reads the developer's settings or secrets, or writes into the checkout."""
    for var in ("SYNTH_DB", "SYNTH_CONFIG", "GITHUB_TOKEN", "GITHUB_TOKENS", "OPENAI_API_KEY",
                "OPENAI_BASE_URL", "GITHUB_API_URL", "GITHUB_GRAPHQL_URL"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.chdir(tmp_path)


@pytest.fixture(scope="session")
def history_100(tmp_path_factory):
    """A clone with 50 merge-style and 50 squash-style PRs, and what each PR holds."""
    history, expected = mixed_history(50, 50)
    path = build_repository(history, tmp_path_factory.mktemp("hist") / "widgets")
    return path, expected


@pytest.fixture
def db(tmp_path) -> Path:
    return tmp_path / "queue.duckdb"


class CLIResult:
    def __init__(self, code: int, out: str, err: str):
        self.code, self.out, self.err = code, out, err

    def __repr__(self) -> str:
        return f"CLIResult(code={self.code}, out={self.out!r}, err={self.err!r})"


@pytest.fixture
def cli():
    """Run the synth CLI in-process; returns exit code and captured output."""
    def run(*args: str) -> CLIResult:
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                code = main([str(a) for a in args])
            except SystemExit as exc:  # argparse
                code = exc.code if isinstance(exc.code, int) else 2
        return CLIResult(code, out.getvalue(), err.getvalue())
    return run
