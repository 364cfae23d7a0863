"""Per-step overhead of the two store set-ups side by side, in one run:

* **local**: SQLite metadata and artifacts in the store folder (the default);
* **team**: PostgreSQL metadata and artifacts in S3, both on localhost — a throwaway
  PostgreSQL cluster (``initdb``/``pg_ctl`` in a temporary folder, the helper the tests use)
  and moto's S3 server on a free port, both started and removed by this script.

    python benchmarks/store_overhead.py                      # 300 steps, median of 3 runs
    python benchmarks/store_overhead.py --steps 20 --repeats 1 --source .   # smoke run
    python benchmarks/store_overhead.py --store-url postgresql://u:pw@host/db   # a server you have

Every figure is measured in a fresh process with a fresh store home (``runner.measure``,
the workloads of ``overhead.py``). The team column is the cost of a round trip to a local
server per write (loopback, no network latency): on a real network add the round-trip time
per metadata write and per artifact PUT.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from runner import WORKLOADS_DIR, Measurement, dynpipe_python, measure

WORKLOADS = {
    "sequential": "sequential inline step",
    "submitted": "submitted inline step",
    "cached": "fully cached re-run, per cached step",
    "isolated": "isolated step, warm local worker pool",
}
_STORE_VARS = ("DYNPIPE_STORE_URL", "DYNPIPE_ARTIFACT_STORE", "AWS_ENDPOINT_URL")


@contextlib.contextmanager
def _postgres(given: str | None) -> Iterator[str]:
    """``given``, else a throwaway PostgreSQL server and an empty database in it; its URL."""
    if given:
        yield given
        return
    sys.path.insert(0, str(HERE.parent / "tests"))
    try:
        from backends import start_server  # the tests' helper: initdb + pg_ctl, a free port
    except ImportError as exc:
        raise SystemExit(f"store_overhead: cannot import the PostgreSQL helper of tests/backends.py: {exc}") from exc
    server = start_server()
    if isinstance(server, str):
        raise SystemExit(f"store_overhead: no PostgreSQL server: {server}")
    try:
        yield server.url(server.new_database())
    finally:
        server.pg_ctl("-m", "immediate", "-w", "stop")
        shutil.rmtree(server.folder, ignore_errors=True)


@contextlib.contextmanager
def _s3() -> Iterator[dict[str, str]]:
    """moto's S3 server on a free localhost port and a bucket in it; the environment to use it."""
    import logging

    import boto3
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    env = {
        "AWS_ENDPOINT_URL": f"http://{host}:{port}", "AWS_ACCESS_KEY_ID": "bench",
        "AWS_SECRET_ACCESS_KEY": "bench", "AWS_DEFAULT_REGION": "us-east-1",
    }
    bucket = "bench-" + uuid.uuid4().hex[:8]
    boto3.client(
        "s3", endpoint_url=env["AWS_ENDPOINT_URL"], region_name="us-east-1",
        aws_access_key_id="bench", aws_secret_access_key="bench",
    ).create_bucket(Bucket=bucket)
    try:
        yield {**env, "DYNPIPE_ARTIFACT_STORE": f"s3://{bucket}/overhead"}
    finally:
        server.stop()


@contextlib.contextmanager
def _without_store_settings() -> Iterator[None]:
    """The measured processes inherit os.environ: no store setting of the caller's leaks in."""
    saved = {k: os.environ.pop(k) for k in _STORE_VARS if k in os.environ}
    try:
        yield
    finally:
        os.environ.update(saved)


def _measure_all(
    workloads: list[str], steps: int, repeats: int, env: dict[str, str]
) -> dict[str, Measurement]:
    script = WORKLOADS_DIR / "dynpipe_wl.py"
    out: dict[str, Measurement] = {}
    for wl in workloads:
        n = min(steps, 100) if wl == "isolated" else steps
        out[wl] = measure("dynpipe", dynpipe_python(), script, wl, n, 1, env=env,
                          extra_args=["--repeats", str(repeats)])
    return out


def _cell(m: Measurement) -> str:
    return f"{m.per_step_ms:.3f}" if m.ok else "error"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=300, help="steps per pipeline (default 300)")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per figure; the median is shown")
    parser.add_argument("--workloads", default=",".join(WORKLOADS), help="subset of: " + ",".join(WORKLOADS))
    parser.add_argument("--store-url", help="a PostgreSQL URL to use instead of starting a throwaway server")
    parser.add_argument("--source", help="import dynpipe from this checkout (default: the installed dynpipe)")
    args = parser.parse_args(argv)
    workloads = [w for w in args.workloads.split(",") if w]
    unknown = [w for w in workloads if w not in WORKLOADS]
    if unknown:
        parser.error(f"unknown workload(s) {unknown}; choose from {list(WORKLOADS)}")
    base: dict[str, str] = {"PYTHONPATH": str(Path(args.source).resolve())} if args.source else {}

    with _without_store_settings():
        local = _measure_all(workloads, args.steps, args.repeats, base)
        with _postgres(args.store_url) as store_url, _s3() as s3_env:
            team = _measure_all(workloads, args.steps, args.repeats, {**base, **s3_env, "DYNPIPE_STORE_URL": store_url})

    print(f"dynpipe store overhead, median of {args.repeats} run(s), {args.steps} steps per run (ms per step)")
    header = f"{'workload':<40s} {'SQLite + local files':>21s} {'PostgreSQL + S3 (moto)':>23s} {'ratio':>7s}"
    print(header)
    print("-" * len(header))
    for wl in workloads:
        a, b = local[wl], team[wl]
        ratio = f"{b.per_step_ms / a.per_step_ms:.1f}x" if a.ok and b.ok and a.per_step_ms > 0 else "-"
        print(f"{WORKLOADS[wl]:<40s} {_cell(a):>21s} {_cell(b):>23s} {ratio:>7s}")
    for name, results in (("local", local), ("team", team)):
        for wl, m in results.items():
            if not m.ok:
                print(f"{name} {wl}: error: {m.error}", file=sys.stderr)
    return 0 if all(m.ok for m in (*local.values(), *team.values())) else 1


if __name__ == "__main__":
    raise SystemExit(main())
