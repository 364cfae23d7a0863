"""Prefect 3 side of the benchmark workloads (ephemeral local server; see _common.py).

Mapping: a dynpipe step is a Prefect task, a dynamic pipeline is a flow. Caching off is
``cache_policy=NO_CACHE``; the cached workload uses ``INPUTS`` with persisted results.
Isolated steps use ``ProcessPoolTaskRunner`` (tasks in worker processes), Prefect's
local equivalent of a warm process pool.
"""

from __future__ import annotations

import os
import time

from _common import cold_start_via_children, emit, parse_args, timed

home = os.environ.get("BENCH_HOME")
if home:
    os.environ.setdefault("PREFECT_HOME", os.path.join(home, "prefect"))
    os.environ.setdefault("PREFECT_LOCAL_STORAGE_PATH", os.path.join(home, "prefect", "storage"))
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "ERROR")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_SERVER_ALLOW_EPHEMERAL_MODE", "true")
os.environ.pop("PREFECT_API_URL", None)


def main() -> None:
    args = parse_args()
    n = args.steps
    if args.workload == "cold":
        if cold_start_via_children(__file__):
            return
        start = time.perf_counter()
        from prefect import flow, task
        from prefect.cache_policies import NO_CACHE

        @task(cache_policy=NO_CACHE)
        def one() -> int:
            return 1

        @flow
        def cold() -> None:
            one()

        cold()
        emit("cold", 1, time.perf_counter() - start)
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
    def source() -> int:
        return 1

    @task(cache_policy=NO_CACHE)
    def work(i: int, x: int) -> int:
        return i + x

    @task(cache_policy=NO_CACHE)
    def combine(values: list[int]) -> int:
        return sum(values)

    @flow
    def sequential(count: int) -> None:
        for i in range(count):
            noop(i)

    @flow
    def sequential_cached(count: int) -> None:
        for i in range(count):
            noop_cached(i)

    @flow
    def submitted(count: int) -> None:
        futures = [noop.submit(i) for i in range(count)]
        for f in futures:
            f.wait()

    @flow
    def fanout(count: int) -> None:
        x = source()
        futures = [work.submit(i, x) for i in range(count)]
        combine(futures)

    @flow(task_runner=ProcessPoolTaskRunner(max_workers=2))
    def isolated(count: int) -> None:
        futures = [noop.submit(i) for i in range(count)]
        for f in futures:
            f.wait()

    extra: dict[str, object] = {}
    warm = args.warmup
    if args.workload == "sequential":
        sequential(warm)
        total = timed(lambda: sequential(n))
    elif args.workload in ("submitted", "scale"):
        submitted(warm)
        total = timed(lambda: submitted(n))
    elif args.workload == "fanout":
        fanout(warm)
        total = timed(lambda: fanout(n))
        n += 2
    elif args.workload == "cached":
        sequential_cached(n)
        total = timed(lambda: sequential_cached(n))
    elif args.workload == "isolated":
        isolated(warm)
        total = timed(lambda: isolated(n))
        extra["note"] = "ProcessPoolTaskRunner(max_workers=2); pool started inside the timed flow"
    else:
        raise SystemExit(f"unknown workload {args.workload}")
    emit(args.workload, n, total, **extra)


if __name__ == "__main__":
    main()
