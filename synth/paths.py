"""Where synth's own files live: the filter rules, the prompt templates and the demo corpus.

The checkout keeps them at the top level (``filters/``, ``prompts/``, ``data/demo/``); the wheel
and the sdist carry them inside the package (``synth/filters``, ``synth/prompts``,
``synth/data/demo``, mapped at build time, see pyproject.toml). They are found through
``importlib.resources``: inside the package when installed from a wheel or an sdist, else
beside it (an editable install from a checkout). ``SYNTH_HOME``, when set, is a folder with
the checkout's layout and wins over both.
"""

from __future__ import annotations

import os
from importlib.resources import files
from pathlib import Path


def package_dir() -> Path:
    return Path(str(files("synth")))


def project_root() -> Path:
    """The folder that holds filters/, prompts/ and data/demo/."""
    home = os.environ.get("SYNTH_HOME")
    if home:
        return Path(home)
    package = package_dir()
    if (package / "filters").is_dir():  # installed from a wheel or an sdist
        return package
    return package.parent  # an editable install: the checkout's top level


def filters_dir() -> Path:
    return project_root() / "filters"


def prompts_dir() -> Path:
    return project_root() / "prompts"


def demo_dir() -> Path:
    return project_root() / "data" / "demo"
