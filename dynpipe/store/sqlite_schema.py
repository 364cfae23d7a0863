"""The SQLite schema of the metadata database, its version and the migrations to it.

``schema_version`` holds one row. A database made before versioning existed (no such
table, but a ``runs`` table) is version 1. Migrations run in order inside one
``BEGIN IMMEDIATE`` transaction, so concurrent openers migrate it once.
"""

from __future__ import annotations

from .run_summaries import RUN_INDEX, STEP_INDEX

SCHEMA_VERSION = 3

#: Statements that take a database at version ``n`` to ``n + 1``.
MIGRATIONS: dict[int, tuple[str, ...]] = {
    1: ("ALTER TABLE runs ADD COLUMN heartbeat REAL",),
    # The indexes of the runs list's pages (run_summaries.py): SCHEMA_STATEMENTS, which run
    # after the migrations, create them (a version 1 database may have no step_runs table yet).
    2: (),
}

_SCHEMA = """
CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL);
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
    error TEXT,
    heartbeat REAL
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

#: The statements of the current schema, one by one (``executescript`` would commit early).
SCHEMA_STATEMENTS: tuple[str, ...] = (
    *(s.strip() for s in _SCHEMA.split(";") if s.strip()),
    RUN_INDEX,
    STEP_INDEX,
)
