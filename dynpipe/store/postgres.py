"""PostgreSQL metadata store: the ``MetadataBackend`` of a store shared by a team or a cluster.

Chosen by ``DYNPIPE_STORE_URL=postgresql://user:password@host:port/database`` (psycopg 3,
the ``postgres`` extra). Connections come from a small per-process pool that survives a lost
connection (``postgres_pool.py``). Every write method is one transaction, like
the SQLite store's, and short steps' records are group-committed like its (``write_batch.py``);
artifact version numbers are assigned under a per-name advisory lock
so two processes never give two artifacts the same version.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable
from typing import Any

import psycopg
from psycopg import errors as pg_errors

from .. import settings
from ..errors import RunNameTaken
from ..status import ExecutionStatus
from .liveness import needs_clock, verdict
from .owners import owner_of_this_process
from .postgres_pool import ADVISORY_LOCK
from .postgres_schema import MIGRATIONS, SCHEMA_LOCK, SCHEMA_STATEMENTS, SCHEMA_VERSION
from .postgres_steps import StepRunReads
from .records import (
    ArtifactRecord,
    AttemptRecord,
    CachedStepRun,
    NewArtifact,
    NewStepRun,
    RunFilter,
    RunRecord,
    StepOutcome,
    StepRunRecord,
)
from .rows import artifact_record, cached_step_run, run_record, step_run_record
from .run_summaries import PostgresRunSummaryReads
from .schema_check import check_version, migration_statements
from .urls import mask_password
from .write_batch import Statement

_OPEN_SQL = "('initializing', 'queued', 'running', 'retrying')"
_NOW = "EXTRACT(EPOCH FROM clock_timestamp())::float8"

_INSERT_BLOB = "INSERT INTO blobs (hash, data) VALUES (%s, %s) ON CONFLICT (hash) DO NOTHING"
_INSERT_STEP_RUN = (
    "INSERT INTO step_runs (id, run_id, invocation_id, step_name, seq, status, start, runtime,"
    " upstream, parameters, inputs) VALUES (%(id)s, %(run_id)s, %(invocation_id)s, %(step_name)s, %(seq)s,"
    " %(status)s, %(start)s, %(runtime)s, %(upstream)s, %(parameters)s, %(inputs)s){tail}"
)
_INSERT_ARTIFACT = (
    "INSERT INTO artifact_versions (id, name, version, uri, content_hash, data_type, materializer,"
    " producer_step_run_id, run_id, output_name, size, created, metadata, tags)"
    " SELECT %(id)s, %(name)s, COALESCE(MAX(version), 0) + 1, %(uri)s, %(content_hash)s, %(data_type)s,"
    " %(materializer)s, %(producer_step_run_id)s, %(run_id)s, %(output_name)s, %(size)s, %(created)s,"
    " %(metadata)s, %(tags)s FROM artifact_versions WHERE name = %(name)s"
    " ON CONFLICT (id) DO NOTHING"  # a new id: conflicts only with itself, a repeat after a lost connection
)
#: a step that ended before its start was written (engine/starts.py): its whole row at once
_INSERT_FINISHED_STEP_RUN = (
    'INSERT INTO step_runs (id, run_id, invocation_id, step_name, seq, status, start, "end", attempts,'
    " runtime, cache_key, upstream, parameters, inputs, outputs, logs, error_type, error_message, traceback)"
    " VALUES (%(id)s, %(run_id)s, %(invocation_id)s, %(step_name)s, %(seq)s, %(status)s, %(start)s, %(end)s,"
    " %(attempts)s, %(runtime)s, %(cache_key)s, %(upstream)s, %(parameters)s, %(inputs)s, %(outputs)s, %(logs)s,"
    " %(error_type)s, %(error_message)s, %(traceback)s) ON CONFLICT (id) DO NOTHING"
)
_FINISH_STEP_RUN = (
    'UPDATE step_runs SET status = %(status)s, "end" = %(end)s, attempts = %(attempts)s,'
    " cache_key = COALESCE(%(cache_key)s, cache_key), outputs = %(outputs)s, logs = %(logs)s,"
    " error_type = %(error_type)s, error_message = %(error_message)s, traceback = %(traceback)s"
    " WHERE id = %(id)s"
)
#: a cache hit's whole row (it starts and ends at ``start``)
_INSERT_CACHED_STEP_RUN = (
    'INSERT INTO step_runs (id, run_id, invocation_id, step_name, seq, status, start, "end", runtime,'
    " cache_key, cached_from, upstream, parameters, inputs, outputs) VALUES (%(id)s, %(run_id)s,"
    " %(invocation_id)s, %(step_name)s, %(seq)s, %(status)s, %(start)s, %(start)s, %(runtime)s, %(cache_key)s,"
    " %(cached_from)s, %(upstream)s, %(parameters)s, %(inputs)s, %(outputs)s) ON CONFLICT (id) DO NOTHING"
)
#: a cache hit's step run and its outputs' artifact rows in one read (a row per output), so the
#: hit needs no ``artifacts_by_ids`` (a read, which would commit the queued records first)
_FIND_CACHED = (
    'SELECT s.id AS cached_id, s.outputs AS cached_outputs, s."end" AS cached_end, a.*'
    ' FROM (SELECT id, outputs, "end" FROM step_runs WHERE cache_key = %s AND status = \'completed\''
    ' AND "end" >= %s ORDER BY "end" DESC LIMIT 1) AS s'
    " LEFT JOIN LATERAL json_each_text(COALESCE(s.outputs, '{}')::json) AS j ON true"
    " LEFT JOIN artifact_versions AS a ON a.id = j.value"
)
_INSERT_ATTEMPT = (
    'INSERT INTO step_attempts (step_run_id, attempt, status, start, "end", error_type, error_message)'
    " VALUES (%(step_run_id)s, %(attempt)s, %(status)s, %(start)s, %(end)s, %(error_type)s, %(error_message)s)"
    " ON CONFLICT (step_run_id, attempt) DO NOTHING"  # each attempt is recorded once: only a repeat conflicts
)


def _text(value: str | None) -> str | None:
    """PostgreSQL text cannot hold NUL characters, which a step's output may contain."""
    return value.replace("\x00", "\ufffd") if value and "\x00" in value else value


