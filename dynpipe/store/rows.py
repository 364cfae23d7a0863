"""Rows of either backend turned into plain records (JSON columns decoded, statuses typed).

Both backends store the same columns, so one set of converters serves SQLite rows and
PostgreSQL dict rows alike.
"""

from __future__ import annotations

import json
from typing import Any, Protocol

from ..status import ExecutionStatus
from .records import ArtifactRecord, CachedStepRun, RunRecord, StepRunRecord


class Row(Protocol):
    """A row by column name: ``sqlite3.Row`` or a psycopg dict row."""

    def __getitem__(self, key: str, /) -> Any: ...


def json_column(value: Any) -> Any:
    return json.loads(value) if value else None


def run_record(row: Row) -> RunRecord:
    return RunRecord(
        id=row["id"], name=row["name"], pipeline_name=row["pipeline_name"],
        status=ExecutionStatus(row["status"]), start=row["start"], end=row["end"],
        owner_host=row["owner_host"], owner_pid=row["owner_pid"], owner_started=row["owner_started"],
        parent_run_id=row["parent_run_id"], unlisted=bool(row["unlisted"]),
        config=json_column(row["config"]) or {}, error=row["error"],
        heartbeat=row["heartbeat"],
    )


def step_run_record(row: Row) -> StepRunRecord:
    return StepRunRecord(
        id=row["id"], run_id=row["run_id"], invocation_id=row["invocation_id"], step_name=row["step_name"],
        seq=row["seq"], status=ExecutionStatus(row["status"]), start=row["start"], end=row["end"],
        attempts=row["attempts"], runtime=row["runtime"], cache_key=row["cache_key"],
        cached_from=row["cached_from"], upstream=json_column(row["upstream"]) or [],
        parameters=json_column(row["parameters"]) or {}, inputs=json_column(row["inputs"]) or {},
        outputs=json_column(row["outputs"]) or {}, logs=row["logs"] or "", error_type=row["error_type"],
        error_message=row["error_message"], traceback=row["traceback"],
    )


def artifact_record(row: Row) -> ArtifactRecord:
    return ArtifactRecord(
        id=row["id"], name=row["name"], version=row["version"], uri=row["uri"],
        content_hash=row["content_hash"], data_type=row["data_type"], materializer=row["materializer"],
        producer_step_run_id=row["producer_step_run_id"], run_id=row["run_id"],
        output_name=row["output_name"], size=row["size"], created=row["created"],
        # most artifacts have neither metadata nor tags (NULL): no JSON to decode
        metadata=json.loads(meta) or {} if (meta := row["metadata"]) else {},
        tags=json.loads(tags) or [] if (tags := row["tags"]) else [],
    )


def cached_step_run(rows: list[Any]) -> CachedStepRun | None:
    """A cache lookup's answer from its rows: the step run, joined with its outputs' artifact rows."""
    if not rows:
        return None
    first = rows[0]
    return CachedStepRun(
        first["cached_id"], json_column(first["cached_outputs"]) or {}, first["cached_end"],
        tuple(artifact_record(r) for r in rows if r["id"] is not None), first["cached_outputs"],
    )
