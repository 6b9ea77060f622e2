"""Optional LLM triage between the filter and the rewrite: a short prompt per rule-kept PR,
answered `substantive` or `trivial` with a one-line reason.

The verdict is stored as a decision of its own (reason code `triage_substantive` or
`triage_trivial`, the model and the reason in its metrics), keyed by the PR, the filter
version, the prompt version and the model, so a verdict is asked for once and becomes the PR's
latest decision: a triaged-trivial PR is no longer kept and is never rewritten.
"""

from __future__ import annotations

import json
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ..errors import RewriteError
from ..filtering import Rules
from ..models import Decision, Failure, PullRequest, Usage
from .guards import fence, scrub
from .llm import LLMClient, extract_json
from .prompts import cut_patch, load_template, render
from .rewriter import strict_schema


class TriageVerdict(BaseModel):
    model_config = ConfigDict(extra="forbid")

    verdict: Literal["substantive", "trivial"]
    reason: str = Field(min_length=1, max_length=200)


TRIAGE_SCHEMA = strict_schema(TriageVerdict)
FIGURES = ("code_lines", "logic_lines", "moved_lines", "renamed_lines", "plumbing_lines",
           "code_files", "files")


class Triage:
    def __init__(self, client: LLMClient, rules: Rules, *, prompt_version: str = "triage_v1",
                 max_patch_tokens: int = 1500, prompts_dir: str | None = None,
                 prices: dict | None = None):
        self.client = client
        self.model = client.model
        self.rules = rules
        self.prompt_version = prompt_version
        self.budget = max_patch_tokens
        self.prompts_dir = prompts_dir
        self.prices = prices or {}
        # the decision key: the rules that kept the PR, the prompt and the model that judged
        self.version = f"{rules.version}/{prompt_version}/{self.model}"
        load_template(prompt_version, "system", prompts_dir)  # fails before any call
        load_template(prompt_version, "user", prompts_dir)

    def messages(self, pr: PullRequest, figures: dict) -> list[dict]:
        patch = cut_patch(pr, self.rules, self.budget)
        file_list = "\n".join(f"- {f.path} ({f.status}, +{f.additions} -{f.deletions})"
                              for f in pr.files[:60])
        if len(pr.files) > 60:
            file_list += f"\n- ... and {len(pr.files) - 60} more files"
        body = scrub(pr.body or "")[:2000] or "(no description)"
        values = {
            "repo": pr.repo,
            "pull_request": fence("pull_request", f"Title: {scrub(pr.title)}\n\n{body}"),
            "figures": ", ".join(f"{k} {figures[k]}" for k in FIGURES if k in figures),
            "file_count": str(len(pr.files)), "additions": str(pr.additions),
            "deletions": str(pr.deletions), "file_list": fence("file_list", file_list),
            "patch": fence("patch", patch.text or "(no patch text available)"),
            "schema": json.dumps(TRIAGE_SCHEMA, indent=1),
        }
        return [{"role": "system",
                 "content": load_template(self.prompt_version, "system", self.prompts_dir)},
                {"role": "user", "content": render(
                    load_template(self.prompt_version, "user", self.prompts_dir), values)}]

    def judge(self, pr: PullRequest, figures: dict | None = None) -> Decision | Failure:
        """The triage decision for one PR, or a recorded failure (the PR then stays kept
        by the rules and waits for the next run's triage)."""
        comp = None
        try:
            comp = self.client.chat_json(self.messages(pr, figures or {}), TRIAGE_SCHEMA,
                                         "triage_verdict", max_tokens=200)
            if comp.finish_reason == "length":
                raise RewriteError("the triage answer was cut off", reason="truncated",
                                   raw=comp.text)
            try:
                v = TriageVerdict.model_validate(extract_json(comp.text))
            except (ValueError, ValidationError) as exc:
                raise RewriteError(f"the triage answer is not a verdict: {str(exc)[:200]}",
                                   reason="invalid_output", raw=comp.text) from None
        except RewriteError as exc:
            return Failure("triage", exc.reason, str(exc)[:300], repo=pr.repo, number=pr.number,
                           detail=(exc.raw or str(exc))[:4000],
                           transient=exc.reason in ("unavailable", "bad_response"),
                           usage=self._usage(comp) if comp is not None else None)
        kept = v.verdict == "substantive"
        cost = self._usage(comp).cost_usd
        return Decision(pr.repo, pr.number, kept,
                        ("triage_substantive",) if kept else ("triage_trivial",), self.version,
                        {"triage_model": self.model, "triage_prompt": self.prompt_version,
                         "triage_reason": scrub(v.reason), "tokens_in": comp.prompt_tokens,
                         "tokens_out": comp.completion_tokens, "cost_usd": round(cost, 6)})

    def _usage(self, comp) -> Usage:
        """One call's tokens and cost at the prices in [rewrite.prices]."""
        price = self.prices.get(self.model)
        cost = (comp.prompt_tokens * price.input + comp.completion_tokens * price.output) / 1e6 \
            if price else 0.0
        return Usage(comp.prompt_tokens, comp.completion_tokens, cost, 1)
