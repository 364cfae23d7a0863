"""Milliseconds to list one page of runs (50) from a store of 200 runs x 500 steps.

    python benchmarks/run_listing.py                        # SQLite store in a temporary folder
    python benchmarks/run_listing.py --store-url postgresql://u:pw@host/db   # an empty database

Four ways, each the median of ``--repeats`` calls after one warm-up:

* **before**: what ``GET /dynpipe/api/runs?page=N`` did until the store counted steps:
  ``list_pipeline_runs(limit=N*50+1)``, slice, and ``run_summary`` of each run, which read
  every step row of the page's runs (logs, parameters, tracebacks decoded);
* **offset**: ``Client.list_run_summaries(offset=(N-1)*50)`` (``?page=N`` now);
* **cursor**: ``Client.list_run_summaries(after=...)`` with the ``next`` of page N-1 (``?after=``);
* **cursor+active**: the same with ``active_time=True`` (what ``dynpipe runs list`` reads).

The store is filled directly through the metadata backend (500 whole step rows per run in
one transaction), with a 300-character log and a traceback-sized error per step.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

PER_PAGE = 50
LOG = "x" * 300
TRACE = "Traceback (most recent call last):\n" + "  File 'step.py', line 1, in step\n" * 20


def fill(runs: int, steps: int) -> None:
    from dynpipe.status import ExecutionStatus
    from dynpipe.store.records import NewStepRun, StepOutcome
    from dynpipe.store.store import open_store

    md: Any = open_store().metadata
    postgres = type(md).__name__ == "PostgresMetadata"
    for r in range(runs):
        run_id = uuid.uuid4().hex
        md.create_run(run_id, f"run-{r:04d}", f"pipeline-{r % 3}", {"origin": "bench.py"})
        statements = []
        for s in range(steps):
            new = NewStepRun(uuid.uuid4().hex, run_id, f"step_{s}", "step", s, "inline", [f"step_{s - 1}"], {"i": s})
            status = ExecutionStatus.FAILED if s % 50 == 7 else ExecutionStatus.COMPLETED
            outcome = StepOutcome(
                status, 1000.0 + r + s * 0.01 + 0.02, 1, logs=LOG, outputs={"output": uuid.uuid4().hex},
                error_type="ValueError" if status is ExecutionStatus.FAILED else None,
                traceback=TRACE if status is ExecutionStatus.FAILED else None, start=1000.0 + r + s * 0.01,
            )
            if postgres:
                statements.append(md._insert_step(new, outcome.status, outcome.start, ignore=True))
                statements.append((
                    'UPDATE step_runs SET "end" = %s, attempts = 1, outputs = %s, logs = %s, error_type = %s,'
                    " traceback = %s WHERE id = %s",
                    (outcome.end, json.dumps(outcome.outputs), LOG, outcome.error_type, outcome.traceback, new.id),
                ))
            else:
                from dynpipe.store.sqlite_statements import finish_step_statement

                statements += finish_step_statement(new, outcome)
        md.write(statements)
        md.finish_run(run_id, ExecutionStatus.COMPLETED)


def median_ms(fn: Callable[[], object], repeats: int) -> float:
    fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--steps", type=int, default=500)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--store-url", help="a PostgreSQL database to fill (default: SQLite in a temporary folder)")
    args = parser.parse_args()
    os.environ["DYNPIPE_HOME"] = tempfile.mkdtemp(prefix="dynpipe-listing-")
    if args.store_url:
        os.environ["DYNPIPE_STORE_URL"] = args.store_url
    from dynpipe import Client
    from dynpipe.server import previews

    t0 = time.perf_counter()
    fill(args.runs, args.steps)
    print(f"filled {args.runs} runs x {args.steps} steps in {time.perf_counter() - t0:.1f} s")
    client = Client()

    def before(page: int) -> list[dict[str, Any]]:
        runs = client.list_pipeline_runs(limit=page * PER_PAGE + 1)
        return [previews.run_summary(r) for r in runs[(page - 1) * PER_PAGE : page * PER_PAGE]]

    cursors: dict[int, str | None] = {1: None}
    for page in range(2, 5):
        cursors[page] = client.list_run_summaries(limit=PER_PAGE, after=cursors[page - 1]).next
    def by_offset(page: int) -> list[dict[str, Any]]:
        found = client.list_run_summaries(limit=PER_PAGE, offset=(page - 1) * PER_PAGE)
        return [previews.list_summary(r) for r in found.runs]

    def by_cursor(page: int) -> list[dict[str, Any]]:
        return [previews.list_summary(r) for r in client.list_run_summaries(limit=PER_PAGE, after=cursors[page]).runs]

    def cli_page(page: int) -> list[dict[str, Any]]:  # dynpipe runs list: with active time
        found = client.list_run_summaries(limit=PER_PAGE, after=cursors[page], active_time=True)
        return [previews.list_summary(r) for r in found.runs]

    ways = {"before": before, "offset": by_offset, "cursor": by_cursor, "cursor+active": cli_page}
    print("page " + " ".join(f"{name + ' ms':>16}" for name in ways))
    for page in (1, 4):
        times = [median_ms(functools.partial(fn, page), args.repeats) for fn in ways.values()]
        print(f"{page:>4} " + " ".join(f"{t:>16.1f}" for t in times))
    new = [r["step_counts"] for r in (previews.list_summary(s) for s in client.list_run_summaries(limit=PER_PAGE).runs)]
    assert new == [r["step_counts"] for r in before(1)], "the two ways disagree"


if __name__ == "__main__":
    main()
