"""dynpipe side by side with Dask, Prefect and ZenML on the same workloads.

    python benchmarks/compare.py --peers dask-threads,dask-distributed --rounds 3 --scale-steps 0   # vs Dask
    python benchmarks/compare.py --peers none --steps 20 --repeats 1 --scale-steps 100 \\
        --output /tmp/results.md                      # smoke run

Each (framework, workload) runs in a fresh process with a fresh store: an untimed warm-up
run, then ``--repeats`` timed runs, median reported. ``--rounds R`` runs the whole matrix R
times, interleaved (round, workload, framework), so that a busy spell of the shared machine
hits every framework alike: the table gives the median over rounds, the first timed run's
figure, and the median of the ratios measured within one round. Peers run from their own
virtual environments (see peers.py); slow peers run fewer steps per pipeline and are
compared per step. Workloads: see workloads/_common.py and the per-framework scripts.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import statistics
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
    import importlib.util
    from importlib.metadata import version

    spec = importlib.util.find_spec("dynpipe")  # the checkout the measured processes import
    where = Path(spec.origin).parent if spec is not None and spec.origin else HERE
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=where, capture_output=True, text=True
        ).stdout.strip()
    except OSError:
        commit = ""
    return version("dynpipe") + (f" (git {commit})" if commit else "")


def fmt_ms(value: float) -> str:
    return f"{value:,.3f}" if value < 10 else f"{value:,.1f}"


def first_run(m: Measurement, wl: str) -> float:
    """Median over rounds of the first timed run (ms per step; cold start: ms)."""
    return statistics.median(r["runs_s"][0] * 1000.0 / (1 if wl == "cold" else r["steps"]) for r in m.runs)


def same_run_ratio(m: Measurement, ref: Measurement, wl: str) -> float | None:
    """Median of peer/dynpipe over the rounds in which both ran (each round: same minutes)."""
    key = "total_s" if wl == "cold" else "per_step_ms"
    base = {r["round"]: r[key] for r in ref.runs}
    ratios = [r[key] / base[r["round"]] for r in m.runs if base.get(r["round"])]
    return statistics.median(ratios) if ratios else None


def fmt_ratio(ratio: float) -> str:
    return f"{ratio:,.2f}×" if ratio < 10 else f"{ratio:,.0f}×"


def table(results: list[Measurement], not_applicable: dict[tuple[str, str], str] | None = None) -> str:
    base = {m.workload: m for m in results if m.framework == "dynpipe" and m.ok}
    na = not_applicable or {}
    lines = [
        "| workload | framework | steps/run | per step (ms), median | 1st timed run (ms/step) | total (s)"
        " | peak RSS (MB) | × dynpipe, same run |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    frameworks = list(dict.fromkeys([m.framework for m in results] + [f for f, _ in na]))
    for wl, title in WORKLOAD_TITLES.items():
        for fw in frameworks:
            if (fw, wl) in na:
                lines.append(f"| {title} | {fw} | | n/a: {na[fw, wl]} | | | | |")
                continue
            m = next((r for r in results if r.workload == wl and r.framework == fw), None)
            if m is None:
                continue
            if not m.ok:
                reason = (m.error or "no result").strip().splitlines()
                lines.append(f"| {title} | {m.framework} | {m.steps} | failed: {reason[-1][:80]} | | | | |")
                continue
            ref = base.get(wl)
            per = f"{m.total_s * 1000:,.0f}" if wl == "cold" else fmt_ms(m.per_step_ms)
            first = first_run(m, wl)
            first_txt = f"{first:,.0f}" if wl == "cold" else fmt_ms(first)
            ratio_value = same_run_ratio(m, ref, wl) if ref is not None else None
            ratio = "1" if m.framework == "dynpipe" else ("-" if ratio_value is None else fmt_ratio(ratio_value))
            lines.append(
                f"| {title} | {m.framework} | {m.steps} | {per} | {first_txt} | {m.total_s:,.3f}"
                f" | {m.peak_rss_mb:,.0f} | {ratio} |"
            )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--peers", default="dask-threads,dask-distributed,prefect,zenml",
                        help="comma-separated peers, or 'none'")
    parser.add_argument("--steps", type=int, default=None,
                        help="cap on steps per pipeline for every framework (default: per-framework sizes)")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per measurement (median)")
    parser.add_argument("--rounds", type=int, default=1,
                        help="times the whole matrix runs, interleaved; medians over rounds")
    parser.add_argument("--peer-steps", default="",
                        help="cap on one peer's steps per pipeline, e.g. zenml=10,prefect=50")
    parser.add_argument("--workloads", default=",".join(WORKLOAD_TITLES))
    parser.add_argument("--scale-steps", type=int, default=10_000, help="submitted steps of the scale run; 0 skips it")
    parser.add_argument("--output", default="-",
                        help="markdown report file ('-': stdout only); results.md keeps every round by hand")
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

    peer_caps: dict[str, int] = {}
    for item in (x for x in args.peer_steps.split(",") if x):
        name, _, count = item.partition("=")
        if name not in PEERS or not count.isdigit():
            parser.error(f"--peer-steps {item!r}: expected PEER=N with PEER one of {list(PEERS)}")
        peer_caps[PEERS[name].title] = int(count)

    started = time.perf_counter()
    frameworks: list[tuple[str, str, Path, dict[str, int], dict[str, str]]] = [
        ("dynpipe", sys.executable, WORKLOADS_DIR / "dynpipe_wl.py", DYNPIPE_STEPS, {})
    ]
    not_applicable: dict[tuple[str, str], str] = {}
    versions = {"dynpipe": dynpipe_version()}
    skipped: dict[str, str] = {}
    for name in peer_names:
        peer = PEERS[name]
        python, info = ensure_peer(peer, log)
        if python is None:
            skipped[name] = info
            log(f"{name}: skipped: {info}")
            continue
        versions[peer.title] = info
        steps = {**DYNPIPE_STEPS, **peer.steps}
        frameworks.append((peer.title, str(python), WORKLOADS_DIR / peer.script, steps, peer.env))
        not_applicable.update({(peer.title, wl): why for wl, why in peer.not_applicable.items() if wl in workloads})

    merged: dict[tuple[str, str], Measurement] = {}
    failed_rounds: dict[tuple[str, str], list[str]] = {}
    for rnd in range(args.rounds):
        for wl in workloads:
            for name, python, script, steps, env in frameworks:
                if (name, wl) in not_applicable:
                    continue
                n = min(size(steps[wl]), peer_caps.get(name, steps[wl])) if wl != "cold" else 1
                m = merged.setdefault((name, wl), Measurement(name, wl, n))
                log(f"round {rnd + 1}/{args.rounds}: {name} {wl} ...")
                one = measure(name, python, script, wl, n, 1, env=env, timeout=900,
                              extra_args=["--repeats", str(args.repeats)])
                if not one.ok:  # a busy machine can fail one round (e.g. a server start timing out)
                    log(f"  {name} {wl} failed: {one.error}")
                    failed_rounds.setdefault((name, wl), []).append(f"round {rnd + 1}: {one.error}")
                    continue
                for r in one.runs:
                    r["round"] = rnd
                m.runs.extend(one.runs)
                m.steps = one.steps
                log(f"  {one.per_step_ms:.3f} ms/step, {one.total_s:.3f} s, {one.peak_rss_mb:.0f} MB")
    results = list(merged.values())
    for (name, wl), errors in failed_rounds.items():
        if not merged[name, wl].runs:  # failed in every round
            merged[name, wl].error = errors[-1]

    scale: list[Measurement] = []
    if args.scale_steps > 0:
        for wl in ("scale", "scale_widget"):
            log(f"dynpipe {wl}: {args.scale_steps} submitted steps in one run ...")
            scale.append(measure("dynpipe", sys.executable, WORKLOADS_DIR / "dynpipe_wl.py", wl,
                                 args.scale_steps, 1, timeout=900, extra_args=["--repeats", "1"]))

    elapsed = time.perf_counter() - started
    report = render(results, scale, versions, skipped, peer_names, args, elapsed, not_applicable, failed_rounds)
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
    not_applicable: dict[tuple[str, str], str] | None = None,
    failed_rounds: dict[tuple[str, str], list[str]] | None = None,
) -> str:
    cmd = "python benchmarks/compare.py" + (" " + " ".join(sys.argv[1:]) if sys.argv[1:] else "")
    out = [
        "# dynpipe vs " + " vs ".join(PEERS[p].title for p in peer_names if PEERS[p].title in versions)
        + ": benchmark results" if len(versions) > 1 else "# dynpipe: benchmark results",
        "",
        f"- date: {dt.datetime.now(dt.timezone.utc).strftime('%Y-%m-%d %H:%M UTC')}",
        f"- machine: {machine()}",
        "- versions: " + ", ".join(f"{k} {v}" for k, v in versions.items()),
        f"- command: `{cmd}` ({elapsed:.0f} s)",
        f"- each row: {args.rounds} round(s); in each, one fresh process and store, untimed warm-up run,"
        f" median of {args.repeats} timed runs; the median over rounds is shown; 1st timed run = the first"
        " timed run of each process (median over rounds); per step = run wall time / steps; peak RSS of"
        " the process running the pipeline; × dynpipe = peer per-step (cold start: total) / dynpipe's,"
        " taken within each round, median over rounds",
        "",
        table(results, not_applicable),
        "",
    ]
    ran = {(m.framework, m.workload) for m in results if m.ok}
    partial = {k: v for k, v in (failed_rounds or {}).items() if k in ran}
    if partial:
        out += ["Rounds that failed (the row shows the rounds that ran):", ""] + [
            f"- {fw} {wl}: " + "; ".join(e.strip().splitlines()[0] + " … " + e.strip().splitlines()[-1][:100]
                                         for e in errs)
            for (fw, wl), errs in partial.items()
        ] + [""]
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
        if PEERS[name].title in versions:
            notes += list(PEERS[name].notes)
    notes.append(
        "The machine is shared (other jobs may run during a benchmark); medians damp that, single figures"
        " can still vary by ±30 %."
    )
    out += ["## Notes", ""] + [f"- {n}" for n in notes]
    return "\n".join(out)


if __name__ == "__main__":
    raise SystemExit(main())
