"""dynpipe side by side with ZenML and Prefect on the same workloads.

    python benchmarks/compare.py                      # full run, writes benchmarks/results.md
    python benchmarks/compare.py --peers none --steps 20 --repeats 1 --scale-steps 100 \\
        --output /tmp/results.md                      # smoke run

Each (framework, workload) runs in a fresh process with a fresh store: an untimed warm-up
run, then ``--repeats`` timed runs, median reported. Peers run from their own virtual
environments (see peers.py); slow peers run fewer steps per pipeline and are compared per
step. Workloads: see workloads/_common.py and the per-framework scripts.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from peers import PEERS, ensure_peer
from runner import HERE, WORKLOADS_DIR, Measurement, measure

WORKLOAD_TITLES = {
    "sequential": "sequential inline steps",
    "submitted": "submitted inline steps",
    "fanout": "fan-out + fan-in (1 + N + 1 steps)",
    "cached": "fully cached re-run",
    "isolated": "isolated steps (separate processes)",
    "cold": "cold start: import + one-step run",
}
DYNPIPE_STEPS = {"sequential": 1000, "submitted": 1000, "fanout": 100, "cached": 1000, "isolated": 100, "cold": 1}


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
        mem_kb = next(
            int(ln.split()[1]) for ln in Path("/proc/meminfo").read_text().splitlines() if ln.startswith("MemTotal")
        )
        mem = f"{mem_kb / 1024 / 1024:.0f} GiB"
    except (OSError, StopIteration, ValueError):
        mem = "?"
    system = f"{platform.system()} {platform.release()}"
    return f"{os.cpu_count()} cores ({cpu}), {mem} RAM, {system}, Python {platform.python_version()}"


def dynpipe_version() -> str:
    from importlib.metadata import version

    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=HERE, capture_output=True, text=True
        ).stdout.strip()
    except OSError:
        commit = ""
    return version("dynpipe") + (f" (git {commit})" if commit else "")


def fmt_ms(value: float) -> str:
    return f"{value:,.3f}" if value < 10 else f"{value:,.1f}"


def table(results: list[Measurement]) -> str:
    base = {m.workload: m for m in results if m.framework == "dynpipe" and m.ok}
    lines = [
        "| workload | framework | steps/run | per step (ms) | total (s) | peak RSS (MB) | × dynpipe |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for wl, title in WORKLOAD_TITLES.items():
        for m in (r for r in results if r.workload == wl):
            if not m.ok:
                reason = (m.error or "no result").strip().splitlines()
                lines.append(f"| {title} | {m.framework} | {m.steps} | failed: {reason[-1][:80]} | | | |")
                continue
            ref = base.get(wl)
            if wl == "cold":
                per, ratio_of = f"{m.total_s * 1000:,.0f}", (lambda x: x.total_s)
            else:
                per, ratio_of = fmt_ms(m.per_step_ms), (lambda x: x.per_step_ms)
            ratio = "1" if m.framework == "dynpipe" else (
                f"{ratio_of(m) / ratio_of(ref):,.0f}×" if ref is not None and ratio_of(ref) > 0 else "-"
            )
            lines.append(
                f"| {title} | {m.framework} | {m.steps} | {per} | {m.total_s:,.3f} | {m.peak_rss_mb:,.0f} | {ratio} |"
            )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--peers", default="zenml,prefect", help="comma-separated peers, or 'none'")
    parser.add_argument("--steps", type=int, default=None,
                        help="cap on steps per pipeline for every framework (default: per-framework sizes)")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per measurement (median)")
    parser.add_argument("--workloads", default=",".join(WORKLOAD_TITLES))
    parser.add_argument("--scale-steps", type=int, default=10_000, help="submitted steps of the scale run; 0 skips it")
    parser.add_argument("--output", default=str(HERE / "results.md"), help="markdown report ('-' for none)")
    args = parser.parse_args(argv)

    workloads = [w for w in args.workloads.split(",") if w]
    bad = [w for w in workloads if w not in WORKLOAD_TITLES]
    if bad:
        parser.error(f"unknown workload(s) {bad}; choose from {list(WORKLOAD_TITLES)}")
    peer_names = [] if args.peers in ("", "none") else [p for p in args.peers.split(",") if p]
    unknown = [p for p in peer_names if p not in PEERS]
    if unknown:
        parser.error(f"unknown peer(s) {unknown}; known: {list(PEERS)}")

    def log(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    def size(default: int) -> int:
        return default if args.steps is None or default == 1 else min(default, args.steps)

    started = time.perf_counter()
    frameworks: list[tuple[str, str, Path, dict[str, int]]] = [
        ("dynpipe", sys.executable, WORKLOADS_DIR / "dynpipe_wl.py", DYNPIPE_STEPS)
    ]
    versions = {"dynpipe": dynpipe_version()}
    skipped: dict[str, str] = {}
    for name in peer_names:
        peer = PEERS[name]
        python, info = ensure_peer(peer, log)
        if python is None:
            skipped[name] = info
            log(f"{name}: skipped: {info}")
            continue
        versions[name] = info
        steps = {**DYNPIPE_STEPS, **peer.steps}
        frameworks.append((name, str(python), WORKLOADS_DIR / peer.script, steps))

    results: list[Measurement] = []
    for wl in workloads:
        for name, python, script, steps in frameworks:
            log(f"{name} {wl} ...")
            m = measure(name, python, script, wl, size(steps[wl]), 1, timeout=600,
                        extra_args=["--repeats", str(args.repeats)])
            if not m.ok:
                log(f"  {name} {wl} failed: {m.error}")
            else:
                log(f"  {m.per_step_ms:.3f} ms/step, {m.total_s:.3f} s, {m.peak_rss_mb:.0f} MB")
            results.append(m)

    scale: list[Measurement] = []
    if args.scale_steps > 0:
        for wl in ("scale", "scale_widget"):
            log(f"dynpipe {wl}: {args.scale_steps} submitted steps in one run ...")
            scale.append(measure("dynpipe", sys.executable, WORKLOADS_DIR / "dynpipe_wl.py", wl,
                                 args.scale_steps, 1, timeout=900, extra_args=["--repeats", "1"]))

    elapsed = time.perf_counter() - started
    report = render(results, scale, versions, skipped, peer_names, args, elapsed)
    print(report)
    if args.output != "-":
        Path(args.output).write_text(report + "\n")
        log(f"wrote {args.output}")
    return 0 if all(m.ok for m in results if m.framework == "dynpipe") and all(m.ok for m in scale) else 1


def render(
    results: list[Measurement],
    scale: list[Measurement],
    versions: dict[str, str],
    skipped: dict[str, str],
    peer_names: list[str],
    args: argparse.Namespace,
    elapsed: float,
) -> str:
    cmd = "python benchmarks/compare.py" + (" " + " ".join(sys.argv[1:]) if sys.argv[1:] else "")
    out = [
        "# dynpipe vs ZenML vs Prefect: benchmark results",
        "",
        f"- date: {dt.datetime.now(dt.timezone.utc).strftime('%Y-%m-%d %H:%M UTC')}",
        f"- machine: {machine()}",
        "- versions: " + ", ".join(f"{k} {v}" for k, v in versions.items()),
        f"- command: `{cmd}` ({elapsed:.0f} s)",
        f"- each row: one fresh process and store, untimed warm-up run, median of {args.repeats} timed runs;"
        " per step = run wall time / steps; peak RSS of the process running the pipeline;"
        " × dynpipe = peer per-step (cold start: total) / dynpipe's",
        "",
        table(results),
        "",
    ]
    if skipped:
        out += ["Skipped peers:", ""] + [f"- {k}: {v}" for k, v in skipped.items()] + [""]
    if scale:
        out += [
            "## Scale run (dynpipe)",
            "",
            "One run of N submitted trivial steps; peak RSS of the orchestrating process (the kernel in a notebook).",
            "",
            "| run | steps | wall (s) | per step (ms) | peak RSS (MB) |",
            "|---|---:|---:|---:|---:|",
        ]
        for m in scale:
            what = "plain" if m.workload == "scale" else "live DAG widget attached (LiveFeed + DagWidget)"
            if not m.ok:
                out.append(f"| {what} | {m.steps} | failed: {(m.error or '').strip().splitlines()[-1][:80]} | | |")
                continue
            w = m.runs[0].get("widget") or {}
            if w:
                what += f": {w.get('frames')} frames, final frame {w.get('last_frame_s', 0) * 1000:.0f} ms"
            out.append(f"| {what} | {m.steps:,} | {m.total_s:.2f} | {m.per_step_ms:.3f} | {m.peak_rss_mb:.0f} |")
        out.append("")
    notes = [
        "dynpipe: `@pipeline(dynamic=True, enable_cache=False)` (cached workload: `enable_cache=True`), store on"
        " (SQLite metadata + artifacts), trivial steps `noop(i: int) -> int`; submitted steps wait on their futures;"
        " fan-out passes one upstream artifact to N submitted steps and the N futures to one combining step;"
        " isolated = `runtime=\"isolated\"` on the local warm worker pool; cold start = a fresh process importing"
        " the framework and running a one-step pipeline against an existing store (interpreter start excluded).",
    ]
    for name in peer_names:
        if name in versions:
            notes += list(PEERS[name].notes)
    notes.append(
        "The machine is shared (other jobs may run during a benchmark); medians damp that, single figures"
        " can still vary by ±30 %."
    )
    out += ["## Notes", ""] + [f"- {n}" for n in notes]
    return "\n".join(out)


if __name__ == "__main__":
    raise SystemExit(main())
