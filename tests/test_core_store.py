"""The embedded store: location, several writer processes, a killed process, atomic artifacts."""

from __future__ import annotations

import os
import select
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from backends import Backend

from dynpipe import Client, pipeline, step
from dynpipe.store.artifacts import ArtifactFiles
from dynpipe.store.location import find_store_root


def test_store_location_rules(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DYNPIPE_HOME", raising=False)
    project = tmp_path / "project"
    nested = project / "a" / "b"
    nested.mkdir(parents=True)
    assert find_store_root(nested) == nested / ".dynpipe"
    (project / ".dynpipe").mkdir()
    assert find_store_root(nested) == project / ".dynpipe"
    monkeypatch.setenv("DYNPIPE_HOME", str(tmp_path / "elsewhere"))
    assert find_store_root(nested) == tmp_path / "elsewhere"


def test_store_is_sqlite_in_wal_mode(store_home: Path) -> None:
    @step
    def one() -> int:
        return 1

    @pipeline(dynamic=True)
    def p() -> None:
        one()

    p()
    db = store_home / "metadata.db"
    assert db.exists()
    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("SELECT count(*) FROM step_runs").fetchone()[0] == 1


def test_artifact_files_are_content_addressed_and_atomic(tmp_path: Path) -> None:
    files = ArtifactFiles(tmp_path)
    uri1, h1 = files.put(b"hello")
    uri2, h2 = files.put(b"hello")
    assert (uri1, h1) == (uri2, h2)
    assert files.get(uri1) == b"hello"
    leftovers = [p for p in (tmp_path / "artifacts").rglob(".tmp-*")]
    assert leftovers == []
    (tmp_path / uri1).unlink()
    with pytest.raises(FileNotFoundError, match="missing from the store"):
        files.get(uri1)


WRITER = textwrap.dedent(
    """
    import sys
    from dynpipe import pipeline, step

    @step
    def make(i: int, worker: int) -> int:
        return i * 1000 + worker

    @step
    def combine(xs: list[int]) -> int:
        return len(xs)

    @pipeline(dynamic=True, enable_cache=False)
    def writer(worker: int, n: int) -> None:
        futures = [make.submit(i, worker) for i in range(n)]
        combine(futures)

    worker = int(sys.argv[1])
    for _ in range(3):
        writer(worker, 40)
    print("done", worker)
    """
)


def test_several_processes_write_concurrently_without_losing_anything(
    store_home: Path, tmp_path: Path, backend: Backend
) -> None:
    script = tmp_path / "writer.py"
    script.write_text(WRITER)
    env = {**os.environ, "DYNPIPE_HOME": str(store_home), "DYNPIPE_ECHO_LOGS": "false"}
    procs = [
        subprocess.Popen(
            [sys.executable, str(script), str(w)], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        for w in range(4)
    ]
    for proc in procs:
        out, err = proc.communicate(timeout=180)
        assert proc.returncode == 0, err
        assert "database is locked" not in err
    client = Client(store_home)
    runs = client.list_pipeline_runs(pipeline_name="writer")
    assert len(runs) == 12
    assert all(r.status.value == "completed" for r in runs)
    for run in runs:
        steps = run.steps
        assert len(steps) == 41
        assert steps["combine"].output.load() == 40
        assert all(s.status.value == "completed" for s in steps.values())
    assert backend.count("step_runs") == 12 * 41
    assert backend.count("artifact_versions") == 12 * 41
    if backend.name == "sqlite":
        with sqlite3.connect(store_home / "metadata.db") as conn:
            assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


KILLED = textwrap.dedent(
    """
    import time
    from dynpipe import pipeline, step

    @step
    def quick() -> int:
        return 1

    @step
    def forever() -> int:
        print("started", flush=True)
        time.sleep(600)
        return 2

    @pipeline(dynamic=True)
    def doomed() -> None:
        quick()
        forever()

    doomed()
    """
)


def test_killed_process_leaves_usable_store_and_run_not_running(
    store_home: Path, tmp_path: Path, backend: Backend
) -> None:
    script = tmp_path / "killed.py"
    script.write_text(KILLED)
    env = {**os.environ, "DYNPIPE_HOME": str(store_home)}
    proc = subprocess.Popen([sys.executable, str(script)], env=env, stdout=subprocess.PIPE)
    assert proc.stdout is not None
    # Raw reads behind select(): a blocking readline() would wait past the deadline.
    fd, seen, deadline = proc.stdout.fileno(), b"", time.monotonic() + 60
    while b"started" not in seen:
        ready, _, _ = select.select([fd], [], [], max(0.0, deadline - time.monotonic()))
        chunk = os.read(fd, 4096) if ready else b""
        if not chunk:  # the deadline passed, or the child exited
            proc.kill()
            pytest.fail(f"child never reached the long step; it wrote {seen!r}")
        seen += chunk
    # A running step's start is committed within engine/starts.WINDOW: wait for it, then kill.
    while "forever" not in Client(store_home).get_pipeline("doomed").last_run.steps:
        if time.monotonic() > deadline:
            proc.kill()
            pytest.fail("the running step's start was never committed")
        time.sleep(0.01)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)

    client = Client(store_home)
    run = client.get_pipeline("doomed").last_run
    assert run.status.value == "failed"
    assert "exited" in (run.error or "")
    steps = run.steps
    assert steps["quick"].status.value == "completed"
    assert steps["quick"].output.load() == 1
    assert steps["forever"].status.value == "failed"
    # The store stays usable for new runs.
    @step
    def after() -> int:
        return 3

    @pipeline(dynamic=True)
    def later() -> None:
        after()

    assert later().status.value == "completed"
    if backend.name == "sqlite":
        with sqlite3.connect(store_home / "metadata.db") as conn:
            assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


def test_cli_lists_and_shows_runs(store_home: Path, backend: Backend) -> None:
    @step
    def hello(name: str) -> str:
        print(f"hello {name}")
        return f"hi {name}"

    @pipeline(dynamic=True)
    def greet() -> None:
        hello("ada")
        hello("bob")

    run = greet()
    env = {**os.environ, "DYNPIPE_HOME": str(store_home)}
    def cli(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "dynpipe.cli", *args], env=env, capture_output=True, text=True, check=check
        )

    listed = cli("runs", "list")
    assert run.name in listed.stdout and "completed" in listed.stdout and "2 completed" in listed.stdout
    shown = cli("runs", "show", run.name)
    assert "hello_2" in shown.stdout and "STATUS" in shown.stdout
    logs = cli("runs", "logs", run.name, "hello_2")
    assert logs.stdout.strip() == "hello bob"
    missing = cli("runs", "show", "nope", check=False)
    assert missing.returncode == 1 and "no pipeline run" in missing.stderr
