"""dynpipe at scale: 1k, 10k and 100k submitted inline steps in one run, and Client on a big run.

    python benchmarks/scale.py                                   # 1k/10k/100k, 3 rounds, Client on 50k
    python benchmarks/scale.py --sizes 1000,10000 --client-steps 10000   # quicker
    python benchmarks/scale.py --sizes 50 --repeats 1 --client-steps 100 --client-repeats 1   # smoke

Every figure comes from a fresh process with a fresh store (workloads/scale_wl.py): a 5-step
warm-up run, then one run of N submitted trivial steps, with and without the live DAG
widget's kernel side attached (``LiveFeed`` + ``DagWidget`` without a frontend: the feed
thread, layout and widget state, but no comm traffic). Rounds are interleaved (round, size,
plain/widget) so a busy spell of the shared machine hits both alike; the widget/plain ratio is
taken within each round. A size whose process ran longer than ``--once-above`` seconds is run
once, not ``--repeats`` times.

Client: one process records a run of ``--client-steps`` steps, then ``--client-repeats`` fresh
processes each time ``import dynpipe``, ``Client().get_pipeline_run(name)``, the first step
(``run.steps["noop"]``) and the rest of the steps.
"""

from __future__ import annotations

import argparse
import datetime as dt
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from runner import WORKLOADS_DIR, run_once

SCRIPT = WORKLOADS_DIR / "scale_wl.py"


def med(rows: list[dict[str, Any]], key: str) -> float:
    return statistics.median(r[key] for r in rows)


