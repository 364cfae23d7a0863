"""Group commit of short steps' records (store/write_batch.py): a bounded window, read-your-writes,
and what a kill -9 of the orchestrator leaves behind — on SQLite and on PostgreSQL (``backend``)."""

from __future__ import annotations

import json
import os
import random
import select
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from backends import Backend, PostgresServer
from test_store_integrity import tiny_disk  # noqa: F401 - the fixture

from dynpipe import Client, pipeline, step
from dynpipe.errors import StoreError
from dynpipe.store import write_batch


def _committed(backend: Backend, home: Path, sql: str) -> list[tuple[object, ...]]:
    """Rows committed, read over a connection of its own (no commit by this process's store)."""
    if backend.url is not None:
        import psycopg

        with psycopg.connect(backend.url) as pg:
            return [tuple(row) for row in pg.execute(sql).fetchall()]
    conn = sqlite3.connect(home / "metadata.db")
    try:
        return [tuple(row) for row in conn.execute(sql)]
    finally:
        conn.close()


def _stored_steps(backend: Backend, home: Path) -> list[object]:
    return [row[0] for row in _committed(backend, home, "SELECT step_name FROM step_runs ORDER BY seq")]


@pytest.fixture
def no_heartbeat(monkeypatch: pytest.MonkeyPatch) -> None:
    """The heartbeat is a write (and commits the batch first): keep it out of these tests."""
    monkeypatch.setenv("DYNPIPE_HEARTBEAT_TIMEOUT", "3600")
    monkeypatch.setenv("DYNPIPE_HEARTBEAT_INTERVAL", "600")


def test_short_step_is_batched_and_the_same_process_reads_it_at_once(
    backend: Backend, store_home: Path, monkeypatch: pytest.MonkeyPatch, no_heartbeat: None
) -> None:
    monkeypatch.setattr(write_batch, "WINDOW", 600.0)
    seen: dict[str, object] = {}

    @step
    def quick(i: int) -> int:
        return i

    @pipeline(dynamic=True, enable_cache=False)
    def p() -> None:
        quick(7)
        seen["other connection before"] = _stored_steps(backend, store_home)  # queued: not committed yet
        run = Client().get_pipeline("p").last_run  # read-your-writes: commits the queue first
        seen["client"] = (run.steps["quick"].status.value, run.steps["quick"].output.load())
        seen["other connection after"] = _stored_steps(backend, store_home)

    p()
    assert seen == {
        "other connection before": [],
        "client": ("completed", 7),
        "other connection after": ["quick"],
    }


def test_short_step_reaches_other_processes_within_the_window(
    backend: Backend, store_home: Path, monkeypatch: pytest.MonkeyPatch, no_heartbeat: None
) -> None:
    """Nothing in this process reads or writes while the other one waits: only the timer commits."""
    monkeypatch.setattr(write_batch, "WINDOW", 0.2)
    if backend.url is None:
        connect = f"import sqlite3; conn = sqlite3.connect({str(store_home / 'metadata.db')!r})"
    else:
        connect = f"import psycopg; conn = psycopg.connect({backend.url!r})"
    poll = textwrap.dedent(
        f"""
        import sys, time
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            {connect}
            rows = conn.execute("SELECT status FROM step_runs WHERE step_name = 'quick'").fetchall()
            conn.close()
            if rows:
                print(rows[0][0])
                sys.exit(0)
            time.sleep(0.01)
        sys.exit("never committed")
        """
    )
    seen: list[str] = []

    @step
    def quick(i: int) -> int:
        return i

    @pipeline(dynamic=True, enable_cache=False)
    def p() -> None:
        quick(1)
        done = subprocess.run([sys.executable, "-c", poll], capture_output=True, text=True, timeout=60)
        seen.append(done.stdout.strip() or done.stderr)

    p()
    assert seen == ["completed"]


def test_a_cached_step_right_after_its_first_run_is_a_hit(backend: Backend, monkeypatch: pytest.MonkeyPatch) -> None:
    """The cache lookup commits a queued record of the key it looks for (and only then)."""
    monkeypatch.setattr(write_batch, "WINDOW", 600.0)

    @step
    def noop(i: int) -> int:
        return i

    @pipeline(dynamic=True, enable_cache=True)
    def p() -> None:
        noop(1)
        noop(1)

    run = p()
    assert sorted(s.status.value for s in run.steps.values()) == ["cached", "completed"]


STREAM = textwrap.dedent(
    """
    import sys, time
    from dynpipe import pipeline, step

    SLOW_AT = int(sys.argv[1])

    @step
    def quick(i: int) -> int:
        return i

    @step
    def slow(i: int) -> int:
        time.sleep(0.3)  # longer than write_batch.WINDOW: recorded before it returns
        return i

    @pipeline(dynamic=True, enable_cache=False)
    def stream() -> None:
        i = 0
        while True:
            if i == SLOW_AT:
                slow(i)
            quick(i)
            i += 1
            print(f"done {i}", flush=True)

    stream()
    """
)


