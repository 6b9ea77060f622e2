"""The LLM rewriter: kept PR -> schema-valid Task, or a recorded Failure. Never an invalid row.

Per PR: render the prompt (scrubbed, fenced, patch cut to budget) -> structured completion ->
validate (one repair turn quoting the validation error; none for an answer cut off at
``max_tokens``, which a repair would only repeat) -> leakage check (one regeneration, then a
``leakage`` flag) -> optional judge pass. PRs run concurrently, bounded.

A failure's ``message`` is one line (what went wrong and the first line of what the server
said); its ``detail`` holds the server's full text.
"""

from __future__ import annotations

import copy
import json
import logging
from concurrent.futures import ThreadPoolExecutor

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ..errors import ConfigError, RewriteError
from ..filtering import Rules
from ..models import Failure, Provenance, PullRequest, Task, TaskSpec, Usage
from .guards import fence, leaked_lines, scrub_spec
from .llm import Completion, LLMClient, extract_json, first_line, max_tokens_for
from .prompts import chain_messages, load_template, render, task_messages

log = logging.getLogger("synth.rewrite")


class JudgeScores(BaseModel):
    model_config = ConfigDict(extra="forbid")

    clarity: int = Field(ge=1, le=5)
    self_containedness: int = Field(ge=1, le=5)
    testability: int = Field(ge=1, le=5)
    leakage: int = Field(ge=1, le=5)
    difficulty_fit: int = Field(ge=1, le=5)
    comment: str = Field(max_length=600)

    @property
    def score(self) -> float:
        return round((self.clarity + self.self_containedness + self.testability + self.leakage
                      + self.difficulty_fit) / 5, 3)


def strict_schema(model: type[BaseModel]) -> dict:
    """The model's JSON schema in the form strict structured output accepts: every object
    closed and every property required, no defaults."""
    schema = copy.deepcopy(model.model_json_schema())

    def walk(node):
        if isinstance(node, dict):
            node.pop("default", None)
            if node.get("type") == "object" and "properties" in node:
                node["additionalProperties"] = False
                node["required"] = list(node["properties"])
            for v in node.values():
                walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)
    walk(schema)
    return schema


TASK_SCHEMA = strict_schema(TaskSpec)
JUDGE_SCHEMA = strict_schema(JudgeScores)
MAX_TOKENS_CAP = 4096  # the default never asks for more than this in one answer


def default_max_tokens(schema: dict) -> int:
    """``max_tokens`` for a schema: what its longest valid answer takes, at most
    MAX_TOKENS_CAP."""
    return min(max_tokens_for(schema), MAX_TOKENS_CAP)