def scale_table(results: dict[tuple[int, str], list[dict[str, Any]]]) -> list[str]:
    lines = [
        "| run | steps | runs | wall (s) | per step (ms) | submitting (ms/step) | peak RSS (MB)"
        " | RSS growth while open (KB/step) | metadata db (bytes/step) | widget ÷ plain, same round |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for (n, mode), rows in results.items():
        if not rows:
            continue
        what = "plain"
        ratio = ""
        if mode == "widget":
            what = (f"live widget's kernel side: {med(rows, 'frames'):.0f} frames,"
                    f" final frame {med(rows, 'last_frame_s') * 1000:.0f} ms")
            plain = {r["round"]: r["per_step_ms"] for r in results.get((n, "plain"), [])}
            ratios = [r["per_step_ms"] / plain[r["round"]] for r in rows if r["round"] in plain]
            ratio = f"{statistics.median(ratios):.2f}×" if ratios else "-"
        files = med(rows, "file_bytes_per_step")
        db = f"{med(rows, 'db_bytes_per_step'):,.0f}" + (f" (+{files:,.0f} in files)" if files else "")
        lines.append(
            f"| {what} | {n:,} | {len(rows)} | {med(rows, 'wall_s'):,.2f} | {med(rows, 'per_step_ms'):.3f}"
            f" | {med(rows, 'submit_s') * 1000 / n:.3f} | {med(rows, 'peak_rss_mb'):,.0f}"
            f" | {med(rows, 'held_bytes_per_step') / 1024:.2f} | {db} | {ratio} |"
        )
    return lines


def client_table(record: dict[str, Any]) -> list[str]:
    return [
        "| run steps | processes | import dynpipe (s) | `Client().get_pipeline_run(name)` (s)"
        " | then first step `run.steps[\"noop\"]` (s) | then all steps (s) | peak RSS (MB) |",
        "|---:|---:|---:|---:|---:|---:|---:|",
        f"| {record['steps']:,} | {len(record['runs'])} | {record['import_s']:.3f} | {record['open_s']:.3f}"
        f" | {record['first_step_s']:.3f} | {record['all_steps_s']:.3f} | {record['peak_rss_mb']:,.0f} |",
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="1000,10000,100000", help="comma-separated step counts")
    parser.add_argument("--repeats", type=int, default=3, help="rounds (fresh processes) per size and mode")
    parser.add_argument("--modes", default="plain,widget", help="plain, widget or both")
    parser.add_argument("--once-above", type=float, default=300.0,
                        help="a size whose process took longer (s) is not repeated")
    parser.add_argument("--client-steps", type=int, default=50_000, help="steps of the run Client opens; 0 skips")
    parser.add_argument("--client-repeats", type=int, default=3)
    parser.add_argument("--output", default="-", help="markdown report file ('-': stdout only)")
    args = parser.parse_args(argv)
    try:
        sizes = [int(s) for s in args.sizes.split(",") if s]
    except ValueError:
        parser.error(f"--sizes {args.sizes!r}: expected comma-separated integers, e.g. 1000,10000")
    modes = [m for m in args.modes.split(",") if m]
    if not sizes or any(n < 1 for n in sizes) or not set(modes) <= {"plain", "widget"}:
        parser.error("--sizes needs positive integers and --modes plain and/or widget")

    def log(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    started = time.perf_counter()
    results: dict[tuple[int, str], list[dict[str, Any]]] = {(n, m): [] for n in sizes for m in modes}
    once: set[int] = set()
    failures: list[str] = []
    for rnd in range(args.repeats):
        for n in sizes:
            if n in once:
                continue
            for mode in modes:
                log(f"round {rnd + 1}/{args.repeats}: {n} steps, {mode} ...")
                try:
                    record = run_once(sys.executable, SCRIPT, mode, n, timeout=3600)
                except (RuntimeError, subprocess.TimeoutExpired) as exc:
                    failures.append(f"{n} steps, {mode}: {str(exc).strip().splitlines()[-1][:200]}")
                    log(f"  failed: {exc}")
                    continue
                record["round"] = rnd
                results[n, mode].append(record)
                log(f"  {record['per_step_ms']:.3f} ms/step, peak {record['peak_rss_mb']:.0f} MB,"
                    f" {record['held_bytes_per_step'] / 1024:.2f} KB/step held,"
                    f" db {record['db_bytes_per_step']:.0f} B/step ({record['process_wall_s']:.0f} s process)")
                if record["process_wall_s"] > args.once_above:
                    once.add(n)

    client: dict[str, Any] | None = None
    if args.client_steps > 0:
        log(f"Client on a {args.client_steps}-step run ...")
        try:
            client = run_once(sys.executable, SCRIPT, "client", args.client_steps, timeout=3600,
                              extra_args=["--repeats", str(args.client_repeats)])
        except (RuntimeError, subprocess.TimeoutExpired) as exc:
            failures.append(f"client: {str(exc).strip().splitlines()[-1][:200]}")

    cmd = "python benchmarks/scale.py" + (" " + " ".join(sys.argv[1:]) if sys.argv[1:] else "")
    out = [
        "## Scale (dynpipe)",
        "",
        f"- date: {dt.datetime.now(dt.timezone.utc).strftime('%Y-%m-%d %H:%M UTC')}",
        f"- command: `{cmd}` ({time.perf_counter() - started:.0f} s)",
        "- one run of N submitted trivial steps (`noop.submit(i)`, store on, cache off) per fresh process,"
        " after a 5-step warm-up run; medians over the processes (runs); per step = the pipeline call's"
        " wall time / N; submitting = the `submit` loop alone; peak RSS = `ru_maxrss` of the orchestrating"
        " process (the kernel, in a notebook); RSS growth = resident memory with every step finished and"
        " the run still open, minus before the run, / N; metadata db = growth of SQLite's logical size"
        " (page_count × page_size, WAL included) / N",
        "",
        *scale_table(results),
        "",
    ]
    if client is not None:
        out += [f"Client on a {client['steps']:,}-step run (recorded in {client['made_s']:.0f} s;"
                " each figure the median of fresh processes):", "", *client_table(client), ""]
    if failures:
        out += ["Failed:", ""] + [f"- {f}" for f in failures] + [""]
    report = "\n".join(out)
    print(report)
    if args.output != "-":
        Path(args.output).write_text(report + "\n")
        log(f"wrote {args.output}")
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
