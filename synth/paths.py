"""Where the project's own files live: filters/, prompts/ and the demo corpus.

synth is installed from its checkout (``pip install -e .``), so these sit beside the package.
SYNTH_HOME points elsewhere when they do not.
"""

from __future__ import annotations

import os
from pathlib import Path


def project_root() -> Path:
    home = os.environ.get("SYNTH_HOME")
    return Path(home) if home else Path(__file__).resolve().parent.parent


def filters_dir() -> Path:
    return project_root() / "filters"


def prompts_dir() -> Path:
    return project_root() / "prompts"


def demo_dir() -> Path:
    return project_root() / "data" / "demo"
