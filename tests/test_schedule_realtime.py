"""The scheduler in real time: a real ``dynpipe scheduler`` process fires ``* * * * *`` schedules,
its runs are real child processes visible through ``dynpipe.Client``, and SIGTERM stops the
scheduler and its running run (recorded ``stopped``) without leaving a process behind."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from dynpipe import Client
from dynpipe.store.schedules import ScheduleStore

QUICK = """
from dynpipe import pipeline, step

@step(enable_cache=False)
def hello(who: str) -> str:
    return f"hello {who}"

@pipeline(dynamic=True)
def quick(who: str = "x") -> None:
    hello(who)
"""

SLOW = """
import time
from pathlib import Path
from dynpipe import pipeline, step

@step(enable_cache=False, runtime="isolated")
def block(marker: str) -> int:
    Path(marker).write_text(str(__import__("os").getpid()))
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        time.sleep(0.1)
    return 0

@pipeline(dynamic=True)
def slow(marker: str) -> None:
    block(marker)
"""


def wait_for(what: str, pred: Callable[[], object], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.2)


def process_tree(root: int) -> dict[int, str]:
    """pid -> start time of every process below ``root`` (read from /proc independently of dynpipe)."""
    parents: dict[int, list[int]] = {}
    starts: dict[int, str] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            data = Path(f"/proc/{entry}/stat").read_bytes()
        except OSError:
            continue
        fields = data[data.rindex(b")") + 2 :].split()
        parents.setdefault(int(fields[1]), []).append(int(entry))
        starts[int(entry)] = fields[19].decode()
    found: dict[int, str] = {}
    todo = [root]
    while todo:
        for child in parents.get(todo.pop(), []):
            found[child] = starts[child]
            todo.append(child)
    return found


def still_running(tree: dict[int, str]) -> list[int]:
    alive = []
    for pid, started in tree.items():
        try:
            data = Path(f"/proc/{pid}/stat").read_bytes()
        except OSError:
            continue
        fields = data[data.rindex(b")") + 2 :].split()
        if fields[19].decode() == started and fields[0] != b"Z":
            alive.append(pid)
    return alive


def dynpipe(*args: str) -> None:
    out = subprocess.run([sys.executable, "-m", "dynpipe.cli", *args], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr


@pytest.mark.timeout(420)
def test_scheduler_fires_supervises_and_stops_runs_on_sigterm(tmp_path: Path, store_home: Path) -> None:
    (tmp_path / "quick.py").write_text(QUICK)
    (tmp_path / "slow.py").write_text(SLOW)
    marker = tmp_path / "block-started"
    dynpipe("schedule", "create", "quick", str(tmp_path / "quick.py"), "--cron", "* * * * *", "-p", "who=cron")
    dynpipe("schedule", "create", "slow", str(tmp_path / "slow.py"), "--cron", "* * * * *", "-p", f"marker={marker}")
    log = tmp_path / "scheduler.log"
    with log.open("w") as out:
        scheduler = subprocess.Popen([sys.executable, "-m", "dynpipe.cli", "scheduler", "--stop-timeout", "60"],
                                     stdout=out, stderr=subprocess.STDOUT)
    try:
        client = Client(store_home)

        fires = ScheduleStore(store_home)

        def quick_completed() -> bool:
            return any(f.outcome == "completed" for f in fires.fires("quick"))

        wait_for("a scheduled run of 'quick' to complete", quick_completed, timeout=70 + 60)
        fire = next(f for f in fires.fires("quick") if f.outcome == "completed")
        assert fire.pid not in (None, scheduler.pid, os.getpid()) and fire.run_name
        run = client.get_pipeline_run(fire.run_name)
        assert run.status.value == "completed" and run.pipeline_name == "quick"
        assert run.steps["hello"].output.load() == "hello cron"

        wait_for("the slow run's isolated step to start", marker.exists, timeout=120)
        tree = process_tree(scheduler.pid)
        assert int(marker.read_text()) in tree  # the step's worker runs below the scheduler
        scheduler.send_signal(signal.SIGTERM)
        scheduler.wait(timeout=90)
        assert scheduler.returncode == 0
        wait_for("the run's processes to end", lambda: not still_running(tree), timeout=30)
    finally:
        if scheduler.poll() is None:
            scheduler.kill()
            scheduler.wait(timeout=30)
    slow_fire = next(f for f in ScheduleStore(store_home).fires("slow") if f.run_name)
    assert slow_fire.outcome == "stopped" and "SIGTERM" in (slow_fire.detail or "")
    assert client.get_pipeline_run(slow_fire.run_name).status.value == "stopped"
    text = log.read_text()
    assert f"slow run {slow_fire.run_name} stopped in" in text
    assert f"quick run {run.name} completed in" in text
