"""Metadata by URL: PostgreSQL and SQLite behind one interface, schema versions, lost runs.

Tests taking ``backend`` run twice, on the embedded SQLite store and on a fresh database of
a real PostgreSQL server started for the session (see ``backends.py``).
"""

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

import psycopg
import pytest
from backends import PASSWORD, Backend, PostgresServer

from dynpipe import Client, StepRetryConfig, pipeline, step
from dynpipe.errors import StoreError
from dynpipe.store.metadata import MetadataStore
from dynpipe.store.metadata_url import open_metadata
from dynpipe.store.postgres_schema import SCHEMA_VERSION as PG_SCHEMA_VERSION
from dynpipe.store.records import RunFilter
from dynpipe.store.sqlite_schema import SCHEMA_VERSION
from dynpipe.store.store import open_store
from dynpipe.store.urls import mask_password


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "dynpipe.cli", *args], env=env or dict(os.environ),
        capture_output=True, text=True, timeout=120,
    )


# -- one pipeline through the public API, on both backends ------------------------------------


def test_fan_out_cache_hits_retries_and_failures_through_the_public_api(backend: Backend) -> None:
    tries: list[int] = []

    @step
    def square(i: int) -> int:
        return i * i

    @step(enable_cache=False, retry=StepRetryConfig(max_retries=2, delay=0))
    def flaky(xs: list[int]) -> int:
        tries.append(1)
        if len(tries) == 1:
            raise ConnectionError("transient")
        return sum(xs)

    @step(runtime="isolated", enable_cache=False)
    def describe(total: int) -> str:  # a worker process writes its output through the same store
        return f"total={total}"

    @pipeline(dynamic=True)
    def fan(n: int) -> None:
        describe(flaky([square.submit(i) for i in range(n)]))

    first = fan(12)
    assert first.status.value == "completed"
    assert first.steps["describe"].output.load() == f"total={sum(i * i for i in range(12))}"
    assert first.steps["flaky"].attempts == 2 and first.steps["flaky"].output.load() == sum(i * i for i in range(12))
    attempts = Client().list_step_attempts(first.name, "flaky")
    assert [(a.attempt, a.status, a.error_message) for a in attempts] == [
        (1, "failed", "transient"), (2, "completed", None),
    ]

    second = fan(12)
    squares = [s for s in second.steps.values() if s.step_name == "square"]
    assert len(squares) == 12 and all(s.status.value == "cached" for s in squares)
    assert second.steps["flaky"].output.load() == first.steps["flaky"].output.load()

    @step
    def broken() -> int:
        raise ValueError("broken for good")

    @pipeline(dynamic=True, run_name="will-fail")
    def failing() -> None:
        square(3)
        broken()

    with pytest.raises(ValueError, match="broken for good"):
        failing()
    run = Client().get_pipeline_run("will-fail")
    assert run.status.value == "failed" and "broken" in (run.error or "")
    assert run.steps["broken"].status.value == "failed"
    assert run.steps["broken"].error_type == "ValueError"
    assert run.steps["square"].status.value == "cached"
    # every output is recorded exactly once: 12 squares, a sum and a description, then those two again
    assert backend.count("artifact_versions") == 16


# -- schema versions ------------------------------------------------------------------------


def test_the_schema_version_is_recorded_and_shown_by_store_info(backend: Backend) -> None:
    @step
    def one() -> int:
        return 1

    @pipeline(dynamic=True)
    def p() -> None:
        one()

    p()
    version = PG_SCHEMA_VERSION if backend.name == "postgres" else SCHEMA_VERSION  # PostgreSQL's adds schedules
    assert open_store().metadata.schema_version() == version
    assert backend.count("schema_version") == 1
    shown = _cli("store", "info")
    assert shown.returncode == 0, shown.stderr
    assert f"schema version: {version}" in shown.stdout
    if backend.name == "postgres":
        assert backend.url is not None and mask_password(backend.url) in shown.stdout
        assert "***" in shown.stdout and PASSWORD not in shown.stdout + shown.stderr
    else:
        assert "metadata.db" in shown.stdout


_V1_RUNS = (
    "CREATE TABLE runs (id TEXT PRIMARY KEY, name TEXT NOT NULL UNIQUE, pipeline_name TEXT NOT NULL,"
    " status TEXT NOT NULL, start REAL NOT NULL, end REAL, owner_host TEXT, owner_pid INTEGER,"
    " owner_started TEXT, parent_run_id TEXT, unlisted INTEGER NOT NULL DEFAULT 0, config TEXT, error TEXT)"
)


