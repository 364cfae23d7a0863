"""Kernel-side cost of the live DAG widget on a 1,000-step fan-out.

Runs in a real IPython kernel (jupyter_client): the same ``%%pipeline`` cell submits N
no-op inline steps and waits for them, once with ``--no-widget`` and once with the live
widget, alternating, several times. Reports wall and process CPU time measured inside the
kernel (submit and wait), the whole cell as the client sees it (execute request to idle,
widget display and the final picture included, the cell's fixed 0.6 s sleep taken off),
the number of widget frames (comm messages) and their size, plus the cost of one frame
(layout + dot) for the finished N-step DAG.

    python benchmarks/widget_overhead.py [--steps 1000] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import queue
import statistics
import tempfile
import time

from jupyter_client.manager import start_new_kernel

SETUP = '''
import os, time
os.environ["DYNPIPE_HOME"] = {home!r}
%load_ext dynpipe
from dynpipe import step

@step(enable_cache=False)
def noop(i: int) -> int:
    return i
'''

CELL = '''%%pipeline {name} {flag}
_t0, _c0 = time.perf_counter(), time.process_time()
_fs = [noop.submit(i) for i in range({n})]
for _f in _fs:
    _f.wait()
_t1, _c1 = time.perf_counter(), time.process_time()
time.sleep(0.6)  # let the widget draw its last frame inside the measured session
print("RESULT", _t1 - _t0, _c1 - _c0)
'''

FRAME = '''
from dynpipe.notebook import render
from dynpipe.engine.context import RunContext
_nodes = get_ipython().dynpipe_extension.sessions.get({name!r}).graph.snapshot()
_t = time.perf_counter()
for _ in range(5):
    _v = render.render({name!r}, _nodes, "running")
print("FRAME", (time.perf_counter() - _t) / 5, len(_v.svg), len(str(_v.details)))
'''


SLEEP = 0.6  # the sleep at the end of CELL


def run_cell(kc, code: str, timeout: float = 600) -> tuple[str, list[dict]]:  # type: ignore[no-untyped-def]
    out, msgs, _ = timed_cell(kc, code, timeout)
    return out, msgs


def timed_cell(kc, code: str, timeout: float = 600) -> tuple[str, list[dict], float]:  # type: ignore[no-untyped-def]
    """Run ``code``; its output, iopub messages and seconds from the request to the kernel's idle."""
    start = time.perf_counter()
    msg_id = kc.execute(code)
    out, msgs = [], []
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            msg = kc.get_iopub_msg(timeout=1)
        except queue.Empty:
            continue
        if msg["parent_header"].get("msg_id") != msg_id:
            msgs.append(msg)
            continue
        msgs.append(msg)
        if msg["msg_type"] == "stream":
            out.append(msg["content"]["text"])
        if msg["msg_type"] == "error":
            raise RuntimeError("\n".join(msg["content"]["traceback"]))
        if msg["msg_type"] == "status" and msg["content"]["execution_state"] == "idle":
            break
    elapsed = time.perf_counter() - start
    kc.get_shell_msg(timeout=10)
    return "".join(out), msgs, elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    km, kc = start_new_kernel(kernel_name="python3")
    try:
        run_cell(kc, SETUP.format(home=tempfile.mkdtemp(prefix="dynpipe-bench-")))
        results: dict[str, list[tuple[float, float, int, int, float]]] = {"no widget": [], "widget": []}
        warm = CELL.format(name="warmup", flag="--no-widget", n=args.steps)
        run_cell(kc, warm)
        run_cell(kc, "%pipeline end warmup")
        for r in range(args.repeats):
            for label, flag in (("no widget", "--no-widget"), ("widget", "")):
                name = f"bench_{r}_{'w' if flag == '' else 'n'}"
                out, msgs, cell = timed_cell(kc, CELL.format(name=name, flag=flag, n=args.steps))
                line = next(x for x in out.splitlines() if x.startswith("RESULT"))
                wall, cpu = (float(v) for v in line.split()[1:])
                comms = [m for m in msgs if m["msg_type"] == "comm_msg"]
                size = sum(len(json.dumps(m["content"])) for m in comms)
                results[label].append((wall, cpu, len(comms), size, cell - SLEEP))
                if r == args.repeats - 1 and flag == "":
                    frame_out, _ = run_cell(kc, FRAME.format(name=name))
                run_cell(kc, f"%pipeline end {name}")
        print(f"{args.steps}-step fan-out of no-op inline steps, {args.repeats} repeats, median:")
        base = statistics.median(x[0] for x in results["no widget"])
        cell_base = statistics.median(x[4] for x in results["no widget"])
        for label, rows in results.items():
            wall = statistics.median(x[0] for x in rows)
            cpu = statistics.median(x[1] for x in rows)
            frames = statistics.median(x[2] for x in rows)
            size = statistics.median(x[3] for x in rows)
            cell = statistics.median(x[4] for x in rows)
            print(
                f"  {label:<10} wall {wall * 1000:8.1f} ms  ({wall / args.steps * 1e6:6.1f} µs/step)"
                f"  process CPU {cpu * 1000:8.1f} ms  cell {cell * 1000:8.1f} ms"
                f"  widget frames {frames:4.0f}  sent {size / 1024:7.1f} KiB"
            )
            print(f"  {'':<10} cells: {', '.join(f'{x[4] * 1000:.0f}' for x in rows)} ms")
        wall_w = statistics.median(x[0] for x in results["widget"])
        cell_w = statistics.median(x[4] for x in results["widget"])
        print(f"  widget overhead: {(wall_w - base) * 1000:+.1f} ms wall ({(wall_w / base - 1) * 100:+.1f}%),"
              f" whole cell {(cell_w - cell_base) * 1000:+.1f} ms (ratio {cell_w / cell_base:.2f})")
        f = next(x for x in frame_out.splitlines() if x.startswith("FRAME")).split()
        print(f"  one frame of the finished {args.steps}-step DAG (grouped): {float(f[1]) * 1000:.1f} ms"
              f" render+dot, SVG {int(f[2]) / 1024:.1f} KiB, details {int(f[3]) / 1024:.1f} KiB")
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)


if __name__ == "__main__":
    main()
