"""Run one workload script in a fresh process and collect its BENCH line; medians over runs."""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
WORKLOADS_DIR = HERE / "workloads"


@dataclass
class Measurement:
    """Median of several runs of one workload in one framework."""

    framework: str
    workload: str
    steps: int
    runs: list[dict[str, Any]] = field(default_factory=list)
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None and bool(self.runs)

    def median(self, key: str) -> float:
        return statistics.median(r[key] for r in self.runs)

    @property
    def per_step_ms(self) -> float:
        return self.median("per_step_ms")

    @property
    def total_s(self) -> float:
        return self.median("total_s")

    @property
    def peak_rss_mb(self) -> float:
        return self.median("peak_rss_mb")


def run_once(
    python: str,
    script: Path,
    workload: str,
    steps: int,
    env: dict[str, str] | None = None,
    timeout: float = 600.0,
    extra_args: list[str] | None = None,
) -> dict[str, Any]:
    """One fresh process with a fresh temporary home; returns the parsed BENCH record."""
    home = Path(tempfile.mkdtemp(prefix="dynpipe-bench-"))
    try:
        full_env = {**os.environ, **(env or {})}
        full_env["DYNPIPE_HOME"] = str(home / "dynpipe")
        full_env["BENCH_HOME"] = str(home)
        if "PYTHONPATH" not in (env or {}):  # only an explicit one (overhead.py --source) is kept
            full_env.pop("PYTHONPATH", None)
        if full_env.get("DYNPIPE_BENCH_PYTHONPATH"):  # measure a source tree, not the installed dynpipe
            full_env["PYTHONPATH"] = full_env["DYNPIPE_BENCH_PYTHONPATH"]
        cmd = [python, str(script), workload, "--steps", str(steps), *(extra_args or [])]
        start = time.perf_counter()
        proc = subprocess.run(
            cmd, cwd=home, env=full_env, capture_output=True, text=True, timeout=timeout
        )
        wall = time.perf_counter() - start
        lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("BENCH ")]
        if proc.returncode != 0 or not lines:
            tail = (proc.stderr or proc.stdout).strip().splitlines()[-15:]
            raise RuntimeError(f"{script.name} {workload} exited {proc.returncode}:\n" + "\n".join(tail))
        record = json.loads(lines[-1][len("BENCH "):])
        record["process_wall_s"] = wall
        return record
    finally:
        shutil.rmtree(home, ignore_errors=True)


def measure(
    framework: str,
    python: str,
    script: Path,
    workload: str,
    steps: int,
    repeats: int,
    env: dict[str, str] | None = None,
    timeout: float = 600.0,
    log: Any = None,
    extra_args: list[str] | None = None,
) -> Measurement:
    m = Measurement(framework, workload, steps)
    for _ in range(repeats):
        try:
            m.runs.append(run_once(python, script, workload, steps, env, timeout, extra_args))
        except (RuntimeError, subprocess.TimeoutExpired) as exc:
            m.error = str(exc)
            break
        if log is not None:
            r = m.runs[-1]
            log(f"  {framework:8s} {workload:10s} n={r['steps']:<6d} {r['per_step_ms']:9.3f} ms/step"
                f" {r['total_s']:8.3f} s {r['peak_rss_mb']:7.1f} MB")
    if m.runs:
        m.steps = m.runs[0]["steps"]
    return m


def dynpipe_python() -> str:
    return sys.executable
