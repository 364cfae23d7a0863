"""The SQL text of the SQLite store's per-step writes, and the parameters they take.

Constant text on purpose: ``sqlite3`` reuses a prepared statement per distinct SQL text,
so the hot path never parses SQL again.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from json.encoder import encode_basestring_ascii
from math import isfinite
from typing import Any

from ..status import ExecutionStatus
from .records import AttemptRecord, CachedStepRun, NewArtifact, NewStepRun, StepOutcome

Params = Sequence[Any] | Mapping[str, Any]
Statement = tuple[str, Params]

INSERT_BLOB = "INSERT OR IGNORE INTO blobs (hash, data) VALUES (?, ?)"
INSERT_STEP_RUN = (
    "INSERT {verb} INTO step_runs (id, run_id, invocation_id, step_name, seq, status, start, runtime,"
    " upstream, parameters, inputs) VALUES (:id, :run_id, :invocation_id, :step_name, :seq, :status,"
    " :start, :runtime, :upstream, :parameters, :inputs)"
)
#: a step that ended before its start was written (engine/starts.py): its whole row at once
INSERT_FINISHED_STEP_RUN = (
    "INSERT INTO step_runs (id, run_id, invocation_id, step_name, seq, status, start, end, attempts,"
    " runtime, cache_key, upstream, parameters, inputs, outputs, logs, error_type, error_message, traceback)"
    " VALUES (:id, :run_id, :invocation_id, :step_name, :seq, :status, :start, :end, :attempts, :runtime,"
    " :cache_key, :upstream, :parameters, :inputs, :outputs, :logs, :error_type, :error_message, :traceback)"
)
INSERT_CACHED_STEP_RUN = (
    "INSERT INTO step_runs (id, run_id, invocation_id, step_name, seq, status, start, end, runtime, cache_key,"
    " cached_from, upstream, parameters, inputs, outputs) VALUES (:id, :run_id, :invocation_id, :step_name,"
    " :seq, :status, :start, :start, :runtime, :cache_key, :cached_from, :upstream, :parameters, :inputs, :outputs)"
)
FINISH_STEP_RUN = (
    "UPDATE step_runs SET status = :status, end = :end, attempts = :attempts,"
    " cache_key = COALESCE(:cache_key, cache_key), outputs = :outputs, logs = :logs,"
    " error_type = :error_type, error_message = :error_message, traceback = :traceback"
    " WHERE id = :id"
)
INSERT_ARTIFACT = (
    "INSERT INTO artifact_versions (id, name, version, uri, content_hash, data_type, materializer,"
    " producer_step_run_id, run_id, output_name, size, created, metadata, tags)"
    " SELECT :id, :name, COALESCE(MAX(version), 0) + 1, :uri, :content_hash, :data_type, :materializer,"
    " :producer_step_run_id, :run_id, :output_name, :size, :created, :metadata, :tags"
    " FROM artifact_versions WHERE name = :name"
)
#: a cache hit's step run and its outputs' artifact rows in one read (a row per output)
FIND_CACHED = (
    "SELECT s.id AS cached_id, s.outputs AS cached_outputs, s.end AS cached_end, a.*"
    " FROM (SELECT id, outputs, end FROM step_runs WHERE cache_key = ? AND status = 'completed'"
    " AND end >= ? ORDER BY end DESC LIMIT 1) AS s"
    " LEFT JOIN json_each(COALESCE(s.outputs, '{}')) AS j"
    " LEFT JOIN artifact_versions AS a ON a.id = j.value"
)
INSERT_ATTEMPT = (
    "INSERT INTO step_attempts (step_run_id, attempt, status, start, end, error_type, error_message)"
    " VALUES (:step_run_id, :attempt, :status, :start, :end, :error_type, :error_message)"
)


#: Each status's stored text: ``str(status)`` goes through ``Enum.value`` (two Python calls).
_TEXT = {status: status.value for status in ExecutionStatus}


def plain_json(value: Mapping[str, Any]) -> str:
    """``json.dumps(value)``: written here for a dict of str keys to strs, ints, bools, None and
    finite floats (most steps' parameters and outputs), which skips json's encoder setup (about
    100 bytecodes a call, three calls a step); anything else goes to ``json.dumps``. The text is
    the same: tests/test_sqlite_statements.py compares them."""
    parts = []
    for key, item in value.items():
        kind = type(item)
        if kind is str:
            text = encode_basestring_ascii(item)
        elif kind is int:
            text = int.__repr__(item)
        elif kind is bool:
            text = "true" if item else "false"
        elif item is None:
            text = "null"
        elif kind is float and isfinite(item):
            text = float.__repr__(item)
        else:
            return json.dumps(value)
        if type(key) is not str:
            return json.dumps(value)
        parts.append(f"{encode_basestring_ascii(key)}: {text}")
    return "{" + ", ".join(parts) + "}"


def _dumps(value: Any, empty: str) -> str:
    return json.dumps(value) if value else empty  # most steps: no upstream


def step_params(step: NewStepRun, status: ExecutionStatus, start: float | None) -> dict[str, Any]:
    return {
        "id": step.id, "run_id": step.run_id, "invocation_id": step.invocation_id,
        "step_name": step.step_name, "seq": step.seq, "status": _TEXT[status], "start": start,
        "runtime": step.runtime, "upstream": _dumps(step.upstream, "[]"),
        "parameters": plain_json(step.parameters) if step.parameters else "{}",
        "inputs": plain_json(step.inputs) if step.inputs else "{}",
    }


def outcome_params(step_run_id: str, outcome: StepOutcome) -> dict[str, Any]:
    return {
        "status": _TEXT[outcome.status], "end": outcome.end, "attempts": outcome.attempts,
        "cache_key": outcome.cache_key,
        "outputs": plain_json(outcome.outputs) if outcome.outputs else None,
        "logs": outcome.logs, "error_type": outcome.error_type,
        "error_message": outcome.error_message, "traceback": outcome.traceback, "id": step_run_id,
    }


def finish_step_statement(step: NewStepRun, outcome: StepOutcome) -> list[Statement]:
    """The row's final write: one INSERT if its start was not written yet, else an UPDATE."""
    if outcome.start is not None:  # most steps (engine/starts.py): one dict, not two merged
        return [(INSERT_FINISHED_STEP_RUN, {
            "id": step.id, "run_id": step.run_id, "invocation_id": step.invocation_id,
            "step_name": step.step_name, "seq": step.seq, "status": _TEXT[outcome.status],
            "start": outcome.start, "end": outcome.end, "attempts": outcome.attempts,
            "runtime": step.runtime, "cache_key": outcome.cache_key, "upstream": _dumps(step.upstream, "[]"),
            "parameters": plain_json(step.parameters) if step.parameters else "{}",
            "inputs": plain_json(step.inputs) if step.inputs else "{}",
            "outputs": plain_json(outcome.outputs) if outcome.outputs else None,
            "logs": outcome.logs, "error_type": outcome.error_type, "error_message": outcome.error_message,
            "traceback": outcome.traceback,
        })]
    update = (FINISH_STEP_RUN, outcome_params(step.id, outcome))
    if outcome.status is ExecutionStatus.COMPLETED:
        return [update]
    # A step can fail or stop before its start was recorded (bad input, interrupt).
    return [(INSERT_STEP_RUN.format(verb="OR IGNORE"), step_params(step, outcome.status, outcome.end)), update]


def cache_hit_statement(step: NewStepRun, now: float, cache_key: str, cached: CachedStepRun) -> Statement:
    """A cache hit's whole row in one INSERT (it starts and ends at ``now``)."""
    params = step_params(step, ExecutionStatus.CACHED, now)
    params["cache_key"], params["cached_from"] = cache_key, cached.id
    params["outputs"] = cached.outputs_text or plain_json(cached.outputs)
    return (INSERT_CACHED_STEP_RUN, params)


def attempt_statement(step_run_id: str, attempt: AttemptRecord) -> Statement:
    return (
        INSERT_ATTEMPT,
        {
            "step_run_id": step_run_id, "attempt": attempt.attempt, "status": _TEXT[attempt.status],
            "start": attempt.start, "end": attempt.end, "error_type": attempt.error_type,
            "error_message": attempt.error_message,
        },
    )


def artifact_statement(a: NewArtifact) -> Statement:
    return (INSERT_ARTIFACT, a.row())


def row_bytes(statement: Statement) -> int:
    """Roughly what a step row weighs: its parameters, inputs and outputs as JSON."""
    row = statement[1]
    assert isinstance(row, dict)
    return len(row.get("parameters") or "") + len(row.get("inputs") or "") + len(row.get("outputs") or "")
