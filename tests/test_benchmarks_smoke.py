"""Smoke runs of the benchmarks with tiny sizes (no timing assertions), and the storage
choice the overhead work relies on: small artifacts in the database, large ones as files."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from backends import PostgresServer

from dynpipe import Client, pipeline, step

BENCH = Path(__file__).resolve().parent.parent / "benchmarks"


def _run(args: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=300)


def test_overhead_smoke() -> None:
    proc = _run([str(BENCH / "overhead.py"), "--steps", "20", "--repeats", "1"])
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = proc.stdout
    assert "dynpipe overhead" in out
    for label in ("sequential inline step", "submitted inline step", "fully cached re-run",
                  "isolated step", "import dynpipe"):
        assert label in out
    assert "error" not in out


def test_compare_smoke_without_peers(tmp_path: Path) -> None:
    report = tmp_path / "results.md"
    proc = _run([str(BENCH / "compare.py"), "--peers", "none", "--steps", "20", "--repeats", "1",
                 "--scale-steps", "50", "--output", str(report)])
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "| workload | framework | steps/run | per step (ms)" in proc.stdout
    text = report.read_text()
    lines = text.splitlines()
    for title in ("sequential inline steps", "submitted inline steps", "fan-out + fan-in",
                  "fully cached re-run", "isolated steps", "cold start"):
        assert any(ln.startswith(f"| {title}") and "| dynpipe |" in ln for ln in lines), title
    assert "failed" not in text
    assert "| plain | 50 |" in text
    assert "| live DAG widget attached" in text
    assert "machine:" in text and "versions: dynpipe" in text


def test_compare_rejects_unknown_peer() -> None:
    proc = _run([str(BENCH / "compare.py"), "--peers", "airflow", "--output", "-"])
    assert proc.returncode != 0
    assert "unknown peer" in proc.stderr


@pytest.mark.parametrize("size", [10, 100_000])
def test_small_artifacts_live_in_the_database_large_ones_in_files(store_home: Path, size: int) -> None:
    @step
    def make(n: int) -> str:
        return "x" * n

    @pipeline(dynamic=True)
    def p() -> None:
        make(size)

    run = p()
    art = run.steps["make"].output
    assert art.load() == "x" * size
    if size <= 4096:
        assert art.uri.startswith("db:")
        assert not any(f.is_file() for f in (store_home / "artifacts").rglob("*"))
    else:
        assert (store_home / art.uri).is_file()
    # A cached re-run finds the artifact wherever it lives.
    assert p().steps["make"].status.value == "cached"
    assert Client().get_pipeline("p").last_run.steps["make"].output.load() == "x" * size


def test_store_overhead_smoke(postgres_server: PostgresServer) -> None:
    pytest.importorskip("moto.server")
    pytest.importorskip("s3fs")
    url = postgres_server.url(postgres_server.new_database())
    proc = _run([str(BENCH / "store_overhead.py"), "--steps", "3", "--repeats", "1", "--workloads", "sequential",
                 "--store-url", url, "--source", str(BENCH.parent)])
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "SQLite + local files" in proc.stdout and "PostgreSQL + S3 (moto)" in proc.stdout
    row = next(ln for ln in proc.stdout.splitlines() if ln.startswith("sequential inline step"))
    local, team = (float(x) for x in row.split()[3:5])
    assert local > 0 and team > 0
    assert "error" not in proc.stdout


# -- round 2: Dask as a peer, the scale benchmark, same-run ratios -----------------------------

def _bench_module(name: str):  # type: ignore[no-untyped-def]
    """A benchmarks/ module imported by path (benchmarks/ is not a package)."""
    import importlib

    if str(BENCH) not in sys.path:
        sys.path.insert(0, str(BENCH))
    return importlib.import_module(name)


def _bench_record(proc: subprocess.CompletedProcess[str]) -> dict:  # type: ignore[type-arg]
    import json

    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("BENCH ")]
    assert proc.returncode == 0 and lines, proc.stdout + proc.stderr
    return json.loads(lines[-1][len("BENCH "):])


@pytest.mark.parametrize("mode,workload", [("threads", "fanout"), ("distributed", "submitted")])
def test_dask_peer_workloads_run(mode: str, workload: str) -> None:
    """The Dask peer's script (run here with dynpipe's own dask) reports every step it ran."""
    env = {**os.environ, "BENCH_DASK_MODE": mode}
    proc = subprocess.run([sys.executable, str(BENCH / "workloads" / "dask_wl.py"), workload, "--steps", "8",
                           "--repeats", "2", "--warmup", "2"], capture_output=True, text=True, timeout=180, env=env)
    record = _bench_record(proc)
    assert record["workload"] == workload
    assert record["steps"] == (10 if workload == "fanout" else 8)
    assert len(record["runs_s"]) == 2 and record["per_step_ms"] > 0


def test_dask_peer_refuses_a_workload_it_has_no_counterpart_for() -> None:
    env = {**os.environ, "BENCH_DASK_MODE": "threads"}
    proc = subprocess.run([sys.executable, str(BENCH / "workloads" / "dask_wl.py"), "cached", "--steps", "3"],
                          capture_output=True, text=True, timeout=120, env=env)
    assert proc.returncode != 0
    assert "no counterpart for the cached workload" in proc.stderr
    peers = _bench_module("peers").PEERS
    assert "cached" in peers["dask-threads"].not_applicable and "cached" in peers["dask-distributed"].not_applicable


def test_compare_table_ratio_is_taken_within_each_round() -> None:
    """Round 1: dynpipe 1 ms, peer 10 ms; round 2 (a busy spell): dynpipe 4 ms, peer 40 ms.
    The same-run ratio is 10× although the medians (2.5 vs 25) would give it too, so round 3
    breaks the symmetry: dynpipe 1, peer 30 -> ratios 10, 10, 30 -> median 10; ratio of the
    medians would be 30 / 1 = 30."""
    compare = _bench_module("compare")
    runner = _bench_module("runner")

    def m(fw: str, per_step: list[float]) -> object:
        runs = [{"round": i, "steps": 100, "per_step_ms": p, "total_s": p / 10, "runs_s": [p / 10],
                 "peak_rss_mb": 40.0} for i, p in enumerate(per_step)]
        return runner.Measurement(fw, "sequential", 100, runs)

    text = compare.table([m("dynpipe", [1.0, 4.0, 1.0]), m("peer", [10.0, 40.0, 30.0])],
                         {("peer", "cached"): "no cache"})
    rows = {ln.split("|")[2].strip() + "/" + ln.split("|")[1].strip(): ln for ln in text.splitlines()[2:]}
    assert rows["peer/sequential inline steps"].rstrip().endswith("| 10× |")
    assert "| 30.0 |" in rows["peer/sequential inline steps"]  # median per step over rounds
    assert "n/a: no cache" in rows["peer/fully cached re-run"]


def test_scale_smoke(tmp_path: Path) -> None:
    report = tmp_path / "scale.md"
    proc = _run([str(BENCH / "scale.py"), "--sizes", "30", "--repeats", "1", "--client-steps", "40",
                 "--client-repeats", "1", "--output", str(report)])
    assert proc.returncode == 0, proc.stdout + proc.stderr
    text = report.read_text()
    assert "| plain | 30 | 1 |" in text
    assert "| live widget's kernel side:" in text
    assert "| 40 | 1 |" in text  # Client opened the 40-step run and found every step
    assert "Failed" not in text


def test_scale_rejects_bad_sizes() -> None:
    proc = _run([str(BENCH / "scale.py"), "--sizes", "1k", "--client-steps", "0"])
    assert proc.returncode != 0
    assert "--sizes '1k'" in proc.stderr
