"""Plain records that cross the metadata interface, in both directions.

A backend (SQLite or PostgreSQL) takes and returns only these: no driver types,
JSON columns already decoded, statuses as ``ExecutionStatus``.

The records a step writes or a cache hit reads (several per step) are not frozen: a frozen
dataclass sets each field through ``object.__setattr__``, which made building them about a
tenth of a step's Python. Nothing changes a record once built (by convention) and none is
hashed. Most are ``slots=True``; write-only records also skip the generated ``__eq__``
(nothing compares them): one method less to compile per class at import.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any

from ..status import ExecutionStatus


@dataclass(frozen=True)
class RunRecord:
    """One row of the runs table."""

    id: str
    name: str
    pipeline_name: str
    status: ExecutionStatus
    start: float
    end: float | None
    owner_host: str | None
    owner_pid: int | None
    owner_started: str | None
    parent_run_id: str | None
    unlisted: bool
    config: dict[str, Any]
    error: str | None
    #: Last sign of life of the orchestrating process (epoch seconds; the backend's clock).
    heartbeat: float | None = None


@dataclass(frozen=True)
class RunFilter:
    """Which runs ``list_runs`` returns; ``None`` fields do not filter."""

    id_or_name: str | None = None
    id_prefix: str | None = None
    pipeline_name: str | None = None
    name: str | None = None
    name_contains: str | None = None
    parent_run_id: str | None = None
    include_unlisted: bool = True
    ascending: bool = False
    limit: int | None = None


@dataclass(slots=True, eq=False)
class NewStepRun:
    """What is known of a step run when it is first recorded."""

    id: str
    run_id: str
    invocation_id: str
    step_name: str
    seq: int
    runtime: str
    upstream: list[str]
    parameters: dict[str, Any]
    inputs: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class StepRunRecord:
    """One row of the step_runs table, JSON decoded."""

    id: str
    run_id: str
    invocation_id: str
    step_name: str
    seq: int | None
    status: ExecutionStatus
    start: float | None
    end: float | None
    attempts: int
    runtime: str | None
    cache_key: str | None
    cached_from: str | None
    upstream: list[str]
    parameters: dict[str, Any]
    inputs: dict[str, Any]
    outputs: dict[str, str]
    logs: str
    error_type: str | None
    error_message: str | None
    traceback: str | None


@dataclass(slots=True)
class AttemptRecord:
    """One finished attempt of a step run."""

    attempt: int
    status: ExecutionStatus
    start: float | None
    end: float | None
    error_type: str | None = None
    error_message: str | None = None


@dataclass(slots=True, eq=False)
class NewArtifact:
    """An artifact version to record; its version number is assigned by the store."""

    id: str
    name: str
    uri: str
    content_hash: str
    data_type: str
    materializer: str
    producer_step_run_id: str | None
    run_id: str | None
    output_name: str | None
    size: int
    metadata: dict[str, Any] | None = None
    tags: list[str] | None = None

    def row(self) -> dict[str, Any]:
        """The values of its ``artifact_versions`` row (both backends), JSON columns encoded."""
        return {
            "id": self.id, "name": self.name, "uri": self.uri, "content_hash": self.content_hash,
            "data_type": self.data_type, "materializer": self.materializer,
            "producer_step_run_id": self.producer_step_run_id, "run_id": self.run_id,
            "output_name": self.output_name, "size": self.size, "created": time.time(),
            "metadata": json.dumps(self.metadata) if self.metadata else None,
            "tags": json.dumps(self.tags) if self.tags else None,
        }


@dataclass
class ArtifactRecord:
    """One row of the artifact_versions table, JSON decoded.

    Not slots: a cache hit passes its ``__dict__`` on as an ``ArtifactVersion``'s fields."""

    id: str
    name: str
    version: int
    uri: str
    content_hash: str
    data_type: str | None
    materializer: str
    producer_step_run_id: str | None
    run_id: str | None
    output_name: str | None
    size: int | None
    created: float
    metadata: dict[str, Any]
    tags: list[str]


@dataclass(slots=True, eq=False)
class StepOutcome:
    """How a step run ended: everything ``finish_step_run`` writes in one transaction."""

    status: ExecutionStatus
    end: float
    attempts: int
    logs: str = ""
    cache_key: str | None = None
    outputs: dict[str, str] = field(default_factory=dict)
    artifacts: list[NewArtifact] = field(default_factory=list)
    attempt: AttemptRecord | None = None
    error_type: str | None = None
    error_message: str | None = None
    traceback: str | None = None
    #: (content hash, bytes) of small outputs kept in the database, written in the same transaction
    blobs: list[tuple[str, bytes]] = field(default_factory=list)
    #: the step's start when it was not written yet (engine/starts.py): the row is inserted whole
    start: float | None = None


@dataclass(slots=True)
class CachedStepRun:
    """A completed step run whose outputs a cache hit may reuse."""

    id: str
    outputs: dict[str, str]
    end: float
    #: its outputs' artifact rows when the lookup read them too (SQLite: one query), else None
    artifacts: tuple[ArtifactRecord, ...] | None = None
    #: ``outputs`` as the store has it (JSON text) when the lookup read it: a hit's row copies it
    outputs_text: str | None = None
