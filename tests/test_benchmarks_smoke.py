"""Smoke runs of the benchmarks with tiny sizes (no timing assertions), and the storage
choice the overhead work relies on: small artifacts in the database, large ones as files."""

from __future__ import annotations

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
