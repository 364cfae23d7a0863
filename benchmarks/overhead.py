"""dynpipe's own overhead, fast: per-step cost of trivial steps, cached re-runs, cold start.

    python benchmarks/overhead.py            # 1,000 steps, median of 5 runs
    python benchmarks/overhead.py --steps 20 --repeats 1   # smoke run
    python benchmarks/overhead.py --store-url postgresql://user:pw@host/db   # PostgreSQL metadata
    python benchmarks/overhead.py --source .   # this checkout's dynpipe, not the installed one
    python benchmarks/overhead.py --artifact-store s3-moto  # artifacts in S3 (moto on localhost)

``--artifact-store URL`` sets DYNPIPE_ARTIFACT_STORE for the measured processes; ``s3-moto``
starts moto's S3 server on a free localhost port (needs the test extra) and uses a bucket in it.
DYNPIPE_BENCH_PYTHONPATH measures a source tree instead of the installed dynpipe.

Every figure is measured in a fresh process with a fresh store (DYNPIPE_HOME in a
temporary directory): a short warm-up run, then ``--repeats`` timed runs, median shown.
Goals are the round-2 goals of the performance work (benchmarks/README.md, optimisation log),
set for a quiet machine; a shared 2-core machine can measure 2-3x above them.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from collections.abc import Iterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from runner import WORKLOADS_DIR, Measurement, dynpipe_python, measure

# workload -> (what, goal in ms per step, or seconds for cold start)
TARGETS: dict[str, tuple[str, float, str]] = {
    "sequential": ("sequential inline step (store on, cache off)", 0.10, "ms/step"),
    "submitted": ("submitted inline step (store on, cache off)", 0.20, "ms/step"),
    "cached": ("fully cached re-run, per cached step", 0.10, "ms/step"),
    "isolated": ("isolated step, warm local worker pool", 0.5, "ms/step"),
    "cold": ("import dynpipe + first one-step run (fresh process)", 0.15, "s"),
}


def run(
    steps: int,
    repeats: int,
    workloads: list[str],
    out: object = sys.stdout,
    env: dict[str, str] | None = None,
) -> list[tuple[str, Measurement]]:
    script = WORKLOADS_DIR / "dynpipe_wl.py"
    results: list[tuple[str, Measurement]] = []
    for wl in workloads:
        n = 1 if wl == "cold" else (min(steps, 100) if wl == "isolated" else steps)
        extra = ["--repeats", str(repeats)]
        results.append((wl, measure("dynpipe", dynpipe_python(), script, wl, n, 1, env=env, extra_args=extra)))
    print(f"dynpipe overhead, median of {repeats} run(s), {steps} steps per run", file=out)
    print(f"{'workload':<54s} {'figure':>12s} {'goal':>12s}  ok", file=out)
    for wl, m in results:
        what, target, unit = TARGETS[wl]
        if not m.ok:
            print(f"{what:<54s} {'error':>12s} {target:>9.3g} {unit:<3s}  -- {m.error}", file=out)
            continue
        value = m.total_s if unit == "s" else m.per_step_ms
        mark = "yes" if value <= target else "NO"
        print(f"{what:<54s} {value:>9.3f} {unit:<3s}{'':>0s} {target:>8.3g} {unit:<7s} {mark}", file=out)
    return results


@contextlib.contextmanager
def artifact_store(location: str | None) -> Iterator[None]:
    """DYNPIPE_ARTIFACT_STORE (and, for ``s3-moto``, a local S3 server) for the measured runs."""
    if not location:
        yield
        return
    saved = dict(os.environ)
    server = None
    try:
        if location == "s3-moto":
            import boto3
            from moto.server import ThreadedMotoServer

            server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
            server.start()
            host, port = server.get_host_and_port()
            os.environ.update(
                AWS_ENDPOINT_URL=f"http://{host}:{port}", AWS_ACCESS_KEY_ID="bench",
                AWS_SECRET_ACCESS_KEY="bench", AWS_DEFAULT_REGION="us-east-1",
            )
            boto3.client("s3").create_bucket(Bucket="bench")
            location = "s3://bench/overhead"
        os.environ["DYNPIPE_ARTIFACT_STORE"] = location
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)
        if server is not None:
            server.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=1000, help="steps per pipeline (default 1000)")
    parser.add_argument("--repeats", type=int, default=5, help="runs per figure; the median is shown")
    parser.add_argument(
        "--workloads", default="sequential,submitted,cached,isolated,cold",
        help="comma-separated subset of: " + ",".join(TARGETS),
    )
    parser.add_argument("--store-url", help="DYNPIPE_STORE_URL for the measured runs (default: the SQLite store)")
    parser.add_argument("--source", help="import dynpipe from this checkout (default: the installed dynpipe)")
    parser.add_argument(
        "--artifact-store", default=None,
        help="DYNPIPE_ARTIFACT_STORE for the measured runs; s3-moto = S3 served by moto on localhost",
    )
    args = parser.parse_args(argv)
    wls = [w for w in args.workloads.split(",") if w]
    unknown = [w for w in wls if w not in TARGETS]
    if unknown:
        parser.error(f"unknown workload(s) {unknown}; choose from {list(TARGETS)}")
    env: dict[str, str] = {}
    if args.store_url:
        env["DYNPIPE_STORE_URL"] = args.store_url
    if args.source:
        env["PYTHONPATH"] = str(Path(args.source).resolve())
    with artifact_store(args.artifact_store):
        results = run(args.steps, args.repeats, wls, env=env)
    return 0 if all(m.ok for _, m in results) else 1


if __name__ == "__main__":
    raise SystemExit(main())