class LLMRewriter:
    name = "llm"

    def __init__(self, client: LLMClient, rules: Rules, *, prompt_version: str = "task_v1",
                 max_patch_tokens: int = 6000, concurrency: int = 8, judge: bool = False,
                 prices: dict | None = None, languages: dict[str, str | None] | None = None,
                 prompts_dir: str | None = None, max_tokens: int | None = None,
                 chain_prompt_version: str | None = "chain_v1"):
        self.client = client
        self.model = client.model
        self.rules = rules
        self.prompt_version = prompt_version
        self.budget = max_patch_tokens
        self.concurrency = concurrency
        self.judge = judge
        self.prices = prices or {}
        self.languages = languages or {}
        self.max_tokens = max_tokens or default_max_tokens(TASK_SCHEMA)
        self.judge_max_tokens = min(default_max_tokens(JUDGE_SCHEMA), self.max_tokens)
        self.prompts_dir = prompts_dir or None  # None: the prompts shipped with synth
        load_template(prompt_version, "system", self.prompts_dir)  # missing: fail before any call
        load_template(prompt_version, "user", self.prompts_dir)
        self.chain_prompt_version = chain_prompt_version  # None: no chain tasks
        try:
            if chain_prompt_version:
                load_template(chain_prompt_version, "system", self.prompts_dir)
                load_template(chain_prompt_version, "user", self.prompts_dir)
        except ConfigError as exc:  # prompts of one's own without chain ones: PR tasks only
            log.warning("%s: chains are not rewritten", exc)
            self.chain_prompt_version = None

    def rewrite_many(self, prs: list[PullRequest], licenses: dict[str, str | None]
                     ) -> list[Task | Failure]:
        """Several PRs, ``concurrency`` at a time (for scripts; a run drives rewrite_one
        from its own pool)."""
        if not prs:
            return []
        with ThreadPoolExecutor(max_workers=min(self.concurrency, len(prs))) as pool:
            return list(pool.map(lambda pr: self.rewrite_one(pr, licenses.get(pr.repo)), prs))

    # -- one PR

    def rewrite_one(self, pr: PullRequest, license: str | None = None,
                    language: str | None = None) -> Task | Failure:
        """One PR: a schema-valid Task or a recorded Failure (never raises for the PR's
        own sake; Stopped and configuration errors go up). ``language``: the repository's
        primary language, for the prompt."""
        acc = _Usage()
        try:
            spec = scrub_spec(self._generate(pr, acc, language or self.languages.get(pr.repo)))
            judge = self._judge(spec, pr, acc) if self.judge else None
        except RewriteError as exc:
            return Failure("rewrite", exc.reason, first_line(str(exc), 300), repo=pr.repo,
                           number=pr.number, detail=(exc.raw or str(exc))[:20000],
                           transient=exc.reason in ("unavailable", "bad_response"),
                           usage=self._usage(acc))
        prov = Provenance(repo=pr.repo, pr_number=pr.number, pr_url=pr.url,
                          base_sha=pr.base_sha, merge_sha=pr.merge_sha, merged_at=pr.merged_at,
                          license=license)
        return Task(spec=spec, provenance=prov, rewriter="llm", model=self.model,
                    prompt_version=self.prompt_version, usage=self._usage(acc),
                    judge_score=judge.score if judge else None,
                    judge=judge.model_dump() if judge else None)

    def rewrite_chain(self, prs: list[PullRequest], chain_id: str, license: str | None = None,
                      language: str | None = None) -> Task | Failure:
        """A chain of PRs (merge order) as one task, one subtask per PR (chain prompt), or a
        recorded Failure (stage ``chain``, keyed by the first PR)."""
        acc = _Usage()
        first, last = prs[0], prs[-1]
        try:
            messages = chain_messages(prs, self.rules, version=self.chain_prompt_version,
                                      schema=TASK_SCHEMA, budget_tokens=self.budget,
                                      language=language or self.languages.get(first.repo),
                                      prompts_dir=self.prompts_dir)
            spec, _ = self._ask_valid(messages, TaskSpec, TASK_SCHEMA, "coding_task", acc,
                                      self.max_tokens)
            spec = scrub_spec(spec)
        except RewriteError as exc:
            return Failure("chain", exc.reason, first_line(str(exc), 300), repo=first.repo,
                           number=first.number, detail=(exc.raw or str(exc))[:20000],
                           transient=exc.reason in ("unavailable", "bad_response"),
                           usage=self._usage(acc))
        flags, confidence = set(spec.flags) | {"chain"}, spec.confidence
        added = [line for pr in prs for line in _added_code_lines(pr, self.rules)]
        if leaked_lines(_task_text(spec), added):  # no regeneration here: flagged for review
            flags.add("leakage")
            confidence = min(confidence, 0.2)
        if len(spec.subtasks) != min(len(prs), 6):
            flags.add("stages_mismatch")
        spec = spec.model_copy(update={"flags": sorted(flags)[:8], "confidence": confidence})
        prov = Provenance(repo=first.repo, pr_number=first.number, pr_url=first.url,
                          base_sha=first.base_sha, merge_sha=last.merge_sha,
                          merged_at=last.merged_at, license=license)
        return Task(spec=spec, provenance=prov, rewriter="llm", model=self.model,
                    prompt_version=self.chain_prompt_version,
                    usage=self._usage(acc),
                    kind="chain", members=tuple(p.number for p in prs), chain_id=chain_id)

    def _generate(self, pr: PullRequest, acc: "_Usage", language: str | None = None) -> TaskSpec:
        messages, _ = task_messages(pr, self.rules, version=self.prompt_version,
                                    schema=TASK_SCHEMA, budget_tokens=self.budget,
                                    language=language,
                                    prompts_dir=self.prompts_dir)
        spec, raw = self._ask_valid(messages, TaskSpec, TASK_SCHEMA, "coding_task", acc,
                                    self.max_tokens)
        added = _added_code_lines(pr, self.rules)
        leaks = leaked_lines(_task_text(spec), added)
        if leaks:
            log.info("%s#%s: task quotes the patch; regenerating once", pr.repo, pr.number)
            retry = messages + [
                {"role": "assistant", "content": raw},
                {"role": "user", "content": "Your task copies code from the patch, for example:\n"
                 + fence("copied", leaks[0][:500]) + "\nWrite the task again without quoting "
                 "any code from the patch; describe behaviour instead. Answer with the JSON "
                 "object only."}]
            spec2, _ = self._ask_valid(retry, TaskSpec, TASK_SCHEMA, "coding_task", acc,
                                       self.max_tokens)
            if leaked_lines(_task_text(spec2), added):
                spec2 = spec2.model_copy(update={
                    "flags": sorted(set(spec2.flags) | {"leakage"}),
                    "confidence": min(spec2.confidence, 0.2)})
            spec = spec2
        return spec

    def _ask_valid(self, messages: list[dict], model: type[BaseModel], schema: dict,
                   name: str, acc: "_Usage", max_tokens: int):
        """A validated answer, with one repair turn quoting the validation error (none for an
        answer cut off at max_tokens: asking again would only repeat it)."""
        comp = self._complete(messages, schema, name, acc, max_tokens)
        try:
            return _validate(comp, model), comp.text
        except _Invalid as first:
            if first.reason == "truncated":
                raise RewriteError(f"no valid {name}: {first.message[:300]}",
                                   reason=first.reason, raw=comp.text) from None
            repair = messages + [
                {"role": "assistant", "content": comp.text[:20000] or "(empty answer)"},
                {"role": "user", "content": "Your answer was not valid: " + first.message[:1500]
                 + "\nAnswer again with the complete, corrected JSON object only, matching "
                 "the schema."}]
            comp2 = self._complete(repair, schema, name, acc, max_tokens)
            try:
                return _validate(comp2, model), comp2.text
            except _Invalid as second:
                raise RewriteError(f"no valid {name} after a repair turn: {second.message[:300]}",
                                   reason=second.reason, raw=comp2.text) from None

    def _complete(self, messages, schema, name, acc, max_tokens) -> Completion:
        comp = self.client.chat_json(messages, schema, name, max_tokens=max_tokens)
        acc.add(comp)
        return comp

    def _judge(self, spec: TaskSpec, pr: PullRequest, acc: "_Usage") -> JudgeScores | None:
        added = "\n".join(_added_code_lines(pr, self.rules)[:300])
        user = render(load_template("judge_v1", "user", self.prompts_dir), {
            "task": fence("task", spec.model_dump_json(indent=1)),
            "patch": fence("patch", added or "(none)"),
            "schema": json.dumps(JUDGE_SCHEMA, indent=1)})
        messages = [{"role": "system",
                     "content": load_template("judge_v1", "system", self.prompts_dir)},
                    {"role": "user", "content": user}]
        try:
            scores, _ = self._ask_valid(messages, JudgeScores, JUDGE_SCHEMA, "task_judgement", acc,
                                        self.judge_max_tokens)
            return scores
        except RewriteError as exc:  # a task without a score is still a task
            log.warning("%s#%s: judge failed: %s", pr.repo, pr.number, exc)
            return None

    def _usage(self, acc: "_Usage") -> Usage:
        return Usage(acc.prompt, acc.completion, self._cost(acc), acc.calls)

    def _cost(self, acc: "_Usage") -> float:
        price = self.prices.get(self.model)
        if not price:
            return 0.0
        return round(acc.prompt * price.input / 1e6 + acc.completion * price.output / 1e6, 6)


