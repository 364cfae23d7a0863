"""The PostgreSQL schema of the metadata database, its version and the migrations to it.

The same tables and columns as the SQLite schema (``sqlite_schema.py``), so one set of row
converters serves both; ``"end"`` is quoted (a reserved word here) and ``row_no`` stands in
for SQLite's ``rowid`` as the insertion-order tie-breaker. From version 3 on it also holds
the schedule tables, which on SQLite ``schedule_db.py`` keeps (unversioned) beside them, so
its version numbers run ahead of the SQLite schema's.
"""

from __future__ import annotations

from .run_summaries import RUN_INDEX, STEP_INDEX

SCHEMA_VERSION = 4

#: The schedules and their fires (``schedules.py``): one row per claimed due time, whose
#: primary key is the lease that keeps two schedulers from firing one tick twice.
SCHEDULE_STATEMENTS: tuple[str, ...] = (
    """CREATE TABLE IF NOT EXISTS schedules (
        name TEXT PRIMARY KEY,
        module TEXT NOT NULL,
        pipeline TEXT NOT NULL,
        cron TEXT NOT NULL,
        timezone TEXT NOT NULL,
        params TEXT NOT NULL,
        overlap TEXT NOT NULL,
        catchup TEXT NOT NULL,
        state TEXT NOT NULL,
        created DOUBLE PRECISION NOT NULL,
        resumed DOUBLE PRECISION NOT NULL,
        target TEXT NOT NULL DEFAULT 'local',
        placement TEXT
    )""",
    """CREATE TABLE IF NOT EXISTS schedule_fires (
        schedule TEXT NOT NULL,
        fire_time DOUBLE PRECISION NOT NULL,
        kind TEXT NOT NULL,
        run_name TEXT,
        outcome TEXT NOT NULL,
        owner TEXT,
        pid INTEGER,
        started DOUBLE PRECISION,
        ended DOUBLE PRECISION,
        detail TEXT,
        PRIMARY KEY (schedule, fire_time)
    )""",
    "CREATE INDEX IF NOT EXISTS schedule_fires_by_outcome ON schedule_fires (schedule, outcome)",
)

#: Statements that take a database at version ``n`` to ``n + 1`` (version 1 never existed
#: on PostgreSQL; versions 1 and 2 are the SQLite schema's).
MIGRATIONS: dict[int, tuple[str, ...]] = {
    1: ("ALTER TABLE runs ADD COLUMN IF NOT EXISTS heartbeat DOUBLE PRECISION",),
    2: SCHEDULE_STATEMENTS,
    3: (RUN_INDEX, STEP_INDEX),  # pages of the runs list (run_summaries.py)
}

#: A constant key of ``pg_advisory_xact_lock``: one opener creates or migrates the schema.
SCHEMA_LOCK = 0x64796E70

SCHEMA_STATEMENTS: tuple[str, ...] = (
    "CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)",
    "CREATE TABLE IF NOT EXISTS pipelines (name TEXT PRIMARY KEY, created DOUBLE PRECISION NOT NULL)",
    """CREATE TABLE IF NOT EXISTS runs (
        row_no BIGSERIAL,
        id TEXT PRIMARY KEY,
        name TEXT NOT NULL UNIQUE,
        pipeline_name TEXT NOT NULL,
        status TEXT NOT NULL,
        start DOUBLE PRECISION NOT NULL,
        "end" DOUBLE PRECISION,
        owner_host TEXT,
        owner_pid INTEGER,
        owner_started TEXT,
        parent_run_id TEXT,
        unlisted INTEGER NOT NULL DEFAULT 0,
        config TEXT,
        error TEXT,
        heartbeat DOUBLE PRECISION
    )""",
    "CREATE INDEX IF NOT EXISTS runs_by_pipeline ON runs (pipeline_name, start)",
    """CREATE TABLE IF NOT EXISTS step_runs (
        row_no BIGSERIAL,
        id TEXT PRIMARY KEY,
        run_id TEXT NOT NULL,
        invocation_id TEXT NOT NULL,
        step_name TEXT NOT NULL,
        seq INTEGER,
        status TEXT NOT NULL,
        start DOUBLE PRECISION,
        "end" DOUBLE PRECISION,
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
    )""",
    "CREATE INDEX IF NOT EXISTS step_runs_by_run ON step_runs (run_id, seq)",
    "CREATE INDEX IF NOT EXISTS step_runs_by_cache_key ON step_runs (cache_key, status)",
    """CREATE TABLE IF NOT EXISTS step_attempts (
        step_run_id TEXT NOT NULL,
        attempt INTEGER NOT NULL,
        status TEXT NOT NULL,
        start DOUBLE PRECISION,
        "end" DOUBLE PRECISION,
        error_type TEXT,
        error_message TEXT,
        PRIMARY KEY (step_run_id, attempt)
    )""",
    """CREATE TABLE IF NOT EXISTS artifact_versions (
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
        size BIGINT,
        created DOUBLE PRECISION NOT NULL,
        metadata TEXT,
        tags TEXT,
        UNIQUE (name, version)
    )""",
    "CREATE TABLE IF NOT EXISTS blobs (hash TEXT PRIMARY KEY, data BYTEA NOT NULL)",
    *SCHEDULE_STATEMENTS,
    RUN_INDEX,
    STEP_INDEX,
)
