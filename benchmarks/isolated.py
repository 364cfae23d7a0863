"""Isolated steps on the local worker pool: round trip per step and the pool's cold start.

    python benchmarks/isolated.py                 # 200 steps, median of 5 runs
    python benchmarks/isolated.py --steps 50 --repeats 2   # smoke run

Figures (target: isolated round trip with a warm pool <= 15 ms/step):
* transport: ``runtime.launch(task).result()`` for a no-output task, no engine, no store
  writes: pickling, the socket round trip and ``execute_task`` in the worker.
* sequential: a dynamic pipeline calling a trivial isolated step N times, one after the
  other (store on, cache off), per step; the same pipeline inline for comparison.
* submitted: N ``submit()``-ed isolated steps, wall time / N (the pool works in parallel);
  also the CPU time per step of this process and of the workers, and this process's
  context switches per step: steadier than wall time on a shared machine. One more run
  splits the context switches by thread (waiting threads, reader threads, ...).
* cold start: first isolated step of a process (worker interpreters start) and the time
  until the whole pool is ready.
Everything runs in this process against a temporary store (DYNPIPE_HOME).
"""

from __future__ import annotations

import argparse
import collections
import os
import re
import resource
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable

TARGET_MS = 15.0


def _median(fn: Callable[[], float], repeats: int) -> float:
    return statistics.median(fn() for _ in range(repeats))


