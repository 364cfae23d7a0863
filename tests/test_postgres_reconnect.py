"""A PostgreSQL connection lost between or during statements, against a real server.

Between units of work (the server restarted, a backend terminated while idle) the pool drops
the dead connection and the work goes through on a new one. During one, a read or an
idempotent write is repeated once on a new connection; any other write is not (it may have
been committed) and the error names the host and database, never the password.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import psycopg
import pytest
from backends import PASSWORD, PostgresServer

from dynpipe.status import ExecutionStatus
from dynpipe.store import postgres, write_batch
from dynpipe.store.postgres import PostgresMetadata
from dynpipe.store.postgres_pool import ConnectionLost, idempotent
from dynpipe.store.records import AttemptRecord, NewArtifact, NewStepRun, RunFilter, StepOutcome

pytestmark = pytest.mark.timeout(120)


def _open(server: PostgresServer) -> tuple[PostgresMetadata, str]:
    database = server.new_database()
    return PostgresMetadata(server.url(database)), database


def _terminate(server: PostgresServer, database: str, where: str = "true") -> int:
    """Terminate the dynpipe backends of ``database`` (matching ``where``); wait until they are gone."""
    with psycopg.connect(server.url("postgres"), autocommit=True) as admin:
        rows = admin.execute(
            "SELECT pg_terminate_backend(pid, 10000) FROM pg_stat_activity"
            f" WHERE datname = %s AND application_name = 'dynpipe' AND pid <> pg_backend_pid() AND {where}",
            (database,),
        ).fetchall()
    return len(rows)


def _wait_for_lock_wait(server: PostgresServer, database: str) -> None:
    """Until a dynpipe backend of ``database`` is blocked on a lock (deadline 30 s)."""
    deadline = time.monotonic() + 30
    with psycopg.connect(server.url("postgres"), autocommit=True) as admin:
        while time.monotonic() < deadline:
            waiting = admin.execute(
                "SELECT 1 FROM pg_stat_activity WHERE datname = %s AND application_name = 'dynpipe'"
                " AND wait_event_type = 'Lock'",
                (database,),
            ).fetchall()
            if waiting:
                return
            time.sleep(0.02)
    raise AssertionError("the write never reached the lock")


def _in_thread(work: Any) -> tuple[threading.Thread, list[BaseException]]:
    errors: list[BaseException] = []

    def run() -> None:
        try:
            work()
        except BaseException as exc:  # handed to the test
            errors.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, errors


def test_a_backend_terminated_while_idle_is_replaced_and_the_write_goes_through(
    postgres_server: PostgresServer,
) -> None:
    md, database = _open(postgres_server)
    try:
        md.create_run("r1", "first", "p", {})
        assert _terminate(postgres_server, database) >= 1
        # create_run is not idempotent: it goes through because the dead connection is never used.
        md.create_run("r2", "second", "p", {})
        assert {r.name for r in md.list_runs(RunFilter())} == {"first", "second"}
    finally:
        md.close()


def test_a_server_restart_between_writes_is_survived(postgres_server: PostgresServer) -> None:
    md, _ = _open(postgres_server)
    log = str(postgres_server.folder / "log")
    try:
        md.create_run("r1", "before", "p", {})
        stopped = postgres_server.pg_ctl("-m", "fast", "-w", "-t", "60", "stop")
        assert stopped.returncode == 0, stopped.stderr
        # The write starts while the server is down (its idle connection died with it) and
        # goes through once the server is back, instead of failing on "connection refused".
        thread, errors = _in_thread(lambda: md.create_run("r2", "after", "p", {}))
        restarted = postgres_server.pg_ctl("-w", "-t", "60", "-l", log, "restart")  # the same options
        assert restarted.returncode == 0, restarted.stderr
        thread.join(30)
        assert not thread.is_alive() and errors == []
        md.finish_run("r1", ExecutionStatus.COMPLETED)
        runs = {r.name: r.status for r in md.list_runs(RunFilter())}
        assert runs == {"before": ExecutionStatus.COMPLETED, "after": ExecutionStatus.RUNNING}
    finally:
        md.close()


def test_an_idempotent_write_lost_mid_statement_is_repeated_once_on_a_new_connection(
    postgres_server: PostgresServer,
) -> None:
    md, database = _open(postgres_server)
    try:
        md.create_run("r1", "run", "p", {})
        with psycopg.connect(postgres_server.url(database)) as holder:
            holder.execute("SELECT 1 FROM runs WHERE id = 'r1' FOR UPDATE")  # the row is locked
            thread, errors = _in_thread(lambda: md.finish_run("r1", ExecutionStatus.FAILED, "boom"))
            _wait_for_lock_wait(postgres_server, database)
            assert _terminate(postgres_server, database, "wait_event_type = 'Lock'") == 1
            _wait_for_lock_wait(postgres_server, database)  # the repeat, on a new connection
        thread.join(30)  # the holder's transaction ended with the block
        assert not thread.is_alive() and errors == []
        (run,) = md.list_runs(RunFilter())
        assert run.status is ExecutionStatus.FAILED and run.error == "boom"
    finally:
        md.close()


def test_a_non_idempotent_write_lost_mid_statement_is_not_repeated_and_names_the_database(
    postgres_server: PostgresServer,
) -> None:
    md, database = _open(postgres_server)
    try:
        md.create_run("r1", "run", "p", {})
        md.record_step_started(NewStepRun("s1", "r1", "talk", "talk", 1, "inline", [], {}), time.time())
        with psycopg.connect(postgres_server.url(database)) as holder:
            holder.execute("SELECT 1 FROM step_runs WHERE id = 's1' FOR UPDATE")  # the row is locked
            thread, errors = _in_thread(lambda: md.append_step_log("s1", "hello\n"))  # appends: not repeatable
            _wait_for_lock_wait(postgres_server, database)
            assert _terminate(postgres_server, database, "wait_event_type = 'Lock'") == 1
            thread.join(30)
        assert not thread.is_alive() and len(errors) == 1
        error = errors[0]
        assert isinstance(error, ConnectionLost)
        message = str(error)
        assert f"database '{database}' on 127.0.0.1:{postgres_server.port}" in message
        assert "may or may not have been committed" in message
        assert PASSWORD not in message
        assert md.step_run_of_run("r1", "talk").logs == ""  # type: ignore[union-attr] - not repeated
        md.append_step_log("s1", "again\n")  # and the store is usable again
        assert md.step_run_of_run("r1", "talk").logs == "again\n"  # type: ignore[union-attr]
    finally:
        md.close()


def test_a_batch_of_short_steps_lost_mid_commit_is_repeated_once_and_recorded_once(
    postgres_server: PostgresServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Group commit: every statement of a queued record is safe to repeat, so a batch whose
    connection dies mid-commit is committed on a new one — each row once, versions 1..3."""
    monkeypatch.setattr(write_batch, "WINDOW", 600.0)  # only the flush commits
    md, database = _open(postgres_server)
    try:
        md.create_run("r1", "run", "p", {})
        now = time.time()
        for i in range(3):
            step = NewStepRun(f"s{i}", "r1", f"quick_{i}", "quick", i, "inline", [], {})
            artifact = NewArtifact(
                id=f"a{i}", name="model", uri=f"artifacts/{i}", content_hash=f"{i:064x}", data_type="builtins.int",
                materializer="builtins", producer_step_run_id=step.id, run_id="r1", output_name="output", size=1,
            )
            outcome = StepOutcome(
                ExecutionStatus.COMPLETED, now, 1, outputs={"output": artifact.id}, artifacts=[artifact], start=now,
                blobs=[(artifact.content_hash, b"%d" % i)],
                attempt=AttemptRecord(1, ExecutionStatus.COMPLETED, now, now),
            )
            md.finish_step_run(step, outcome, batched=True)
        with psycopg.connect(postgres_server.url(database), autocommit=True) as holder:
            holder.execute("SELECT pg_advisory_lock(hashtext('model'))")  # the batch's version lock waits
            thread, errors = _in_thread(lambda: md.flush("r1"))
            _wait_for_lock_wait(postgres_server, database)
            assert _terminate(postgres_server, database, "wait_event_type = 'Lock'") == 1
            _wait_for_lock_wait(postgres_server, database)  # the repeat, on a new connection
        thread.join(30)  # the holder's lock went with its session
        assert not thread.is_alive() and errors == []
        assert [(s.invocation_id, s.status) for s in md.step_runs_of_run("r1")] == [
            (f"quick_{i}", ExecutionStatus.COMPLETED) for i in range(3)
        ]
        assert [(a.id, a.version) for a in md.list_artifacts("model")] == [("a0", 1), ("a1", 2), ("a2", 3)]
        assert md.get_blob(f"{2:064x}") == b"2"
        assert [a.attempt for a in md.step_attempts("s2")] == [1]
    finally:
        md.close()


def test_which_statements_are_safe_to_repeat() -> None:
    assert idempotent("UPDATE runs SET status = %s WHERE id = %s")
    assert idempotent("INSERT INTO blobs (hash, data) VALUES (%s, %s) ON CONFLICT (hash) DO NOTHING")
    assert not idempotent("UPDATE step_runs SET logs = COALESCE(logs, '') || %s WHERE id = %s")
    assert not idempotent("INSERT INTO runs (id) VALUES (%s)")
    # a new artifact version (a new id: it conflicts only with itself) is safe to repeat, so a
    # batch of short steps' records is retried after a lost connection
    batched = (postgres._INSERT_ARTIFACT, postgres._INSERT_ATTEMPT, postgres._INSERT_FINISHED_STEP_RUN)
    assert all(idempotent(sql) for sql in batched)
