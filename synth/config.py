"""Settings: synth.toml for what to do, the environment for secrets.

Precedence: command-line flags > environment (SYNTH_DB, OPENAI_BASE_URL, ...) > synth.toml >
defaults. Secrets (GITHUB_TOKEN, GITHUB_TOKENS, OPENAI_API_KEY) come from the environment only;
a synth.toml that holds one is an error. Unknown keys and wrong types are errors naming the key.
"""

from __future__ import annotations

import hashlib
import json
import os
import tomllib
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError

from .errors import ConfigError

DEFAULT_DB = Path("data") / "queue.duckdb"
CONFIG_FILE = "synth.toml"


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class QueueSettings(_Section):
    db: str = str(DEFAULT_DB)
    busy_timeout: float = Field(default=30.0, ge=0)


class SourceSettings(_Section):
    git: list[str] = Field(default_factory=list, description="local clones to mine")
    repos: list[str] = Field(default_factory=list, description="owner/name on GitHub")
    repos_file: str | None = None
    discover: bool = False


class GitHubSettings(_Section):
    api_url: str = "https://api.github.com"
    graphql_url: str | None = None
    min_stars: int = Field(default=10000, ge=0)
    languages: list[str] = Field(default_factory=list)
    licenses: list[str] = Field(default_factory=list)
    max_requests: int = Field(default=0, ge=0, description="0: no bound")
    concurrency: int = Field(default=4, ge=1, le=64)
    page_size: int = Field(default=50, ge=1, le=100)
    timeout: float = Field(default=30.0, gt=0)
    max_wait: float = Field(default=3600.0, ge=0, description="longest rate-limit wait, seconds")
    secondary_min_wait: float = Field(default=60.0, ge=0,
                                      description="wait after a secondary limit without Retry-After")
    backoff: float = Field(default=1.0, ge=0, description="first wait after a 5xx, doubling")

    def graphql_endpoint(self) -> str:
        if self.graphql_url:
            return self.graphql_url
        base = self.api_url.rstrip("/")
        if base.endswith("/api/v3"):  # GitHub Enterprise Server
            return base[: -len("/v3")] + "/graphql"
        return base + "/graphql"


class FilterSettings(_Section):
    files: list[str] = Field(default_factory=list,
                             description="rule files; default: the rules shipped with synth")
    exclude_file: str | None = None


class Price(_Section):
    input: float = Field(ge=0, description="USD per million prompt tokens")
    output: float = Field(ge=0, description="USD per million completion tokens")


class RewriteSettings(_Section):
    rewriter: Literal["template", "llm"] = "template"
    model: str | None = None
    base_url: str | None = None
    prompt_version: str = "task_v1"
    prompts_dir: str | None = Field(default=None,
                                    description="prompt templates; default: those shipped with synth")
    concurrency: int = Field(default=8, ge=1, le=256)
    timeout: float = Field(default=120.0, gt=0)
    max_patch_tokens: int = Field(default=6000, ge=200)
    judge: bool = False
    prices: dict[str, Price] = Field(default_factory=dict)
    structured_output: Literal["auto", "json_schema", "json_object", "prompt"] = Field(
        default="auto", description="auto: discover what the endpoint accepts")
    max_tokens: int = Field(default=0, ge=0,
                            description="per answer; 0: from the task schema (at most 4096)")


class TriageSettings(_Section):
    """The optional LLM triage between the filter and the rewrite (off by default)."""

    enabled: bool = False
    model: str | None = Field(default=None, description="default: [rewrite] model")
    base_url: str | None = Field(default=None, description="default: [rewrite] base_url / OPENAI_BASE_URL")
    prompt_version: str = "triage_v1"
    max_patch_tokens: int = Field(default=1500, ge=100)
    timeout: float = Field(default=60.0, gt=0)


class RunSettings(_Section):
    batch_size: int = Field(default=250, ge=1)
    limit: int = Field(default=0, ge=0, description="0: no limit")


class ReviewSettings(_Section):
    reviews_required: int = Field(default=1, ge=1)


class Settings(_Section):
    queue: QueueSettings = Field(default_factory=QueueSettings)
    sources: SourceSettings = Field(default_factory=SourceSettings)
    github: GitHubSettings = Field(default_factory=GitHubSettings)
    filters: FilterSettings = Field(default_factory=FilterSettings)
    rewrite: RewriteSettings = Field(default_factory=RewriteSettings)
    triage: TriageSettings = Field(default_factory=TriageSettings)
    run: RunSettings = Field(default_factory=RunSettings)
    review: ReviewSettings = Field(default_factory=ReviewSettings)
    # secrets: from the environment only, never printed
    github_tokens: list[SecretStr] = Field(default_factory=list, exclude=True)
    openai_api_key: SecretStr | None = Field(default=None, exclude=True)

    def config_hash(self) -> str:
        """A hash of the settings that shape a run's output (no secrets)."""
        data = self.model_dump(mode="json", exclude={"github_tokens", "openai_api_key"})
        return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:12]


_SECRET_KEYS = {"token", "tokens", "github_token", "github_tokens", "api_key", "openai_api_key",
                "password", "secret"}


