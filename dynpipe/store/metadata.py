"""SQLite metadata store: pipelines, runs, step runs, artifact versions.

One connection per process guarded by a lock (cheaper than a connection per
thread on the hot path); WAL mode plus ``BEGIN IMMEDIATE`` for every write so
that several processes can write at once without "database is locked".
"""

from __future__ import annotations

import json
import os
import socket
import sqlite3
import threading
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT);
CREATE TABLE IF NOT EXISTS pipelines (
    name TEXT PRIMARY KEY,
    created REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS runs (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    pipeline_name TEXT NOT NULL,
    status TEXT NOT NULL,
    start REAL NOT NULL,
    end REAL,
    owner_host TEXT,
    owner_pid INTEGER,
    owner_started TEXT,
    parent_run_id TEXT,
    unlisted INTEGER NOT NULL DEFAULT 0,
    config TEXT,
    error TEXT
);
CREATE INDEX IF NOT EXISTS runs_by_pipeline ON runs (pipeline_name, start);
CREATE TABLE IF NOT EXISTS step_runs (
    id TEXT PRIMARY KEY,
    run_id TEXT NOT NULL,
    invocation_id TEXT NOT NULL,
    step_name TEXT NOT NULL,
    seq INTEGER,
    status TEXT NOT NULL,
    start REAL,
    end REAL,
    attempts INTEGER NOT NULL DEFAULT 0,
    runtime TEXT,
    cache_key TEXT,
    cached_from TEXT,
    upstream TEXT,
    parameters TEXT,
    inputs TEXT,
    outputs TEXT,
    logs TEXT,
    error_type TEXT,
    error_message TEXT,
    traceback TEXT,
    UNIQUE (run_id, invocation_id)
);
CREATE INDEX IF NOT EXISTS step_runs_by_cache_key ON step_runs (cache_key, status);
CREATE TABLE IF NOT EXISTS step_attempts (
    step_run_id TEXT NOT NULL,
    attempt INTEGER NOT NULL,
    status TEXT NOT NULL,
    start REAL,
    end REAL,
    error_type TEXT,
    error_message TEXT,
    PRIMARY KEY (step_run_id, attempt)
);
CREATE TABLE IF NOT EXISTS artifact_versions (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    version INTEGER NOT NULL,
    uri TEXT NOT NULL,
    content_hash TEXT NOT NULL,
    data_type TEXT,
    materializer TEXT NOT NULL,
    producer_step_run_id TEXT,
    run_id TEXT,
    output_name TEXT,
    size INTEGER,
    created REAL NOT NULL,
    metadata TEXT,
    tags TEXT
);
CREATE INDEX IF NOT EXISTS artifacts_by_name ON artifact_versions (name, version);
CREATE TABLE IF NOT EXISTS blobs (hash TEXT PRIMARY KEY, data BLOB NOT NULL);
"""


def _process_start_marker(pid: int) -> str | None:
    """Start time of a process (Linux /proc), so a reused pid is not mistaken for the owner."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            data = fh.read()
        # Field 22 counted after the parenthesised command name.
        fields = data[data.rindex(b")") + 2 :].split()
        return fields[19].decode()
    except (OSError, ValueError, IndexError):
        return None


def process_is_alive(host: str | None, pid: int | None, started: str | None) -> bool:
    """True unless we can prove the process that owns a run is gone."""
    if host != socket.gethostname() or pid is None:
        return True  # cannot check another machine; trust the record
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    if started is not None:
        current = _process_start_marker(pid)
        if current is not None and current != started:
            return False
    return True


class MetadataStore:
    """Thread-safe access to the SQLite metadata database of one store root."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.RLock()
        self._pid = os.getpid()
        self._conn = self._connect()

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(
            str(self.path), timeout=60.0, isolation_level=None, check_same_thread=False
        )
        conn.execute("PRAGMA busy_timeout = 60000")
        self._retry(lambda: conn.execute("PRAGMA journal_mode = WAL"))  # bypasses busy_timeout
        conn.execute("PRAGMA synchronous = NORMAL")
        conn.execute("PRAGMA foreign_keys = OFF")
        self._retry(lambda: conn.executescript(_SCHEMA))
        return conn

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
        # A forked child must not reuse the parent's connection.
        if os.getpid() != self._pid:
            self._pid = os.getpid()
            self._lock = threading.RLock()
            self._conn = self._connect()
        return self._conn

    # -- writes -----------------------------------------------------------------
    def write(self, statements: Sequence[tuple[str, Sequence[Any]]]) -> None:
        """Run statements in one immediate transaction (atomic, never a lost update)."""
        with self._lock:
            conn = self._conn_for_process()

            def _tx() -> None:
                conn.execute("BEGIN IMMEDIATE")
                try:
                    for sql, params in statements:
                        conn.execute(sql, params)
                except BaseException:
                    conn.execute("ROLLBACK")
                    raise
                conn.execute("COMMIT")

            self._retry(_tx)

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[sqlite3.Row]:
        with self._lock:
            conn = self._conn_for_process()
            cur = conn.execute(sql, params)
            cur.row_factory = sqlite3.Row
            return cur.fetchall()

    # -- runs -------------------------------------------------------------------
    def create_run(
        self,
        run_id: str,
        name: str,
        pipeline_name: str,
        config: dict[str, Any],
        parent_run_id: str | None = None,
        unlisted: bool = False,
    ) -> None:
        pid = os.getpid()
        now = time.time()
        self.write(
            [
                (
                    "INSERT OR IGNORE INTO pipelines (name, created) VALUES (?, ?)",
                    (pipeline_name, now),
                ),
                (
                    "INSERT INTO runs (id, name, pipeline_name, status, start, owner_host, owner_pid,"
                    " owner_started, parent_run_id, unlisted, config) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                    (
                        run_id,
                        name,
                        pipeline_name,
                        "running",
                        now,
                        socket.gethostname(),
                        pid,
                        _process_start_marker(pid),
                        parent_run_id,
                        int(unlisted),
                        json.dumps(config, default=str),
                    ),
                ),
            ]
        )

    def run_name_exists(self, name: str) -> bool:
        return bool(self.query("SELECT 1 FROM runs WHERE name = ?", (name,)))

    def finish_run(self, run_id: str, status: str, error: str | None = None) -> None:
        self.write(
            [
                (
                    "UPDATE runs SET status = ?, end = ?, error = ? WHERE id = ?",
                    (status, time.time(), error, run_id),
                ),
                # Anything still open in this run can no longer finish.
                (
                    "UPDATE step_runs SET status = 'stopped', end = ? WHERE run_id = ?"
                    " AND status IN ('initializing', 'running', 'retrying')",
                    (time.time(), run_id),
                ),
            ]
        )

    def reap_dead_runs(self, rows: Iterable[sqlite3.Row]) -> set[str]:
        """Mark runs whose owner process is gone as failed; return their ids."""
        dead: set[str] = set()
        for row in rows:
            if row["status"] in ("running", "initializing") and not process_is_alive(
                row["owner_host"], row["owner_pid"], row["owner_started"]
            ):
                dead.add(row["id"])
        for run_id in dead:
            now = time.time()
            self.write(
                [
                    (
                        "UPDATE runs SET status = 'failed', end = COALESCE(end, ?),"
                        " error = 'the process running this pipeline exited before the run finished'"
                        " WHERE id = ? AND status IN ('running', 'initializing')",
                        (now, run_id),
                    ),
                    (
                        "UPDATE step_runs SET status = 'failed', end = COALESCE(end, ?),"
                        " error_type = 'ProcessDied', error_message = 'the orchestrating process exited'"
                        " WHERE run_id = ? AND status IN ('initializing', 'running', 'retrying')",
                        (now, run_id),
                    ),
                ]
            )
        return dead

    # -- step runs ----------------------------------------------------------------
    @staticmethod
    def insert_step_run_sql(
        step_run_id: str,
        run_id: str,
        invocation_id: str,
        step_name: str,
        seq: int,
        status: str,
        start: float | None,
        runtime: str,
        upstream: list[str],
        parameters: str,
        inputs: str,
    ) -> tuple[str, tuple[Any, ...]]:
        return (
            "INSERT INTO step_runs (id, run_id, invocation_id, step_name, seq, status, start, runtime,"
            " upstream, parameters, inputs) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
            (
                step_run_id,
                run_id,
                invocation_id,
                step_name,
                seq,
                status,
                start,
                runtime,
                json.dumps(upstream),
                parameters,
                inputs,
            ),
        )

    @staticmethod
    def insert_artifact_sql(
        artifact_id: str,
        name: str,
        uri: str,
        content_hash: str,
        data_type: str,
        materializer: str,
        producer_step_run_id: str | None,
        run_id: str | None,
        output_name: str | None,
        size: int,
        metadata: dict[str, Any] | None = None,
        tags: list[str] | None = None,
    ) -> tuple[str, tuple[Any, ...]]:
        return (
            "INSERT INTO artifact_versions (id, name, version, uri, content_hash, data_type,"
            " materializer, producer_step_run_id, run_id, output_name, size, created, metadata, tags)"
            " SELECT ?, ?, COALESCE(MAX(version), 0) + 1, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?"
            " FROM artifact_versions WHERE name = ?",
            (
                artifact_id,
                name,
                uri,
                content_hash,
                data_type,
                materializer,
                producer_step_run_id,
                run_id,
                output_name,
                size,
                time.time(),
                json.dumps(metadata) if metadata else None,
                json.dumps(tags) if tags else None,
                name,
            ),
        )

    # -- small artifacts (see artifacts.py) -------------------------------------------
    def put_blob(self, content_hash: str, data: bytes) -> None:
        self.write([("INSERT OR IGNORE INTO blobs (hash, data) VALUES (?, ?)", (content_hash, data))])

    def get_blob(self, content_hash: str) -> bytes | None:
        rows = self.query("SELECT data FROM blobs WHERE hash = ?", (content_hash,))
        return bytes(rows[0][0]) if rows else None

    def has_blob(self, content_hash: str) -> bool:
        return bool(self.query("SELECT 1 FROM blobs WHERE hash = ?", (content_hash,)))

    def find_cached(self, cache_key: str, not_before: float | None) -> sqlite3.Row | None:
        rows = self.query(
            "SELECT id, outputs, end FROM step_runs WHERE cache_key = ? AND status = 'completed'"
            " AND end >= ? ORDER BY end DESC LIMIT 1",
            (cache_key, not_before or 0.0),
        )
        return rows[0] if rows else None

    def close(self) -> None:
        with self._lock:
            self._conn.close()