class PostgresMetadata(StepRunReads, PostgresRunSummaryReads):
    """The metadata tables of one PostgreSQL database (connections: ``postgres_pool``)."""

    def __init__(self, url: str) -> None:
        super().__init__(url)
        with self._connection() as conn:
            self._create_or_migrate(conn)

    def _create_or_migrate(self, conn: psycopg.Connection[dict[str, Any]]) -> None:
        """Create the schema, or migrate an older one, under an advisory lock (one opener does it)."""
        with conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (SCHEMA_LOCK,))
            conn.execute(SCHEMA_STATEMENTS[0])
            row = conn.execute("SELECT version FROM schema_version").fetchone()
            found = int(row["version"]) if row else 0
            if found == SCHEMA_VERSION:
                return
            check_version(found, SCHEMA_VERSION, mask_password(self.url))
            for statement in migration_statements(found, SCHEMA_VERSION, MIGRATIONS):
                conn.execute(statement)
            for statement in SCHEMA_STATEMENTS:  # idempotent: new tables and indexes of any version
                conn.execute(statement)
            conn.execute("DELETE FROM schema_version")
            conn.execute("INSERT INTO schema_version (version) VALUES (%s)", (SCHEMA_VERSION,))

    def schema_version(self) -> int:
        return int(self.query("SELECT version FROM schema_version")[0]["version"])

    def location(self) -> str:
        return mask_password(self.url)

    # -- runs ---------------------------------------------------------------------------
    def create_run(
        self,
        run_id: str,
        name: str,
        pipeline_name: str,
        config: dict[str, Any],
        parent_run_id: str | None = None,
        unlisted: bool = False,
    ) -> None:
        host, pid, started = owner_of_this_process()
        now = time.time()
        run = {
            "id": run_id, "name": name, "pipeline_name": pipeline_name, "status": "running",
            "start": now, "owner_host": host, "owner_pid": pid, "owner_started": started,
            "parent_run_id": parent_run_id, "unlisted": int(unlisted),
            "config": json.dumps(config, default=str),
        }
        try:
            self.write(
                [
                    (
                        "INSERT INTO pipelines (name, created) VALUES (%s, %s) ON CONFLICT (name) DO NOTHING",
                        (pipeline_name, now),
                    ),
                    (
                        "INSERT INTO runs (id, name, pipeline_name, status, start, heartbeat, owner_host,"
                        " owner_pid, owner_started, parent_run_id, unlisted, config) VALUES (%(id)s, %(name)s,"
                        f" %(pipeline_name)s, %(status)s, %(start)s, {_NOW}, %(owner_host)s, %(owner_pid)s,"
                        " %(owner_started)s, %(parent_run_id)s, %(unlisted)s, %(config)s)",
                        run,
                    ),
                ]
            )
        except pg_errors.UniqueViolation:
            raise RunNameTaken(f"a run named {name!r} already exists in {self.location()}") from None

    def run_name_exists(self, name: str) -> bool:
        return bool(self.query("SELECT 1 FROM runs WHERE name = %s", (name,)))

    def finish_run(self, run_id: str, status: ExecutionStatus, error: str | None = None) -> None:
        now = time.time()
        self.write(
            [
                (
                    'UPDATE runs SET status = %s, "end" = %s, error = %s WHERE id = %s',
                    (str(status), now, _text(error), run_id),
                ),
                (
                    "UPDATE step_runs SET status = 'stopped', \"end\" = %s"
                    f" WHERE run_id = %s AND status IN {_OPEN_SQL}",
                    (now, run_id),
                ),
            ]
        )

    def list_runs(self, where: RunFilter) -> list[RunRecord]:
        clauses: list[str] = []
        params: list[Any] = []
        for column, op, value in (
            ("pipeline_name", "=", where.pipeline_name),
            ("name", "=", where.name),
            ("name", "LIKE", None if where.name_contains is None else f"%{where.name_contains}%"),
            ("id", "LIKE", None if where.id_prefix is None else f"{where.id_prefix}%"),
            ("parent_run_id", "=", where.parent_run_id),
        ):
            if value is not None:
                clauses.append(f"{column} {op} %s")
                params.append(value)
        if where.id_or_name is not None:
            clauses.append("(id = %s OR name = %s)")
            params += [where.id_or_name, where.id_or_name]
        if not where.include_unlisted:
            clauses.append("unlisted = 0")
        order = "ASC" if where.ascending else "DESC"
        sql = "SELECT * FROM runs" + (" WHERE " + " AND ".join(clauses) if clauses else "")
        sql += f" ORDER BY start {order}, row_no {order}"
        if where.limit is not None:
            sql += f" LIMIT {int(where.limit)}"
        return [run_record(row) for row in self.query(sql, params)]

    def record_heartbeat(self, run_id: str) -> None:
        # The server's clock, so readers on hosts with skewed clocks agree on its age.
        sql = f"UPDATE runs SET heartbeat = {_NOW} WHERE id = %s AND status IN ('running', 'initializing')"
        self.write([(sql, (run_id,))])

    def reap_dead_runs(self, runs: Iterable[RunRecord]) -> set[str]:
        runs = list(runs)
        now = self.query(f"SELECT {_NOW} AS now")[0]["now"] if needs_clock(runs) else None
        timeout = settings.heartbeat_timeout() if now is not None else 0.0
        dead: set[str] = set()
        for run in runs:
            why = verdict(run, now, timeout)
            if why is None:
                continue
            dead.add(run.id)
            end = time.time()
            self.write(
                [
                    (
                        'UPDATE runs SET status = \'failed\', "end" = COALESCE("end", %s), error = %s'
                        " WHERE id = %s AND status IN ('running', 'initializing')",
                        (end, why.run_error, run.id),
                    ),
                    (
                        'UPDATE step_runs SET status = \'failed\', "end" = COALESCE("end", %s),'
                        f" error_type = 'ProcessDied', error_message = %s WHERE run_id = %s AND status IN {_OPEN_SQL}",
                        (end, why.step_error, run.id),
                    ),
                ]
            )
        return dead

    def pipeline_has_listed_runs(self, pipeline_name: str) -> bool:
        sql = "SELECT 1 FROM runs WHERE pipeline_name = %s AND unlisted = 0 LIMIT 1"
        return bool(self.query(sql, (pipeline_name,)))

    def list_pipeline_names(self) -> list[str]:
        rows = self.query(
            "SELECT p.name FROM pipelines p WHERE EXISTS"
            " (SELECT 1 FROM runs r WHERE r.pipeline_name = p.name AND r.unlisted = 0) ORDER BY p.name"
        )
        return [row["name"] for row in rows]

    # -- step runs -------------------------------------------------------------------------
    @staticmethod
    def _insert_step(
        step: NewStepRun, status: ExecutionStatus, start: float | None, ignore: bool = False
    ) -> Statement:
        tail = " ON CONFLICT DO NOTHING" if ignore else ""
        return (_INSERT_STEP_RUN.format(tail=tail), PostgresMetadata._step_params(step, status, start))

    @staticmethod
    def _step_params(step: NewStepRun, status: ExecutionStatus, start: float | None) -> dict[str, Any]:
        return {
            "id": step.id, "run_id": step.run_id, "invocation_id": step.invocation_id,
            "step_name": step.step_name, "seq": step.seq, "status": str(status), "start": start,
            "runtime": step.runtime, "upstream": json.dumps(step.upstream),
            "parameters": json.dumps(step.parameters), "inputs": json.dumps(step.inputs),
        }

    @staticmethod
    def _insert_attempt(step_run_id: str, attempt: AttemptRecord) -> Statement:
        return (
            _INSERT_ATTEMPT,
            {
                "step_run_id": step_run_id, "attempt": attempt.attempt, "status": str(attempt.status),
                "start": attempt.start, "end": attempt.end, "error_type": attempt.error_type,
                "error_message": _text(attempt.error_message),
            },
        )

    def record_step_started(self, step: NewStepRun, start: float) -> None:
        self.write([self._insert_step(step, ExecutionStatus.RUNNING, start)])

    def record_attempt(self, step_run_id: str, attempt: AttemptRecord) -> None:
        self.write(
            [
                self._insert_attempt(step_run_id, attempt),
                (
                    "UPDATE step_runs SET status = 'retrying', attempts = %s WHERE id = %s",
                    (attempt.attempt, step_run_id),
                ),
            ]
        )

    def record_retry_started(self, step_run_id: str, attempt: int) -> None:
        self.write([("UPDATE step_runs SET status = 'running', attempts = %s WHERE id = %s", (attempt, step_run_id))])

    def finish_step_run(self, step: NewStepRun, outcome: StepOutcome, batched: bool = False) -> None:
        statements: list[Statement] = [(_INSERT_BLOB, (h, data)) for h, data in outcome.blobs]
        statements += self._artifact_statements(outcome.artifacts)
        if outcome.attempt is not None:
            statements.append(self._insert_attempt(step.id, outcome.attempt))
        params = {
            "status": str(outcome.status), "end": outcome.end, "attempts": outcome.attempts,
            "cache_key": outcome.cache_key, "outputs": json.dumps(outcome.outputs) if outcome.outputs else None,
            "logs": _text(outcome.logs), "error_type": outcome.error_type,
            "error_message": _text(outcome.error_message), "traceback": _text(outcome.traceback), "id": step.id,
        }
        if outcome.start is not None:  # its start was not written (see metadata.py): one INSERT
            params.update(self._step_params(step, outcome.status, outcome.start), status=params["status"])
            statements.append((_INSERT_FINISHED_STEP_RUN, params))
        else:
            if outcome.status is not ExecutionStatus.COMPLETED:  # failed or stopped before its start was written
                statements.append(self._insert_step(step, outcome.status, outcome.end, ignore=True))
            statements.append((_FINISH_STEP_RUN, params))
        if batched:
            size = sum(len(data) for _, data in outcome.blobs) + _row_bytes(params)
            key = outcome.cache_key if outcome.status is ExecutionStatus.COMPLETED else None
            if self._batch.add(step.run_id, statements, size, key, outcome.blobs):
                if self._batch.full:
                    self._batch.commit_pending()  # a failure fails this step (its record is in it)
                return
        self.write(statements)

    def record_cache_hit(
        self, step: NewStepRun, now: float, cache_key: str, cached: CachedStepRun, batched: bool = False
    ) -> None:
        params = self._step_params(step, ExecutionStatus.CACHED, now)
        params.update(cache_key=cache_key, cached_from=cached.id, outputs=json.dumps(cached.outputs))
        statement = (_INSERT_CACHED_STEP_RUN, params)
        if not (batched and self._batch.add(step.run_id, [statement], _row_bytes(params))):
            self.write([statement])
        elif self._batch.full:
            self._batch.commit_pending()

    def record_not_run(self, step: NewStepRun, status: ExecutionStatus, end: float, reason: str) -> None:
        kind = "Skipped" if status is ExecutionStatus.SKIPPED else "Stopped"
        self.write(
            [
                self._insert_step(step, status, None, ignore=True),
                (
                    'UPDATE step_runs SET status = %s, "end" = %s, error_type = %s, error_message = %s WHERE id = %s',
                    (str(status), end, kind, _text(reason), step.id),
                ),
            ]
        )

    def append_step_log(self, step_run_id: str, text: str) -> None:
        self.write([("UPDATE step_runs SET logs = COALESCE(logs, '') || %s WHERE id = %s", (_text(text), step_run_id))])

    def find_cached(self, cache_key: str, not_before: float | None) -> CachedStepRun | None:
        with self._batch_lock():  # waits for a batch in flight; commits the queue if it holds this key
            if cache_key in self._batch.cache_keys:
                self._batch.commit_pending()
        return cached_step_run(self._read(_FIND_CACHED, (cache_key, not_before or 0.0)))  # no commit of others' records

    def step_runs_of_run(self, run_id: str) -> list[StepRunRecord]:
        rows = self.query("SELECT * FROM step_runs WHERE run_id = %s ORDER BY seq, row_no", (run_id,))
        return [step_run_record(row) for row in rows]

    def step_attempts(self, step_run_id: str) -> list[AttemptRecord]:
        rows = self.query("SELECT * FROM step_attempts WHERE step_run_id = %s ORDER BY attempt", (step_run_id,))
        return [
            AttemptRecord(
                r["attempt"], ExecutionStatus(r["status"]), r["start"], r["end"], r["error_type"], r["error_message"]
            )
            for r in rows
        ]

    def run_names_of_step_runs(self, step_run_ids: list[str]) -> dict[str, str]:
        rows = self.query(
            "SELECT s.id, r.name FROM step_runs s JOIN runs r ON r.id = s.run_id WHERE s.id = ANY(%s)",
            (list(step_run_ids),),
        )
        return {row["id"]: row["name"] for row in rows}

    # -- artifacts ---------------------------------------------------------------------------
    @staticmethod
    def _artifact_statements(artifacts: list[NewArtifact]) -> list[Statement]:
        """Version-assigning inserts, after per-name locks taken in one order (no deadlock)."""
        names = sorted({a.name for a in artifacts})
        statements: list[Statement] = [(ADVISORY_LOCK, (n,)) for n in names]
        statements += [(_INSERT_ARTIFACT, a.row()) for a in artifacts]
        return statements

    def record_artifacts(self, artifacts: list[NewArtifact]) -> None:
        self.write(self._artifact_statements(artifacts))

    def artifacts_by_ids(self, ids: Iterable[str]) -> list[ArtifactRecord]:
        rows = self.query("SELECT * FROM artifact_versions WHERE id = ANY(%s)", (list(ids),))
        return [artifact_record(r) for r in rows]

    def find_artifact(self, name_or_id: str, version: int | None = None) -> ArtifactRecord | None:
        if version is None:
            rows = self.query("SELECT * FROM artifact_versions WHERE id = %s", (name_or_id,))
            if not rows:
                rows = self.query(
                    "SELECT * FROM artifact_versions WHERE name = %s ORDER BY version DESC LIMIT 1", (name_or_id,)
                )
        else:
            rows = self.query(
                "SELECT * FROM artifact_versions WHERE name = %s AND version = %s", (name_or_id, int(version))
            )
        return artifact_record(rows[0]) if rows else None

    def list_artifacts(self, name: str | None = None) -> list[ArtifactRecord]:
        if name is None:
            rows = self.query("SELECT * FROM artifact_versions ORDER BY created")
        else:
            rows = self.query("SELECT * FROM artifact_versions WHERE name = %s ORDER BY version", (name,))
        return [artifact_record(r) for r in rows]

    # -- small artifacts (see artifacts.py) -------------------------------------------------
    def put_blob(self, content_hash: str, data: bytes) -> None:
        self.write([(_INSERT_BLOB, (content_hash, data))])

    def get_blob(self, content_hash: str) -> bytes | None:
        queued = self._queued_blob(content_hash)
        if queued is not None:
            return queued
        rows = self._read("SELECT data FROM blobs WHERE hash = %s", (content_hash,))
        return bytes(rows[0]["data"]) if rows else None

    def has_blob(self, content_hash: str) -> bool:
        if self._queued_blob(content_hash) is not None:
            return True
        return bool(self._read("SELECT 1 FROM blobs WHERE hash = %s", (content_hash,)))

    def _queued_blob(self, content_hash: str) -> bytes | None:
        """A blob queued in this process (no commit needed), after a batch in flight is committed."""
        with self._batch_lock():
            return self._batch.blobs.get(content_hash)


def _row_bytes(params: dict[str, Any]) -> int:
    """Roughly what a step row weighs (``write_batch.MAX_BYTES``): its JSON columns and logs."""
    return sum(len(params.get(k) or "") for k in ("parameters", "inputs", "outputs", "logs"))
