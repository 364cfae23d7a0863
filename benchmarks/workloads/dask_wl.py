"""Dask side of the benchmark workloads: no store, no cache, no lineage (see _common.py).

BENCH_DASK_MODE picks the scheduler:

* ``threads``: plain functions as ``dask.delayed`` on the threaded scheduler;
* ``distributed``: ``Client.submit`` on a ``LocalCluster(n_workers=2, threads_per_worker=1,
  processes=True)`` started before the timed runs (its start is in the cold workload only).

Mapping: a dynpipe step is a plain function; a sequential step is one computation waited on
before the next; submitted steps are one graph (threads) or N futures (distributed).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from _common import cold_start, parse_args, run_plan

MODE = os.environ.get("BENCH_DASK_MODE", "threads")
# Workloads each mode has a counterpart for (no cache in Dask; threads isolate nothing).
SUPPORTED = {
    "threads": ("sequential", "submitted", "fanout", "scale"),
    "distributed": ("sequential", "submitted", "fanout", "isolated", "scale"),
}


def noop(i: int) -> int:
    return i


def source(offset: int) -> int:
    return offset


def work(i: int, x: int) -> int:
    return i + x


def combine(values: list[int]) -> int:
    return sum(values)


def start_cluster() -> Any:
    from distributed import Client, LocalCluster

    cluster = LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0", silence_logs=50
    )
    client = Client(cluster, set_as_default=False)
    client.wait_for_workers(2, timeout=120)
    return client


def cold_run() -> None:
    if MODE == "threads":
        import dask

        dask.delayed(noop)(1).compute(scheduler="threads")
        return
    client = start_cluster()
    try:
        client.submit(noop, 1, pure=False).result()
    finally:
        cluster = client.cluster
        client.close()
        cluster.close()


def threaded() -> dict[str, Callable[[int, int], Any]]:
    import dask

    delayed = dask.delayed

    def sequential(count: int, offset: int) -> None:
        for i in range(count):
            delayed(noop)(offset + i).compute(scheduler="threads")

    def submitted(count: int, offset: int) -> None:
        dask.compute(*[delayed(noop)(offset + i) for i in range(count)], scheduler="threads")

    def fanout(count: int, offset: int) -> None:
        x = delayed(source)(offset)
        delayed(combine)([delayed(work)(i, x) for i in range(count)]).compute(scheduler="threads")

    return {"sequential": sequential, "submitted": submitted, "fanout": fanout}


def distributed(client: Any) -> dict[str, Callable[[int, int], Any]]:
    def sequential(count: int, offset: int) -> None:
        for i in range(count):
            client.submit(noop, offset + i, pure=False).result()

    def submitted(count: int, offset: int) -> None:
        client.gather([client.submit(noop, offset + i, pure=False) for i in range(count)])

    def fanout(count: int, offset: int) -> None:
        x = client.submit(source, offset, pure=False)
        futures = [client.submit(work, i, x, pure=False) for i in range(count)]
        client.submit(combine, futures, pure=False).result()

    return {"sequential": sequential, "submitted": submitted, "fanout": fanout, "isolated": submitted}


def main() -> None:
    args = parse_args()
    if args.workload == "cold":
        cold_start(__file__, args, cold_run)
        return
    if MODE not in SUPPORTED:
        raise SystemExit(f"BENCH_DASK_MODE={MODE!r}: expected threads or distributed")
    wl = args.workload
    if wl not in SUPPORTED[MODE]:
        raise SystemExit(f"dask ({MODE}) has no counterpart for the {wl} workload")
    client = start_cluster() if MODE == "distributed" else None
    try:
        plans = threaded() if client is None else distributed(client)
        run = plans["submitted" if wl == "scale" else wl]
        extra: dict[str, Any] = {"note": "LocalCluster(n_workers=2, processes=True)"} if client else {}
        run_plan(args, run, steps_counted=args.steps + 2 if wl == "fanout" else None, **extra)
    finally:
        if client is not None:
            cluster = client.cluster
            client.close()
            cluster.close()


if __name__ == "__main__":
    main()
