"""dynpipe at scale, one measurement per process (driven by benchmarks/scale.py).

    scale_wl.py plain  --steps N     # one run of N submitted inline steps
    scale_wl.py widget --steps N     # the same with the live widget's kernel side attached
    scale_wl.py client --steps N --repeats R   # Client opening an N-step run, R fresh processes

Prints one ``BENCH {json}`` line. Memory is read from /proc/self/statm (resident now) and
``ru_maxrss`` (peak); the store's size is SQLite's logical size (page_count × page_size, WAL
included), read before and after the measured run through a separate read connection.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import resource
import sqlite3
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

PAGE = os.sysconf("SC_PAGE_SIZE")


def rss_bytes() -> int:
    """Resident memory now (the peak is ``ru_maxrss``)."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * PAGE


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def store_bytes(home: Path) -> tuple[int, int]:
    """(logical metadata database size, bytes of artifact files) of the store at ``home``."""
    db = home / "metadata.db"
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        pages = con.execute("PRAGMA page_count").fetchone()[0]
        size = con.execute("PRAGMA page_size").fetchone()[0]
    finally:
        con.close()
    files = sum(p.stat().st_size for p in (home / "artifacts").rglob("*") if p.is_file())
    return pages * size, files


def emit(record: dict[str, Any]) -> None:
    sys.stdout.flush()
    print("BENCH " + json.dumps(record), flush=True)


def run_steps(n: int, widget: bool) -> None:
    """Warm-up run, then one run of ``n`` submitted steps; memory and store figures around it."""
    from dynpipe import pipeline, step
    from dynpipe.engine.context import current_run

    home = Path(os.environ["DYNPIPE_HOME"])

    @step
    def noop(i: int) -> int:
        return i

    probe: dict[str, Any] = {}

    @pipeline(dynamic=True, enable_cache=False)
    def scale(count: int, offset: int, attach: bool) -> None:
        feed = None
        if attach:  # the kernel side of the live DAG widget: feed thread, layout, state sync
            from dynpipe.notebook.widget import DagWidget, LiveFeed

            ctx = current_run()
            assert ctx is not None
            feed = LiveFeed("scale", ctx.graph)
            feed.attach(DagWidget())
        start = time.perf_counter()
        futures = [noop.submit(offset + i) for i in range(count)]
        probe["submit_s"] = time.perf_counter() - start
        for f in futures:
            f.wait()
        probe["steps_done_s"] = time.perf_counter() - start
        del futures
        probe["rss_open"] = rss_bytes()  # everything the open run holds, futures released
        if feed is not None:
            t = time.perf_counter()
            feed.refresh(force=True)
            probe["last_frame_s"] = time.perf_counter() - t
            feed.stop()
            probe["frames"] = feed.frames

    scale(5, 10**9, widget)  # warm-up: imports, store, first frame
    gc.collect()
    db_before, files_before = store_bytes(home)
    rss_before = rss_bytes()
    start = time.perf_counter()
    scale(n, 0, widget)
    wall = time.perf_counter() - start
    gc.collect()
    rss_after = rss_bytes()
    db_after, files_after = store_bytes(home)
    emit({
        "steps": n, "widget": widget, "wall_s": wall, "per_step_ms": wall * 1000 / n,
        "submit_s": probe["submit_s"], "steps_done_s": probe["steps_done_s"],
        "peak_rss_mb": peak_rss_mb(), "rss_before_mb": rss_before / 2**20,
        "held_bytes_per_step": (probe["rss_open"] - rss_before) / n,
        "kept_after_run_bytes_per_step": (rss_after - rss_before) / n,
        "db_bytes_per_step": (db_after - db_before) / n, "file_bytes_per_step": (files_after - files_before) / n,
        "frames": probe.get("frames"), "last_frame_s": probe.get("last_frame_s"),
    })


def make_run(n: int) -> str:
    """Record one run of ``n`` submitted steps; returns its name."""
    from dynpipe import pipeline, step

    @step
    def noop(i: int) -> int:
        return i

    @pipeline(dynamic=True, enable_cache=False)
    def big(count: int) -> None:
        for f in [noop.submit(i) for i in range(count)]:
            f.wait()

    return big(n).name


def open_run(name: str) -> None:
    """In a fresh process: import, open the run with Client, first step, then all steps."""
    t0 = time.perf_counter()
    from dynpipe import Client

    t1 = time.perf_counter()
    run = Client().get_pipeline_run(name)
    t2 = time.perf_counter()
    first = run.steps["noop"]
    assert first.status.value == "completed", first.status
    t3 = time.perf_counter()
    count = len(run.steps)
    t4 = time.perf_counter()
    emit({"import_s": t1 - t0, "open_s": t2 - t1, "first_step_s": t3 - t2, "all_steps_s": t4 - t3,
          "steps": count, "peak_rss_mb": peak_rss_mb()})


def client(n: int, repeats: int) -> None:
    start = time.perf_counter()
    name = make_run(n)
    made_s = time.perf_counter() - start
    runs: list[dict[str, Any]] = []
    for _ in range(repeats):
        proc = subprocess.run([sys.executable, __file__, "client-open", "--run", name],
                              capture_output=True, text=True, timeout=900)
        lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("BENCH ")]
        if proc.returncode != 0 or not lines:
            sys.stderr.write(proc.stdout + proc.stderr)
            raise SystemExit(proc.returncode or 1)
        runs.append(json.loads(lines[-1][len("BENCH "):]))
    if runs[0]["steps"] != n:
        raise SystemExit(f"the opened run has {runs[0]['steps']} steps, expected {n}")
    record: dict[str, Any] = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
    record.update(steps=n, made_s=made_s, runs=runs)
    emit(record)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("mode", choices=("plain", "widget", "client", "client-open"))
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=3, help="client: fresh processes opening the run")
    parser.add_argument("--run", help="client-open: the run's name")
    args = parser.parse_args()
    if args.mode == "client":
        client(args.steps, args.repeats)
    elif args.mode == "client-open":
        open_run(args.run)
    else:
        run_steps(args.steps, args.mode == "widget")


if __name__ == "__main__":
    main()
