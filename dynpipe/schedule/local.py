"""A local cron loop: each due time starts the pipeline in a fresh process.

A fresh process per run means a crashing or leaking run never takes the scheduler down;
a run still going at the next due time is not overlapped (the tick is skipped and said so).
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable
from datetime import datetime

from croniter import croniter


class LocalScheduler:
    def __init__(
        self,
        target: str,
        cron: str,
        params: list[str] | None = None,
        max_runs: int | None = None,
        log: Callable[[str], None] = print,
    ) -> None:
        if not croniter.is_valid(cron):
            raise ValueError(f"cron expression {cron!r} is not valid")
        self.target = target
        self.cron = cron
        self.params = params or []
        self.max_runs = max_runs
        self.log = log
        self.started: list[subprocess.Popen[bytes]] = []

    def _start(self) -> subprocess.Popen[bytes]:
        cmd = [sys.executable, "-m", "dynpipe.schedule.runner", self.target, *self.params]
        return subprocess.Popen(cmd)

    def run(self) -> list[int]:
        """Loop until ``max_runs`` runs have finished; return their exit codes."""
        it = croniter(self.cron, datetime.now())
        current: subprocess.Popen[bytes] | None = None
        codes: list[int] = []
        try:
            while self.max_runs is None or len(self.started) < self.max_runs:
                due = it.get_next(datetime)
                time.sleep(max(0.0, (due - datetime.now()).total_seconds()))
                if current is not None and current.poll() is None:
                    self.log(f"dynpipe schedule: {due:%H:%M:%S} skipped, previous run still going")
                    continue
                if current is not None:
                    codes.append(current.returncode)
                self.log(f"dynpipe schedule: {due:%Y-%m-%d %H:%M:%S} starting {self.target}")
                current = self._start()
                self.started.append(current)
            if current is not None:
                codes.append(current.wait())
        except KeyboardInterrupt:
            if current is not None and current.poll() is None:
                current.terminate()
                current.wait(timeout=30)
        return codes
