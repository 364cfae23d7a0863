"""Chaos run: isolated steps while worker processes are SIGKILLed on a timer.

    python benchmarks/chaos.py                          # 1,000 steps, a kill every 0.2 s
    python benchmarks/chaos.py --interval 0.06          # a kill every 0.06 s
    python benchmarks/chaos.py --steps 50 --interval 0.1   # smoke run

Each step sleeps a little and starts a child process (``sleep 300``) that records its pid,
so a killed worker must take its children with it. The killer picks a worker that is
running a step (the parent of a live child), as the OOM killer would: a worker killed while
starting is a start failure, which the pool treats as a broken environment after several in
a row (see ``runtimes/pool.py``). ``max_retries=3``: a step fails only if
its worker was killed four times while it ran. The run happens in a fresh store; the
report counts steps by status, attempts recorded in the store against attempts the steps
themselves logged, and children still alive afterwards (orphans). Nothing here is timed.
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--interval", type=float, default=0.2, help="seconds between SIGKILLs of a random worker")
    parser.add_argument("--workers", type=int, default=4)
    args = parser.parse_args(argv)
    home = Path(tempfile.mkdtemp(prefix="dynpipe-chaos-"))
    os.environ["DYNPIPE_HOME"] = str(home / "store")
    os.environ["DYNPIPE_WORKERS"] = str(args.workers)
    os.environ["DYNPIPE_ECHO_LOGS"] = "false"
    pid_dir = home / "children"
    pid_dir.mkdir()

    from dynpipe import Client, StepRetryConfig, pipeline, step
    from dynpipe.runtimes.local import shared_local_runtime

    @step(runtime="isolated", enable_cache=False, retry=StepRetryConfig(max_retries=3))
    def work(i: int, pid_dir: str) -> int:
        child = subprocess.Popen(["sleep", "300"])
        Path(pid_dir, f"{i}-{child.pid}").touch()
        time.sleep(random.uniform(0.005, 0.03))
        child.kill()
        child.wait()
        return i * i

    # Every step is submitted and counted: a step killed on all four attempts fails alone.
    @pipeline(dynamic=True, execution_mode="continue_on_failure")
    def chaos(n: int, pid_dir: str) -> None:
        futures = [work.submit(i, pid_dir) for i in range(n)]
        for f in futures:
            try:
                f.wait()
            except Exception:  # a failed step is counted below
                pass

    runtime = shared_local_runtime()
    stop = threading.Event()
    kills = [0]

    def busy_workers() -> list[int]:
        """Workers running a step right now: the parents of live ``sleep`` children."""
        parents = set()
        for entry in pid_dir.iterdir():
            child = int(entry.name.split("-")[1])
            try:
                with open(f"/proc/{child}/stat") as fh:
                    parents.add(int(fh.read().split(")")[-1].split()[1]))
            except (FileNotFoundError, ProcessLookupError):
                continue
        return sorted(parents & set(runtime.worker_pids()))

    def killer() -> None:
        while not stop.wait(args.interval):
            pids = busy_workers()
            if pids:
                try:
                    os.kill(random.choice(pids), signal.SIGKILL)
                    kills[0] += 1
                except ProcessLookupError:
                    pass

    thread = threading.Thread(target=killer, daemon=True)
    thread.start()
    try:
        chaos(args.steps, str(pid_dir))
    except Exception as exc:  # a step that failed all its attempts fails the run: counted below
        print(f"the run raised {type(exc).__name__}: {str(exc).splitlines()[0]}")
    finally:
        stop.set()
        thread.join(5)
    client = Client()
    run = client.get_pipeline("chaos").last_run
    statuses = Counter(s.status.value for s in run.steps.values())
    attempts = sum(len(client.list_step_attempts(run.id, s.invocation_id)) for s in run.steps.values())
    wrong = [
        s.invocation_id for s in run.steps.values()
        if s.status.value == "completed" and s.output.load() != s.parameters["i"] ** 2
    ]
    time.sleep(1.0)  # let the kernel reap what was killed
    orphans = [p.name for p in pid_dir.iterdir() if _alive(int(p.name.split("-")[1]))]
    print(f"steps: {args.steps}, kill interval {args.interval}s, {kills[0]} workers SIGKILLed")
    print(f"run status: {run.status.value}; steps by status: {dict(statuses)}")
    print(f"attempts recorded: {attempts}; completed steps with a wrong output: {len(wrong)}")
    print(f"children started: {len(list(pid_dir.iterdir()))}; orphans alive after the run: {len(orphans)}")
    return 0 if not orphans and not wrong else 1


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split(")")[-1].split()[0] != "Z"
    except FileNotFoundError:
        return False


if __name__ == "__main__":
    sys.exit(main())
