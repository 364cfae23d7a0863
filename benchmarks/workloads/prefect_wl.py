"""Prefect 3 side of the benchmark workloads (ephemeral local server; see _common.py).

Mapping: a dynpipe step is a Prefect task, a dynamic pipeline is a flow. Caching off is
``cache_policy=NO_CACHE``; the cached workload uses ``INPUTS`` with persisted results.
Isolated steps use ``ProcessPoolTaskRunner`` (tasks in worker processes), Prefect's
local equivalent of a process pool.
"""

from __future__ import annotations

import os

from _common import cold_start, parse_args, run_plan

home = os.environ.get("BENCH_HOME")
if home:
    os.environ.setdefault("PREFECT_HOME", os.path.join(home, "prefect"))
    os.environ.setdefault("PREFECT_LOCAL_STORAGE_PATH", os.path.join(home, "prefect", "storage"))
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "ERROR")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_SERVER_ALLOW_EPHEMERAL_MODE", "true")
# The ephemeral server's 20 s start-up limit fails on a busy 2-core machine.
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "180")
os.environ.pop("PREFECT_API_URL", None)


def cold_run() -> None:
    from prefect import flow, task
    from prefect.cache_policies import NO_CACHE

    @task(cache_policy=NO_CACHE)
    def one() -> int:
        return 1

    @flow
    def cold() -> None:
        one()

    cold()


def main() -> None:
    args = parse_args()
    if args.workload == "cold":
        cold_start(__file__, args, cold_run)
        return

    from prefect import flow, task
    from prefect.cache_policies import INPUTS, NO_CACHE
    from prefect.task_runners import ProcessPoolTaskRunner

    @task(cache_policy=NO_CACHE)
    def noop(i: int) -> int:
        return i

    @task(cache_policy=INPUTS, persist_result=True)
    def noop_cached(i: int) -> int:
        return i

    @task(cache_policy=NO_CACHE)
    def source(offset: int) -> int:
        return offset

    @task(cache_policy=NO_CACHE)
    def work(i: int, x: int) -> int:
        return i + x

    @task(cache_policy=NO_CACHE)
    def combine(values: list[int]) -> int:
        return sum(values)

    @flow
    def sequential(count: int, offset: int) -> None:
        for i in range(count):
            noop(offset + i)

    @flow
    def sequential_cached(count: int, offset: int) -> None:
        for i in range(count):
            noop_cached(offset + i)

    @flow
    def submitted(count: int, offset: int) -> None:
        futures = [noop.submit(offset + i) for i in range(count)]
        for f in futures:
            f.wait()

    @flow
    def fanout(count: int, offset: int) -> None:
        x = source(offset)
        futures = [work.submit(i, x) for i in range(count)]
        combine(futures)

    @flow(task_runner=ProcessPoolTaskRunner(max_workers=2))
    def isolated(count: int, offset: int) -> None:
        futures = [noop.submit(offset + i) for i in range(count)]
        for f in futures:
            f.wait()

    wl = args.workload
    if wl == "sequential":
        run_plan(args, lambda c, o: sequential(c, o))
    elif wl in ("submitted", "scale"):
        run_plan(args, lambda c, o: submitted(c, o))
    elif wl == "fanout":
        run_plan(args, lambda c, o: fanout(c, o), steps_counted=args.steps + 2)
    elif wl == "cached":
        run_plan(args, lambda c, o: sequential_cached(c, o), cached=True)
    elif wl == "isolated":
        run_plan(args, lambda c, o: isolated(c, o), note="ProcessPoolTaskRunner(max_workers=2)")
    else:
        raise SystemExit(f"unknown workload {wl}")


if __name__ == "__main__":
    main()