def test_killed_orchestrator_loses_only_a_suffix_of_short_steps(
    backend: Backend, store_home: Path, tmp_path: Path
) -> None:
    script = tmp_path / "stream.py"
    script.write_text(STREAM)
    slow_at = 100
    kill_after = slow_at + random.randint(1, 400)  # a random point past the slow step
    env = {**os.environ, "DYNPIPE_HOME": str(store_home)}
    proc = subprocess.Popen([sys.executable, str(script), str(slow_at)], env=env, stdout=subprocess.PIPE)
    assert proc.stdout is not None
    fd, seen, deadline = proc.stdout.fileno(), b"", time.monotonic() + 60
    while seen.count(b"\n") < kill_after:
        ready, _, _ = select.select([fd], [], [], max(0.0, deadline - time.monotonic()))
        chunk = os.read(fd, 65536) if ready else b""
        if not chunk:
            proc.kill()
            pytest.fail(f"child stopped early; it wrote {seen[-200:]!r}")
        seen += chunk
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)

    if backend.url is None:
        assert _committed(backend, store_home, "PRAGMA integrity_check") == [("ok",)]
    rows = _committed(backend, store_home, "SELECT step_name, status, parameters FROM step_runs ORDER BY seq")
    done = [json.loads(params)["i"] for name, status, params in rows if name.startswith("quick")]
    assert done == list(range(len(done))), "committed short steps are a prefix of the stream, no gaps"
    assert len(done) >= slow_at, "the slow step's synchronous commit took every record queued before it"
    assert ("slow", "completed") in [(name, status) for name, status, _ in rows]

    run = Client(store_home).get_pipeline("stream").last_run
    assert run.status.value == "failed"  # the process is gone: a reader records it
    outputs = {s.parameters["i"]: s.output.load() for s in run.steps.values() if s.status.value == "completed"}
    completed = [json.loads(params)["i"] for name, status, params in rows if (name, status) == ("quick", "completed")]
    assert outputs == {i: i for i in completed} | {slow_at: slow_at}  # every recorded output loads


def test_a_batch_that_cannot_be_committed_fails_the_run(
    tiny_disk: Path,  # noqa: F811 - the fixture imported above
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Every record queued until the run's end (4 MB into a 1 MiB disk): the end's commit fails,
    and the run raises the store's error naming the database instead of reporting success."""
    store = tiny_disk / "store"
    monkeypatch.setenv("DYNPIPE_HOME", str(store))
    monkeypatch.setattr(write_batch, "WINDOW", 600.0)
    monkeypatch.setattr(write_batch, "MAX_BYTES", 1 << 40)

    @step
    def note(text: str) -> int:
        return len(text)

    @pipeline(dynamic=True, enable_cache=False)
    def fill() -> None:
        for i in range(40):
            note(f"{i}" + "x" * 100_000)

    with pytest.raises(StoreError, match="no space left on device") as info:
        fill()
    assert str(store / "metadata.db") in str(info.value)


AT_EXIT = textwrap.dedent(
    """
    import time
    from dynpipe.status import ExecutionStatus
    from dynpipe.store import write_batch
    from dynpipe.store.records import NewStepRun, StepOutcome
    from dynpipe.store.store import open_store

    write_batch.WINDOW = 600.0  # only the exit can commit it
    metadata = open_store().metadata
    metadata.create_run("r1", "left-open", "p", {})
    step = NewStepRun("s1", "r1", "quick", "quick", 1, "inline", [], {})
    now = time.time()
    metadata.finish_step_run(step, StepOutcome(ExecutionStatus.COMPLETED, now, 1, start=now), batched=True)
    """
)


def test_records_queued_when_the_process_exits_are_committed(backend: Backend, store_home: Path) -> None:
    env = {**os.environ, "DYNPIPE_HOME": str(store_home)}
    subprocess.run([sys.executable, "-c", AT_EXIT], env=env, check=True, timeout=60)
    assert _stored_steps(backend, store_home) == ["quick"]


@pytest.mark.parametrize("backend", ["postgres"], indirect=True)
def test_a_batch_the_server_rejects_fails_the_run(
    backend: Backend, postgres_server: PostgresServer, monkeypatch: pytest.MonkeyPatch, no_heartbeat: None
) -> None:
    """PostgreSQL: a trigger rejects one queued row; the run's end commits the batch, and the run
    raises the store's error naming the database instead of reporting success."""
    monkeypatch.setattr(write_batch, "WINDOW", 600.0)
    import psycopg

    assert backend.url is not None
    with psycopg.connect(backend.url, autocommit=True) as admin:
        Client()  # creates the schema
        admin.execute(
            "CREATE FUNCTION reject() RETURNS trigger LANGUAGE plpgsql AS"
            " $$ BEGIN RAISE EXCEPTION 'rejected by the test'; END $$"
        )
        admin.execute(
            "CREATE TRIGGER reject_doomed BEFORE INSERT ON step_runs FOR EACH ROW"
            " WHEN (NEW.step_name = 'doomed') EXECUTE FUNCTION reject()"
        )

    @step
    def fine(i: int) -> int:
        return i

    @step
    def doomed(i: int) -> int:
        return i

    @pipeline(dynamic=True, enable_cache=False)
    def p() -> None:
        fine(1)
        doomed(2)

    with pytest.raises(StoreError, match="rejected by the test") as info:
        p()
    assert backend.url.rsplit("/", 1)[1] in str(info.value)  # the database
    assert _stored_steps(backend, Path()) == []  # the batch is all or nothing
