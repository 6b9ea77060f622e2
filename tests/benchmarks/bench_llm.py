"""Benchmark: LLM rewriting throughput against the OpenAI-compatible stand-in.

    python tests/benchmarks/bench_llm.py [--tasks 200] [--latency 0.2] [--concurrency 8]

Mines a synthetic history first (no LLM), then times the rewrite stage on N kept PRs exactly
as a run calls it (prompts, structured output, validation, leak check; concurrency bounded)
through a loopback endpoint in its own process that answers every call after --latency
seconds. Prints wall time / (N x latency / concurrency): 1.0 is perfect use of
the concurrency; the goal is at most 1.3.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve()
sys.path.insert(0, str(HERE.parents[2]))
sys.path.insert(0, str(HERE.parents[1]))
sys.path.insert(0, str(HERE.parent))

from synthetic_history import build  # noqa: E402

from synth import app, config  # noqa: E402


class StandInProcess:
    """The stand-in in its own process, as a real endpoint would be (no shared GIL)."""

    def __init__(self, latency: float):
        self.latency = latency

    def __enter__(self):
        import subprocess
        code = (f"import sys; sys.path.insert(0, {str(HERE.parents[1])!r});"
                "from standins.openai_server import OpenAIStandIn;"
                f"s = OpenAIStandIn(latency={self.latency}).start();"
                "print(s.base_url, flush=True);"
                "[print(s.calls, flush=True) for _ in iter(sys.stdin.readline, '')]")
        self.proc = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True)
        self.base_url = self.proc.stdout.readline().strip()
        return self

    def calls(self) -> int:
        self.proc.stdin.write("\n")
        self.proc.stdin.flush()
        return int(self.proc.stdout.readline())

    def __exit__(self, *exc):
        self.proc.kill()
        self.proc.wait()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tasks", type=int, default=200)
    ap.add_argument("--latency", type=float, default=0.2)
    ap.add_argument("--concurrency", type=int, default=8)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        os.chdir(tmp)
        repo = build(Path(tmp) / "history", commits=int(args.tasks * 1.3) + 20, seed=3)
        db = Path(tmp) / "bench.duckdb"
        settings = config.load(env={})
        settings.queue.db = str(db)
        settings.rewrite.concurrency = args.concurrency
        mined = app.run(settings, app.RunRequest(git=[str(repo)], rewrite=False))
        kept = mined.counts.get("filter/kept", 0)
        from synth import queue as q
        from synth.filtering import load_rules
        from synth.rewrite.llm import LLMClient
        from synth.rewrite.rewriter import LLMRewriter
        queue = q.Queue(db)
        keys = q.pending_rewrites(queue, "llm", "bench-model", "task_v1")[:args.tasks]
        prs = q.load_pull_requests(queue, keys)
        with StandInProcess(args.latency) as llm:
            client = LLMClient("bench-model", base_url=llm.base_url, api_key="sk-bench",
                               concurrency=args.concurrency)
            rewriter = LLMRewriter(client, load_rules(), concurrency=args.concurrency)
            t = time.perf_counter()
            results = rewriter.rewrite_many(prs, {})  # the pipeline's rewrite stage, as it runs it
            wall = time.perf_counter() - t
            calls = llm.calls()
        n = sum(1 for r in results if hasattr(r, "spec"))
    ideal = n * args.latency / args.concurrency
    print(f"mined {mined.counts.get('source/prs', 0)} PRs, {kept} kept; rewrote {n} with "
          f"{calls} calls at {args.latency * 1000:.0f} ms latency, concurrency {args.concurrency}")
    print(f"wall {wall:.2f} s; ideal N x latency / concurrency = {ideal:.2f} s")
    ratio = wall / ideal if ideal else float("nan")
    print(f"ratio: {ratio:.2f} (goal <= 1.3)  {'ok' if ratio <= 1.3 else 'over goal'}")


if __name__ == "__main__":
    main()
