"""A busy curator, in a process of its own, for the load test and the benchmark: random reads
(`synth sql`, `review list`, `stats`) and review actions until a stop file appears, each
logged as one JSON line (what, exit code, when it started and ended).

    python tests/curator_load.py DB SEED REVIEWER TASKS.json STOP_FILE LOG.jsonl [PAUSE]
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import random
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from synth.cli import main  # noqa: E402


def now() -> str:
    return datetime.now(timezone.utc).replace(tzinfo=None).isoformat()


def run() -> None:
    db, seed, reviewer, tasks_file, stop_file, log_file = sys.argv[1:7]
    pause = float(sys.argv[7]) if len(sys.argv) > 7 else 0.0
    rng = random.Random(f"{seed}:{reviewer}")
    tasks = json.loads(Path(tasks_file).read_text())
    n = 0
    with open(log_file, "a", encoding="utf-8") as log:
        while not os.path.exists(stop_file):
            n += 1
            roll = rng.random()
            entry: dict = {"reviewer": reviewer}
            if roll < 0.4:
                args = ["sql", "SELECT count(*) FROM pull_requests", "--format", "csv"]
                entry["kind"] = "read"
            elif roll < 0.55:
                args = ["review", "list", "--limit", "5"]
                entry["kind"] = "read"
            elif roll < 0.65:
                args = ["stats"]
                entry["kind"] = "read"
            else:
                tid = rng.choice(tasks)
                action = rng.choice(["approve", "reject", "needs-edit", "skip"])
                note = f"{reviewer}-{n}"
                args = ["review", action, tid, "--reviewer", reviewer, "--note", note]
                entry.update(kind="action", task_id=tid, action=action, note=note)
            out, err = io.StringIO(), io.StringIO()
            entry["start"] = now()
            t = time.monotonic()
            with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
                code = main([*args, "--db", db])
            entry.update(code=code, end=now(), seconds=round(time.monotonic() - t, 4),
                         out=out.getvalue()[-200:], err=err.getvalue()[-300:])
            log.write(json.dumps(entry) + "\n")
            log.flush()
            if pause:
                time.sleep(pause)


if __name__ == "__main__":
    run()
