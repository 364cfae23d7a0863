"""SQLite metadata store: the ``MetadataBackend`` of an embedded store root.

One connection per process guarded by a lock (cheaper than a connection per thread on the
hot path); WAL mode plus ``BEGIN IMMEDIATE`` for every write so that several processes
can write at once without "database is locked". Every statement dynpipe runs is here,
behind a method named for the unit of work it does.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from .. import settings
from ..errors import RunNameTaken, StoreFullError
from ..status import ExecutionStatus
from .checkpoints import SAFETY_NET_PAGES, Checkpointer
from .owners import owner_of_this_process
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
from .run_summaries import RunSummaryReads
from .schema_check import check_version, migration_statements
from .sqlite_schema import MIGRATIONS, SCHEMA_STATEMENTS, SCHEMA_VERSION
from .sqlite_statements import (
    FIND_CACHED,
    INSERT_BLOB,
    INSERT_STEP_RUN,
    Statement,
    artifact_statement,
    attempt_statement,
    cache_hit_statement,
    finish_step_statement,
    row_bytes,
    step_params,
)
from .write_batch import WriteBatch, commit_queued

_OPEN = ("initializing", "queued", "running", "retrying")
_OPEN_SQL = "(" + ", ".join(f"'{s}'" for s in _OPEN) + ")"


class MetadataStore(RunSummaryReads):
    """Thread-safe access to the SQLite metadata database of one store root."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.RLock()
        self._rolled_back = False  # whether the last failed transaction was rolled back (write_batch)
        self._conn = self._connect()
        self._checkpoints = Checkpointer(path)
        self._batch = self._new_batch()

    def _new_batch(self) -> WriteBatch:
        """Short steps' records, committed together within ``write_batch.WINDOW`` (group commit)."""
        return WriteBatch(
            str(self.path), self._lock, lambda grouped: self._transaction(grouped.items(), many=True),
            lambda: self._rolled_back,
        )

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(
            str(self.path), timeout=60.0, isolation_level=None, check_same_thread=False
        )
        conn.execute("PRAGMA busy_timeout = 60000")
        self._retry(lambda: conn.execute("PRAGMA journal_mode = WAL"))  # bypasses busy_timeout
        conn.execute("PRAGMA synchronous = NORMAL")
        conn.execute(f"PRAGMA wal_autocheckpoint = {SAFETY_NET_PAGES}")  # checkpoints.py does it off-thread
        conn.execute("PRAGMA foreign_keys = OFF")
        if self._read_version(conn) != SCHEMA_VERSION:
            self._retry(lambda: self._create_or_migrate(conn))
        return conn

    @staticmethod
    def _read_version(conn: sqlite3.Connection) -> int | None:
        try:
            row = conn.execute("SELECT version FROM schema_version").fetchone()
        except sqlite3.OperationalError:
            return None  # no such table: a new database, or one made before versioning
        return int(row[0]) if row else None

    def _create_or_migrate(self, conn: sqlite3.Connection) -> None:
        """Create the schema, or migrate an older one, under the write lock (one opener does it)."""
        conn.execute("BEGIN IMMEDIATE")
        try:
            found = self._read_version(conn)
            if found is None:
                has_runs = conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'runs'").fetchone()
                found = 1 if has_runs else 0
            check_version(found, SCHEMA_VERSION, str(self.path))
            for statement in migration_statements(found, SCHEMA_VERSION, MIGRATIONS):
                conn.execute(statement)
            for statement in SCHEMA_STATEMENTS:  # idempotent: new tables and indexes of any version
                conn.execute(statement)
            conn.execute("DELETE FROM schema_version")
            conn.execute("INSERT INTO schema_version (version) VALUES (?)", (SCHEMA_VERSION,))
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")

    def schema_version(self) -> int:
        return int(self.query("SELECT version FROM schema_version")[0][0])

    def location(self) -> str:
        return f"sqlite://{self.path}"

    @staticmethod
    def _retry(fn: Any, attempts: int = 50) -> Any:
        """Retry on SQLITE_BUSY paths that bypass the busy handler (schema setup, WAL switch)."""
        for i in range(attempts):
            try:
                return fn()
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) and "busy" not in str(exc) or i == attempts - 1:
                    raise
                time.sleep(0.01 * (i + 1))
        return None

    def _conn_for_process(self) -> sqlite3.Connection:
        # A forked child must not reuse the parent's connection (the batch learns of a fork from its hook).
        if self._batch.forked:
            self._lock, self._conn, self._checkpoints = threading.RLock(), self._connect(), Checkpointer(self.path)
            self._batch = self._new_batch()  # the parent's queued records are the parent's to commit
        return self._conn

    # -- the two primitives (SQLite only; not part of MetadataBackend) ----------------------
    def write(self, statements: Sequence[Statement]) -> None:
        """Run statements in one immediate transaction (atomic, never a lost update), after the
        records queued before them (they may update a queued row; an error leaves those alone)."""
        with self._lock:
            self._conn_for_process()
            self._batch.commit_pending()
            self._transaction(statements)

    def _transaction(self, statements: Iterable[tuple[str, Any]], many: bool = False) -> None:
        """``statements`` in one transaction; ``many``: each is (sql, rows) for ``executemany``."""
        with self._lock:
            conn = self._conn

            def _tx() -> None:
                conn.execute("BEGIN IMMEDIATE")
                try:
                    run = conn.executemany if many else conn.execute
                    for sql, params in statements:
                        run(sql, params)
                    conn.execute("COMMIT")
                except BaseException:
                    # after COMMIT returned (an interrupt landing there) nothing is left to roll back
                    self._rolled_back = conn.in_transaction
                    if conn.in_transaction:  # SQLite rolls back by itself on some errors (disk full)
                        conn.execute("ROLLBACK")
                    raise

            try:
                self._retry(_tx)
                self._checkpoints.committed()
            except sqlite3.OperationalError as exc:
                if "full" not in str(exc):  # SQLITE_FULL: "database or disk is full"
                    raise
                raise StoreFullError(
                    f"no space left on device: cannot write run metadata to {self.path} ({exc});"
                    " the last committed state is kept. Free space there (or point DYNPIPE_HOME /"
                    " DYNPIPE_STORE_URL at a bigger disk) and run again."
                ) from exc

    def query(self, sql: str, params: Sequence[Any] | dict[str, Any] = ()) -> list[sqlite3.Row]:
        """Rows of a read (tests and this module; callers elsewhere use the named methods); the
        records queued in this process are committed first (read-your-writes)."""
        commit_queued(str(self.path))  # not under our lock: another store of the file has its own
        return self._read(sql, params)

    def flush(self, run_id: str | None = None) -> None:
        """Commit the queued records now; raise the error of a batch that held records of ``run_id``."""
        self._batch.flush(run_id)

    def _read(self, sql: str, params: Sequence[Any] | dict[str, Any] = ()) -> list[sqlite3.Row]:
        with self._lock:
            conn = self._conn_for_process()
            cur = conn.execute(sql, params)
            cur.row_factory = sqlite3.Row
            return cur.fetchall()

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
            "start": now, "heartbeat": now, "owner_host": host, "owner_pid": pid, "owner_started": started,
            "parent_run_id": parent_run_id, "unlisted": int(unlisted),
            "config": json.dumps(config, default=str),
        }
        try:
            self.write(
                [
                    ("INSERT OR IGNORE INTO pipelines (name, created) VALUES (?, ?)", (pipeline_name, now)),
                    (
                        "INSERT INTO runs (id, name, pipeline_name, status, start, heartbeat, owner_host,"
                        " owner_pid, owner_started, parent_run_id, unlisted, config) VALUES (:id, :name,"
                        " :pipeline_name, :status, :start, :heartbeat, :owner_host, :owner_pid, :owner_started,"
                        " :parent_run_id, :unlisted, :config)",
                        run,
                    ),
                ]
            )
        except sqlite3.IntegrityError:
            raise RunNameTaken(f"a run named {name!r} already exists in {self.path.parent}") from None

    def run_name_exists(self, name: str) -> bool:
        return bool(self.query("SELECT 1 FROM runs WHERE name = ?", (name,)))

    def finish_run(self, run_id: str, status: ExecutionStatus, error: str | None = None) -> None:
        now = time.time()
        self.write(
            [
                ("UPDATE runs SET status = ?, end = ?, error = ? WHERE id = ?", (str(status), now, error, run_id)),
                # Anything still open in this run can no longer finish.
                (
                    "UPDATE step_runs SET status = 'stopped', end = ? WHERE run_id = ?"
                    f" AND status IN {_OPEN_SQL}",
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
                clauses.append(f"{column} {op} ?")
                params.append(value)
        if where.id_or_name is not None:
            clauses.append("(id = ? OR name = ?)")
            params += [where.id_or_name, where.id_or_name]
        if not where.include_unlisted:
            clauses.append("unlisted = 0")
        order = "ASC" if where.ascending else "DESC"
        sql = "SELECT * FROM runs" + (" WHERE " + " AND ".join(clauses) if clauses else "")
        sql += f" ORDER BY start {order}, rowid {order}"
        if where.limit is not None:
            sql += f" LIMIT {int(where.limit)}"
        return [run_record(row) for row in self.query(sql, params)]

    def record_heartbeat(self, run_id: str) -> None:
        self.write(
            [
                (
                    "UPDATE runs SET heartbeat = ? WHERE id = ? AND status IN ('running', 'initializing')",
                    (time.time(), run_id),
                )
            ]
        )

    def reap_dead_runs(self, runs: Iterable[RunRecord]) -> set[str]:
        """Mark runs whose owner process is gone (or silent too long) as failed; return their ids."""
        from .liveness import needs_clock, verdict  # only the Client reaps: a run never loads it

        runs = list(runs)
        now = time.time() if needs_clock(runs) else None
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
                        "UPDATE runs SET status = 'failed', end = COALESCE(end, ?), error = ?"
                        " WHERE id = ? AND status IN ('running', 'initializing')",
                        (end, why.run_error, run.id),
                    ),
                    (
                        "UPDATE step_runs SET status = 'failed', end = COALESCE(end, ?),"
                        " error_type = 'ProcessDied', error_message = ?"
                        f" WHERE run_id = ? AND status IN {_OPEN_SQL}",
                        (end, why.step_error, run.id),
                    ),
                ]
            )
        return dead

    def pipeline_has_listed_runs(self, pipeline_name: str) -> bool:
        return bool(
            self.query("SELECT 1 FROM runs WHERE pipeline_name = ? AND unlisted = 0 LIMIT 1", (pipeline_name,))
        )

    def list_pipeline_names(self) -> list[str]:
        rows = self.query(
            "SELECT p.name FROM pipelines p WHERE EXISTS"
            " (SELECT 1 FROM runs r WHERE r.pipeline_name = p.name AND r.unlisted = 0) ORDER BY p.name"
        )
        return [row["name"] for row in rows]

    # -- step runs -------------------------------------------------------------------------
    @staticmethod
    def _insert_step(step: NewStepRun, status: ExecutionStatus, start: float | None, verb: str = "") -> Statement:
        return (INSERT_STEP_RUN.format(verb=verb), step_params(step, status, start))

    def record_step_started(self, step: NewStepRun, start: float) -> None:
        self.write([self._insert_step(step, ExecutionStatus.RUNNING, start)])

    def record_attempt(self, step_run_id: str, attempt: AttemptRecord) -> None:
        self.write(
            [
                attempt_statement(step_run_id, attempt),
                (
                    "UPDATE step_runs SET status = 'retrying', attempts = ? WHERE id = ?",
                    (attempt.attempt, step_run_id),
                ),
            ]
        )

    def record_retry_started(self, step_run_id: str, attempt: int) -> None:
        self.write([("UPDATE step_runs SET status = 'running', attempts = ? WHERE id = ?", (attempt, step_run_id))])

    def finish_step_run(self, step: NewStepRun, outcome: StepOutcome, batched: bool = False) -> None:
        statements: list[Statement] = [(INSERT_BLOB, (h, data)) for h, data in outcome.blobs]
        statements += [artifact_statement(a) for a in outcome.artifacts]
        if outcome.attempt is not None:
            statements.append(attempt_statement(step.id, outcome.attempt))
        statements += finish_step_statement(step, outcome)
        if batched:
            size = sum(len(data) for _, data in outcome.blobs) + len(outcome.logs) + row_bytes(statements[-1])
            key = outcome.cache_key if outcome.status is ExecutionStatus.COMPLETED else None
            if self._batch.add(step.run_id, statements, size, key, outcome.blobs):
                if self._batch.full:
                    self._batch.commit_pending()  # a failure fails this step (its record is in it)
                return
        self.write(statements)

    def record_cache_hit(
        self, step: NewStepRun, now: float, cache_key: str, cached: CachedStepRun, batched: bool = False
    ) -> None:
        statement = cache_hit_statement(step, now, cache_key, cached)
        if not (batched and self._batch.add(step.run_id, [statement], row_bytes(statement))):
            self.write([statement])
        elif self._batch.full:
            self._batch.commit_pending()

    def record_not_run(self, step: NewStepRun, status: ExecutionStatus, end: float, reason: str) -> None:
        kind = "Skipped" if status is ExecutionStatus.SKIPPED else "Stopped"
        self.write(
            [
                self._insert_step(step, status, None, "OR IGNORE"),
                (
                    "UPDATE step_runs SET status = ?, end = ?, error_type = ?, error_message = ? WHERE id = ?",
                    (str(status), end, kind, reason, step.id),
                ),
            ]
        )

    def append_step_log(self, step_run_id: str, text: str) -> None:
        self.write([("UPDATE step_runs SET logs = COALESCE(logs, '') || ? WHERE id = ?", (text, step_run_id))])

    def find_cached(self, cache_key: str, not_before: float | None) -> CachedStepRun | None:
        if cache_key in self._batch.cache_keys:  # a step of this key is queued: commit it first
            self._batch.commit_pending()
        return cached_step_run(self._read(FIND_CACHED, (cache_key, not_before or 0.0)))  # no commit of others' records

    def step_runs_of_run(self, run_id: str) -> list[StepRunRecord]:
        rows = self.query("SELECT * FROM step_runs WHERE run_id = ? ORDER BY seq, rowid", (run_id,))
        return [step_run_record(row) for row in rows]

    def invocation_ids_of_run(self, run_id: str) -> list[str]:
        rows = self.query("SELECT invocation_id FROM step_runs WHERE run_id = ? ORDER BY seq, rowid", (run_id,))
        return [row[0] for row in rows]

    def step_run_of_run(self, run_id: str, invocation_id: str) -> StepRunRecord | None:
        rows = self.query("SELECT * FROM step_runs WHERE run_id = ? AND invocation_id = ?", (run_id, invocation_id))
        return step_run_record(rows[0]) if rows else None

    def step_attempts(self, step_run_id: str) -> list[AttemptRecord]:
        rows = self.query("SELECT * FROM step_attempts WHERE step_run_id = ? ORDER BY attempt", (step_run_id,))
        return [
            AttemptRecord(
                r["attempt"], ExecutionStatus(r["status"]), r["start"], r["end"], r["error_type"], r["error_message"]
            )
            for r in rows
        ]

    def run_names_of_step_runs(self, step_run_ids: list[str]) -> dict[str, str]:
        found: dict[str, str] = {}
        for chunk in _chunks(list(step_run_ids)):
            marks = ",".join("?" * len(chunk))
            for row in self.query(
                f"SELECT s.id, r.name FROM step_runs s JOIN runs r ON r.id = s.run_id WHERE s.id IN ({marks})",
                chunk,
            ):
                found[row["id"]] = row["name"]
        return found

    # -- artifacts ---------------------------------------------------------------------------
    def record_artifacts(self, artifacts: list[NewArtifact]) -> None:
        self.write([artifact_statement(a) for a in artifacts])

    def artifacts_by_ids(self, ids: Iterable[str]) -> list[ArtifactRecord]:
        found: list[ArtifactRecord] = []
        for chunk in _chunks(list(ids)):
            marks = ",".join("?" * len(chunk))
            found += [
                artifact_record(r)
                for r in self.query(f"SELECT * FROM artifact_versions WHERE id IN ({marks})", chunk)
            ]
        return found

    def find_artifact(self, name_or_id: str, version: int | None = None) -> ArtifactRecord | None:
        if version is None:
            rows = self.query("SELECT * FROM artifact_versions WHERE id = ?", (name_or_id,))
            if not rows:
                rows = self.query(
                    "SELECT * FROM artifact_versions WHERE name = ? ORDER BY version DESC LIMIT 1", (name_or_id,)
                )
        else:
            rows = self.query(
                "SELECT * FROM artifact_versions WHERE name = ? AND version = ?", (name_or_id, int(version))
            )
        return artifact_record(rows[0]) if rows else None

    def list_artifacts(self, name: str | None = None) -> list[ArtifactRecord]:
        if name is None:
            rows = self.query("SELECT * FROM artifact_versions ORDER BY created")
        else:
            rows = self.query("SELECT * FROM artifact_versions WHERE name = ? ORDER BY version", (name,))
        return [artifact_record(r) for r in rows]

    # -- small artifacts (see artifacts.py) -------------------------------------------------
    def put_blob(self, content_hash: str, data: bytes) -> None:
        self.write([(INSERT_BLOB, (content_hash, data))])

    def get_blob(self, content_hash: str) -> bytes | None:
        queued = self._batch.blobs.get(content_hash)
        if queued is not None:
            return queued
        rows = self._read("SELECT data FROM blobs WHERE hash = ?", (content_hash,))
        return bytes(rows[0][0]) if rows else None

    def has_blob(self, content_hash: str) -> bool:
        if content_hash in self._batch.blobs:
            return True
        return bool(self._read("SELECT 1 FROM blobs WHERE hash = ?", (content_hash,)))

    def close(self) -> None:
        with self._lock:
            try:
                self._batch.commit_pending()
            finally:
                self._checkpoints.close()
            self._conn.close()


def _chunks(items: list[str], size: int = 500) -> Iterable[list[str]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]