def test_a_version_1_sqlite_database_is_migrated_and_keeps_its_runs(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    with sqlite3.connect(path) as conn:  # what dynpipe wrote before schema versions existed
        conn.execute(_V1_RUNS)
        conn.execute(
            "INSERT INTO runs (id, name, pipeline_name, status, start, end, unlisted, config)"
            " VALUES ('r1', 'old-run', 'old', 'completed', 1.0, 2.0, 0, '{}')"
        )
    md = MetadataStore(path)
    assert md.schema_version() == SCHEMA_VERSION
    (old,) = md.list_runs(RunFilter(name="old-run"))
    assert old.status == "completed" and old.heartbeat is None
    md.create_run("r2", "new-run", "new", {})
    md.record_heartbeat("r2")
    (new,) = md.list_runs(RunFilter(name="new-run"))
    assert new.heartbeat is not None and new.heartbeat >= new.start
    md.close()
    assert MetadataStore(path).schema_version() == SCHEMA_VERSION  # opening again changes nothing


def test_a_database_from_a_newer_dynpipe_is_refused_with_a_clear_error(backend: Backend, store_home: Path) -> None:
    open_store()  # creates the schema
    if backend.url is None:
        with sqlite3.connect(store_home / "metadata.db") as conn:
            conn.execute("UPDATE schema_version SET version = 99")
    else:
        with psycopg.connect(backend.url, autocommit=True) as conn:
            conn.execute("UPDATE schema_version SET version = 99")
    version = SCHEMA_VERSION if backend.url is None else PG_SCHEMA_VERSION
    refused = f"schema version 99, newer than the version {version}.*upgrade dynpipe"
    with pytest.raises(StoreError, match=refused):
        open_metadata(store_home, backend.url)


def test_a_bad_heartbeat_timeout_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    from dynpipe.errors import SettingError

    @step
    def one() -> int:
        return 1

    @pipeline(dynamic=True)
    def p() -> None:
        one()

    monkeypatch.setenv("DYNPIPE_HEARTBEAT_TIMEOUT", "soon")
    with pytest.raises(SettingError, match="DYNPIPE_HEARTBEAT_TIMEOUT='soon'"):
        p()
    assert Client().list_pipeline_runs() == []  # refused before any run was recorded


# -- connection problems ---------------------------------------------------------------------


def test_a_wrong_password_names_host_and_database_but_never_the_password(postgres_server: PostgresServer) -> None:
    secret = "not-the-password-8d1f"
    url = postgres_server.url("dynpipe_template", password=secret)
    with pytest.raises(StoreError) as caught:
        open_metadata(Path("."), url)
    message = str(caught.value)
    assert f"127.0.0.1:{postgres_server.port}" in message and "'dynpipe_template'" in message
    assert "password authentication failed" in message and secret not in message
    shown = _cli("store", "info", env={**os.environ, "DYNPIPE_STORE_URL": url})
    assert shown.returncode == 1 and "dynpipe_template" in shown.stderr
    assert secret not in shown.stderr + shown.stdout


def test_an_unreachable_server_names_host_and_database_but_never_the_password() -> None:
    port = _free_port()  # nothing listens there
    url = f"postgresql://team:hunter2-secret@127.0.0.1:{port}/teamdb"
    with pytest.raises(StoreError) as caught:
        open_metadata(Path("."), url)
    message = str(caught.value)
    assert f"127.0.0.1:{port}" in message and "'teamdb'" in message and "'team'" in message
    assert "hunter2-secret" not in message


# -- a run whose orchestrator dies on another machine ------------------------------------------------

ELSEWHERE = textwrap.dedent(
    """
    import socket
    socket.gethostname = lambda: "another-machine"  # a PID check from the test's host is impossible

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

    @pipeline(dynamic=True, run_name="far-away")
    def far() -> None:
        quick()
        forever()

    far()
    """
)


def _wait_for_output(proc: subprocess.Popen[bytes], marker: bytes, seconds: float) -> None:
    assert proc.stdout is not None
    fd, seen, deadline = proc.stdout.fileno(), b"", time.monotonic() + seconds
    while marker not in seen:
        ready, _, _ = select.select([fd], [], [], max(0.0, deadline - time.monotonic()))
        chunk = os.read(fd, 4096) if ready else b""
        if not chunk:
            proc.kill()
            pytest.fail(f"child never printed {marker!r}; it wrote {seen!r}")
        seen += chunk


def test_a_killed_orchestrator_on_another_host_is_failed_after_the_heartbeat_limit(
    backend: Backend, store_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    timeout = 1.0
    monkeypatch.setenv("DYNPIPE_HEARTBEAT_TIMEOUT", str(timeout))  # beats every timeout / 4
    script = tmp_path / "elsewhere.py"
    script.write_text(ELSEWHERE)
    proc = subprocess.Popen([sys.executable, str(script)], env=dict(os.environ), stdout=subprocess.PIPE)
    try:
        _wait_for_output(proc, b"started", 120)
        client = Client()
        # Alive: the heartbeat keeps it running well past the limit, whoever reads it.
        deadline = time.monotonic() + 120
        while True:
            run = client.get_pipeline_run("far-away")
            assert run.status.value == "running", run.error
            record = open_store().metadata.list_runs(RunFilter(name="far-away"))[0]
            assert record.owner_host == "another-machine" and record.heartbeat is not None
            if record.heartbeat - record.start > 3 * timeout:
                break
            assert time.monotonic() < deadline, "the heartbeat never advanced"
            time.sleep(0.1)
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    deadline = time.monotonic() + 120
    while (run := Client().get_pipeline_run("far-away")).status.value == "running":
        assert time.monotonic() < deadline, "a lost run stayed running"
        time.sleep(0.1)
    assert run.status.value == "failed"
    assert "process lost" in (run.error or "") and "another-machine" in (run.error or "")
    assert run.steps["quick"].status.value == "completed"
    assert run.steps["forever"].status.value == "failed"
    assert "lost" in (run.steps["forever"].error_message or "")