def _cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process so far (Linux /proc; 0 elsewhere)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _switches_by_thread() -> dict[int, tuple[str, int]]:
    """Context switches (voluntary + not) of each live thread of this process, with its
    Python thread name, digits blanked so that a pool's threads share one (Linux /proc)."""
    names = {t.native_id: re.sub(r"[0-9a-f]*[0-9][0-9a-f]*", "N", t.name) for t in threading.enumerate()}
    counts: dict[int, tuple[str, int]] = {}
    try:
        tids = os.listdir("/proc/self/task")
    except OSError:
        return counts
    for tid in tids:
        try:
            with open(f"/proc/self/task/{tid}/status") as f:
                status = f.read()
        except OSError:
            continue  # the thread ended
        n = sum(int(m) for m in re.findall(r"^(?:non)?voluntary_ctxt_switches:\s+(\d+)", status, re.M))
        counts[int(tid)] = (names.get(int(tid), "?"), n)
    return counts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--workers", type=int, default=None, help="DYNPIPE_WORKERS (default: CPU count)")
    args = parser.parse_args(argv)
    os.environ["DYNPIPE_HOME"] = tempfile.mkdtemp(prefix="dynpipe-bench-iso-")
    os.environ["DYNPIPE_ECHO_LOGS"] = "false"
    if args.workers:
        os.environ["DYNPIPE_WORKERS"] = str(args.workers)

    t_import = time.perf_counter()
    from dynpipe import pipeline, step
    from dynpipe.runtimes.local import shared_local_runtime, shutdown_shared_runtime
    from dynpipe.runtimes.task import StepTask
    from dynpipe.store.store import open_store

    import_s = time.perf_counter() - t_import
    n = args.steps

    @step(runtime="isolated", enable_cache=False)
    def iso_noop(i: int) -> int:
        return i

    inline_noop = iso_noop.with_options(runtime="inline")

    @pipeline(dynamic=True, enable_cache=False)
    def one_isolated() -> None:
        iso_noop(0)

    @pipeline(dynamic=True, enable_cache=False)
    def seq_isolated(n: int) -> None:
        for i in range(n):
            iso_noop(i)

    @pipeline(dynamic=True, enable_cache=False)
    def seq_inline(n: int) -> None:
        for i in range(n):
            inline_noop(i)

    at_end: list[dict[int, tuple[str, int]]] = []

    @pipeline(dynamic=True, enable_cache=False)
    def sub_isolated(n: int) -> None:
        futures = [iso_noop.submit(i) for i in range(n)]
        for f in futures:
            f.wait()
        at_end[:] = [_switches_by_thread()]  # while the run's waiting threads still live

    # -- cold start ------------------------------------------------------------------------
    def first_step() -> float:
        shutdown_shared_runtime()
        t0 = time.perf_counter()
        one_isolated()
        return time.perf_counter() - t0

    def full_pool() -> float:
        shutdown_shared_runtime()
        return shared_local_runtime().warm_up()

    cold_first = _median(first_step, args.repeats)
    cold_pool = _median(full_pool, args.repeats)
    rt = shared_local_runtime()
    size = rt.size

    # -- transport only ----------------------------------------------------------------------
    store = open_store()
    task = StepTask(
        run_id="bench", run_name="bench", pipeline_name="bench", step_run_id="bench",
        invocation_id="bench", step_name="bench", func=lambda: None, parameters={}, inputs={},
        input_annotations={}, outputs=[], materializers={}, store_root=str(store.root),
        echo_logs=False,
    )
    for _ in range(20):
        rt.launch(task).result()

    def transport() -> float:
        t0 = time.perf_counter()
        for _ in range(n):
            rt.launch(task).result()
        return (time.perf_counter() - t0) / n * 1000

    transport_ms = _median(transport, args.repeats)

    # -- through the engine -----------------------------------------------------------------------
    seq_isolated(20)  # warm every code path
    seq_inline(20)

    def timed(p: Callable[[int], object]) -> Callable[[], float]:
        def run() -> float:
            t0 = time.perf_counter()
            p(n)
            return (time.perf_counter() - t0) / n * 1000

        return run

    seq_iso_ms = _median(timed(seq_isolated), args.repeats)
    seq_inl_ms = _median(timed(seq_inline), args.repeats)
    pids = rt.worker_pids()
    before = resource.getrusage(resource.RUSAGE_SELF), sum(_cpu_seconds(p) for p in pids)
    sub_iso_ms = _median(timed(sub_isolated), args.repeats)
    after = resource.getrusage(resource.RUSAGE_SELF), sum(_cpu_seconds(p) for p in pids)
    steps = n * args.repeats
    own_cpu_ms = (after[0].ru_utime + after[0].ru_stime - before[0].ru_utime - before[0].ru_stime) / steps * 1000
    workers_cpu_ms = (after[1] - before[1]) / steps * 1000
    switches = (after[0].ru_nvcsw + after[0].ru_nivcsw - before[0].ru_nvcsw - before[0].ru_nivcsw) / steps
    start = _switches_by_thread()
    sub_isolated(n)
    by_thread: collections.Counter[str] = collections.Counter()
    for tid, (name, count) in at_end[0].items():
        by_thread[name] += count - start.get(tid, (name, 0))[1]
    shutdown_shared_runtime()

    ok = seq_iso_ms <= TARGET_MS and sub_iso_ms <= TARGET_MS
    print(f"isolated local runtime: {size} worker(s), {os.cpu_count()} CPU(s), {n} steps, median of {args.repeats}")
    print(f"  import dynpipe (this process)                {import_s * 1000:8.1f} ms")
    print(f"  transport round trip (launch -> result)      {transport_ms:8.2f} ms/step")
    print(f"  sequential isolated step (engine, store on)  {seq_iso_ms:8.2f} ms/step   target <= {TARGET_MS:g}")
    print(f"  sequential inline step (same pipeline)       {seq_inl_ms:8.2f} ms/step")
    print(f"  isolated minus inline                        {seq_iso_ms - seq_inl_ms:8.2f} ms/step")
    print(f"  submitted isolated steps (wall / N)          {sub_iso_ms:8.2f} ms/step   target <= {TARGET_MS:g}")
    print(f"    CPU of this process / of the workers       {own_cpu_ms:8.2f} / {workers_cpu_ms:.2f} ms/step")
    print(f"    context switches of this process           {switches:8.1f} per step")
    for name, count in by_thread.most_common(5):
        print(f"      {name[:40]:<40} {count / n:8.1f} per step")
    print(f"  cold start: first isolated step of a process {cold_first:8.3f} s")
    print(f"  cold start: whole pool ready ({size} workers)     {cold_pool:8.3f} s")
    print("  within target" if ok else "  OVER TARGET")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