def load(path: str | os.PathLike | None = None, env: dict[str, str] | None = None) -> Settings:
    """Read synth.toml (when given or present in the working folder) and the environment."""
    env = dict(os.environ if env is None else env)
    data: dict = {}
    explicit = path is not None or "SYNTH_CONFIG" in env
    file = Path(path or env.get("SYNTH_CONFIG") or CONFIG_FILE)
    if file.exists():
        data = _read_toml(file)
    elif explicit:
        raise ConfigError(f"config file not found: {file}")
    _refuse_secrets(data, file)
    try:
        settings = Settings.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(f"{file}: " + _explain(exc)) from None
    return _apply_env(settings, env)


def _read_toml(file: Path) -> dict:
    try:
        with open(file, "rb") as fh:
            return tomllib.load(fh)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{file} is not valid TOML: {exc}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{file} is not valid TOML: it is not UTF-8 text") from None
    except OSError as exc:
        raise ConfigError(f"cannot read {file}: {exc.strerror}") from None


def _refuse_secrets(data: dict, file: Path, prefix: str = "") -> None:
    for key, value in data.items():
        if isinstance(value, dict):
            _refuse_secrets(value, file, f"{prefix}{key}.")
        elif key.lower() in _SECRET_KEYS:
            raise ConfigError(f"{file}: '{prefix}{key}' looks like a secret; secrets come from "
                              "the environment only (GITHUB_TOKEN, GITHUB_TOKENS, OPENAI_API_KEY)")


def _explain(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors():
        key = ".".join(str(p) for p in err["loc"])
        if err["type"] == "extra_forbidden":
            parts.append(f"unknown key '{key}'")
        else:
            parts.append(f"'{key}': {err['msg']} (got {err.get('input')!r})")
    return "; ".join(parts)


def _apply_env(settings: Settings, env: dict[str, str]) -> Settings:
    try:
        if env.get("SYNTH_DB"):
            settings.queue.db = env["SYNTH_DB"]
        if env.get("OPENAI_BASE_URL"):
            settings.rewrite.base_url = env["OPENAI_BASE_URL"]
        if env.get("GITHUB_API_URL"):
            settings.github.api_url = env["GITHUB_API_URL"]
        if env.get("GITHUB_GRAPHQL_URL"):
            settings.github.graphql_url = env["GITHUB_GRAPHQL_URL"]
    except ValidationError as exc:
        raise ConfigError("environment: " + _explain(exc)) from None
    raw = env.get("GITHUB_TOKENS") or env.get("GITHUB_TOKEN") or ""
    settings.github_tokens = [SecretStr(t.strip()) for t in raw.split(",") if t.strip()]
    if env.get("OPENAI_API_KEY"):
        settings.openai_api_key = SecretStr(env["OPENAI_API_KEY"])
    return settings


SAMPLE = '''\
# synth settings. Secrets never go here: set GITHUB_TOKEN (or GITHUB_TOKENS, comma-separated)
# and OPENAI_API_KEY in the environment. Every key below shows its default.

[queue]
# db = "data/queue.duckdb"     # the queue file; SYNTH_DB or --db override it
# busy_timeout = 30            # seconds a write waits for a busy queue before spooling

[sources]
# git = ["/srv/clones/click.git"]    # local clones to mine
# repos = ["pallets/click"]          # GitHub repositories, owner/name
# repos_file = "repos.txt"           # one owner/name per line
# discover = false                   # also discover repositories by stars (see [github])

[github]
# api_url = "https://api.github.com" # GitHub Enterprise: "https://HOST/api/v3"
# graphql_url = ""                   # derived from api_url when empty
# min_stars = 10000
# languages = []                     # e.g. ["Python", "Go"]
# licenses = []                      # SPDX ids, e.g. ["mit", "apache-2.0"]
# max_requests = 0                   # bound a run's API spend; 0 = no bound
# concurrency = 4                    # requests in flight
# page_size = 50                     # PRs per GraphQL page (at most 100)
# timeout = 30
# max_wait = 3600                    # longest rate-limit wait, seconds
# secondary_min_wait = 60            # after a secondary limit without Retry-After
# backoff = 1.0                      # first wait after a 502/503/504, doubling per retry

[filters]
# files = []                         # rule files, later override earlier; default: synth's own
# exclude_file = ""                  # lines of owner/name#N kept out of rewriting and export

[rewrite]
# rewriter = "template"              # template (offline) | llm
# model = "gpt-4o-mini"
# base_url = ""                      # OPENAI_BASE_URL overrides; e.g. http://127.0.0.1:8000/v1
# prompt_version = "task_v1"
# prompts_dir = ""                   # prompt templates folder; default: synth's own prompts/
# concurrency = 8                    # requests in flight (1 by default for a server on this machine)
# timeout = 120                      # seconds per request (1800 by default for a server on this machine)
# max_patch_tokens = 6000
# max_tokens = 0                     # per answer; 0: from the task schema, at most 4096
# structured_output = "auto"         # auto | json_schema | json_object | prompt
# judge = false
# [rewrite.prices.gpt-4o-mini]       # USD per million tokens, for cost accounting
# input = 0.15
# output = 0.60

[triage]
# enabled = false                    # ask an LLM "substantive or trivial?" before rewriting
# model = ""                         # default: [rewrite] model
# base_url = ""                      # default: [rewrite] base_url / OPENAI_BASE_URL
# prompt_version = "triage_v1"
# max_patch_tokens = 1500            # the patch is cut to this many tokens for the triage
# timeout = 60

[run]
# batch_size = 250                   # PRs per queue transaction
# limit = 0                          # newest N PRs per repository; 0 = all

[review]
# reviews_required = 1               # distinct approvals before a task is approved
'''
