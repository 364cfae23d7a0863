"""Shared by every framework's workload script: run one workload, print one BENCH line.

Each workload script runs in its own process (for peers, in the peer's own virtual
environment), so it imports only the standard library besides its framework. One process
per workload: an untimed warm-up run, then ``--repeats`` timed runs of the pipeline/flow
(fresh input values each time, so nothing is shared between runs unless the workload is
the cached one); the median is reported. Imports and server start-up are outside the
timed region; the ``cold`` workload measures them, in fresh processes.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

WORKLOADS = ("sequential", "submitted", "fanout", "cached", "isolated", "cold", "scale", "scale_widget")
# Offset of the warm-up run's input values: never collides with a timed run's values.
WARMUP_OFFSET = 10**9


def peak_rss_mb() -> float:
    """Peak resident memory of this process (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    parser.add_argument("workload", choices=WORKLOADS)
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=3, help="timed runs; the median is reported")
    parser.add_argument("--warmup", type=int, default=5, help="steps of the untimed warm-up run")
    return parser.parse_args(argv)


def emit(workload: str, steps: int, times: list[float], **extra: Any) -> None:
    """Print the result line the drivers parse (last BENCH line of stdout)."""
    total = statistics.median(times)
    record = {
        "workload": workload,
        "steps": steps,
        "total_s": total,
        "per_step_ms": total * 1000.0 / max(steps, 1),
        "runs_s": times,
        "peak_rss_mb": peak_rss_mb(),
        **extra,
    }
    sys.stdout.flush()
    print("BENCH " + json.dumps(record), flush=True)


def run_plan(
    args: argparse.Namespace,
    run: Callable[[int, int], Any],
    *,
    steps_counted: int | None = None,
    cached: bool = False,
    **extra: Any,
) -> None:
    """Warm up, time ``run(count, offset)`` ``args.repeats`` times, emit the median.

    ``cached``: the warm-up is a full run with the timed runs' inputs, so every timed run
    is a fully cached re-run.
    """
    n = args.steps
    if cached:
        run(n, 0)
    else:
        run(args.warmup, WARMUP_OFFSET)
    times = []
    for r in range(args.repeats):
        offset = 0 if cached else r * n
        start = time.perf_counter()
        run(n, offset)
        times.append(time.perf_counter() - start)
    emit(args.workload, steps_counted if steps_counted is not None else n, times, **extra)


def cold_start(script: str, args: argparse.Namespace, measured: Callable[[], Any]) -> None:
    """Import + first one-step run, each in a fresh process whose store already exists.

    The parent runs the script as a child once to create the store/database, then
    ``args.repeats`` more times measured, and reports the median; a child (marked by
    BENCH_COLD_CHILD) times ``measured`` from before its framework import.
    """
    if os.environ.get("BENCH_COLD_CHILD") == "1":
        start = time.perf_counter()
        measured()
        emit("cold", 1, [time.perf_counter() - start])
        return
    env = {**os.environ, "BENCH_COLD_CHILD": "1"}
    times: list[float] = []
    rss: list[float] = []
    for i in range(args.repeats + 1):
        proc = subprocess.run([sys.executable, script, "cold"], env=env, capture_output=True, text=True)
        if proc.returncode != 0:
            sys.stderr.write(proc.stdout + proc.stderr)
            raise SystemExit(proc.returncode)
        lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("BENCH ")]
        record = json.loads(lines[-1][len("BENCH "):])
        if i > 0:  # the first child only created the store
            times.append(record["total_s"])
            rss.append(record["peak_rss_mb"])
    total = statistics.median(times)
    print("BENCH " + json.dumps({
        "workload": "cold", "steps": 1, "total_s": total, "per_step_ms": total * 1000.0,
        "runs_s": times, "peak_rss_mb": statistics.median(rss),
    }), flush=True)
