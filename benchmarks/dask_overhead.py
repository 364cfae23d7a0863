"""Isolated steps on a Dask LocalCluster vs the local worker pool: per-step overhead.

    python benchmarks/dask_overhead.py                     # 100 steps, median of 3 runs
    python benchmarks/dask_overhead.py --steps 20 --repeats 1   # smoke run

Both backends get two worker processes with one thread each (``DYNPIPE_WORKERS=2`` for the
pool; ``LocalCluster(n_workers=2, threads_per_worker=1, processes=True)`` for Dask), and run
the same trivial isolated step (store on, cache off):

* submitted: N ``submit()``-ed steps in one dynamic pipeline, wall time / N;
* sequential: N steps called one after the other, wall time / N.

The "dask floor" column is Dask alone on the same cluster, no dynpipe: ``client.submit(f, i)``
of a plain function, all N gathered at once (submitted) or each ``.result()`` before the next
(sequential); the difference to the "dask" column is what dynpipe adds on top of Dask.

Each figure is the median of ``--repeats`` timed runs after one untimed warm-up run (which
starts the pool's workers / probes the cluster's view of the store). The ratio is Dask / pool.
Everything runs in this process against a temporary store (DYNPIPE_HOME).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from typing import Any


def _plain(i: int) -> int:
    """Dask's own floor: a plain function, no dynpipe."""
    return i + 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    os.environ["DYNPIPE_HOME"] = tempfile.mkdtemp(prefix="dynpipe-bench-dask-")
    os.environ["DYNPIPE_ECHO_LOGS"] = "false"
    os.environ["DYNPIPE_WORKERS"] = "2"

    import distributed

    from dynpipe import pipeline, step, use_dask
    from dynpipe.runtimes.local import shutdown_shared_runtime

    @step(runtime="isolated", enable_cache=False)
    def trivial(i: int) -> int:
        return i + 1

    n = args.steps

    @pipeline(dynamic=True)
    def submitted() -> None:
        for fut in [trivial.submit(i) for i in range(n)]:
            fut.wait()

    @pipeline(dynamic=True)
    def sequential() -> None:
        for i in range(n):
            trivial(i)

    def per_step_ms(pipe: Any) -> float:
        pipe()  # warm-up
        times = []
        for _ in range(args.repeats):
            start = time.perf_counter()
            pipe()
            times.append(time.perf_counter() - start)
        return statistics.median(times) / n * 1000

    figures: dict[str, dict[str, float]] = {"pool": {}, "dask": {}}
    os.environ["DYNPIPE_ISOLATED_BACKEND"] = "local"
    for name, pipe in (("submitted", submitted), ("sequential", sequential)):
        figures["pool"][name] = per_step_ms(pipe)
    shutdown_shared_runtime()

    cluster = distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None, silence_logs=50
    )
    client = distributed.Client(cluster, set_as_default=False)
    try:
        client.wait_for_workers(2, timeout=120)
        os.environ["DYNPIPE_ISOLATED_BACKEND"] = "dask"
        use_dask(client)
        for name, pipe in (("submitted", submitted), ("sequential", sequential)):
            figures["dask"][name] = per_step_ms(pipe)

        def floor_submitted() -> None:
            client.gather([client.submit(_plain, i, pure=False) for i in range(n)])

        def floor_sequential() -> None:
            for i in range(n):
                client.submit(_plain, i, pure=False).result()

        figures["floor"] = {"submitted": per_step_ms(floor_submitted), "sequential": per_step_ms(floor_sequential)}
    finally:
        use_dask(None)
        client.close()
        cluster.close()

    print(f"isolated steps, {n} per run, median of {args.repeats} (ms/step), 2 workers x 1 thread")
    print(f"{'workload':<12} {'local pool':>11} {'dask':>9} {'dask/pool':>10} {'dask floor':>11}")
    for name in ("submitted", "sequential"):
        pool_ms, dask_ms, floor_ms = figures["pool"][name], figures["dask"][name], figures["floor"][name]
        print(f"{name:<12} {pool_ms:>11.2f} {dask_ms:>9.2f} {dask_ms / pool_ms:>9.1f}x {floor_ms:>11.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