class _Invalid(Exception):
    def __init__(self, message: str, reason: str):
        super().__init__(message)
        self.message = message
        self.reason = reason


def _validate(comp: Completion, model: type[BaseModel]):
    if comp.refusal:
        raise _Invalid(f"the model refused: {comp.refusal}", "refusal")
    if comp.finish_reason == "length":
        raise _Invalid(f"the answer was cut off at max_tokens (finish_reason=length, "
                       f"{comp.completion_tokens} tokens)", "truncated")
    try:
        data = extract_json(comp.text)
    except ValueError as exc:
        raise _Invalid(f"{exc}", "malformed") from None
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        errors = "; ".join(f"{'.'.join(map(str, e['loc'])) or '(root)'}: {e['msg']}"
                           for e in exc.errors()[:10])
        raise _Invalid(f"schema validation failed: {errors}", "invalid_output") from None


class _Usage:
    def __init__(self):
        self.prompt = self.completion = self.calls = 0

    def add(self, comp: Completion) -> None:
        self.prompt += comp.prompt_tokens
        self.completion += comp.completion_tokens
        self.calls += 1


def _task_text(spec: TaskSpec) -> str:
    parts = [spec.title, spec.background, spec.query]
    for st in spec.subtasks:
        parts += [st.title, st.goal, *st.constraints, *st.deliverables, *st.acceptance_criteria]
    return "\n".join(parts)


def _added_code_lines(pr: PullRequest, rules: Rules) -> list[str]:
    from ..diffs import changed_lines
    out: list[str] = []
    for f in pr.files:
        if f.patch and rules.classify(f.path) in ("code", "tests"):
            out += changed_lines(f.patch)[0]
    return out
