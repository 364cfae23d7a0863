"""The SQLite schema of the metadata database (version 1)."""

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
