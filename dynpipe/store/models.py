"""Read-side views of stored records: pipeline runs, step runs, artifact versions."""

from __future__ import annotations

from ..errors import ArtifactLoadError  # noqa: F401 - re-exported for existing imports
from ..status import FINISHED as _FINISHED, ExecutionStatus  # noqa: F401 - re-exported

import json
from dataclasses import dataclass, field
from datetime import datetime
from enum import Enum
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import sqlite3

    from .store import Store


def to_datetime(value: float | None) -> datetime | None:
    return datetime.fromtimestamp(value) if value is not None else None


class ArtifactVersion:
    """A stored, versioned step output; ``load()`` reads it back."""

    __slots__ = (
        "id", "name", "version", "uri", "content_hash", "data_type", "materializer",
        "producer_step_run_id", "run_id", "output_name", "size", "created", "metadata", "tags",
        "_store",
    )

    def __init__(self, store: Store, **fields: Any) -> None:
        self._store = store
        for key in _ARTIFACT_FIELDS:
            setattr(self, key, fields.get(key))

    @classmethod
    def from_row(cls, store: Store, row: sqlite3.Row) -> ArtifactVersion:
        data = dict(row)
        data["metadata"] = json.loads(data["metadata"]) if data.get("metadata") else {}
        data["tags"] = json.loads(data["tags"]) if data.get("tags") else []
        return cls(store, **data)

    def load(self) -> Any:
        try:
            return self._store.load_value(self.uri, self.materializer, self.data_type, self.size)
        except (ImportError, AttributeError) as exc:
            raise ArtifactLoadError(
                f"artifact {self.name!r} (version {self.version}, type {self.data_type},"
                f" materializer {self.materializer!r}) cannot be loaded in this process: {exc}."
                " Its type must be importable here (define it in a module, not a script)."
            ) from exc

    @property
    def type_name(self) -> str:
        return self.data_type.rsplit(".", 1)[-1] if self.data_type else "?"

    def __repr__(self) -> str:
        return (
            f"ArtifactVersion(name={self.name!r}, version={self.version}, type={self.type_name},"
            f" materializer={self.materializer!r})"
        )


class OutputVersions(list):  # type: ignore[type-arg]
    """``step_run.outputs[name]``: a list of artifact versions, as in ZenML (one here).

    Attribute access reaches the artifact itself, so ``outputs["x"].load()`` and ZenML's
    ``outputs["x"][0].load()`` both work.
    """

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__") or not self:
            raise AttributeError(name)
        return getattr(self[0], name)


@dataclass(frozen=True)
class StepRunConfig:
    """What a step run was configured with (ZenML's ``step_run.config``)."""

    name: str
    parameters: dict[str, Any]
    runtime: str | None


@dataclass(frozen=True)
class StepAttempt:
    """One attempt of a step run (a retried step has several, oldest first)."""

    attempt: int
    status: str
    start_time: datetime | None
    end_time: datetime | None
    error_type: str | None
    error_message: str | None



@dataclass
class StepRun:
    """One invocation of a step inside a run."""

    id: str
    run_id: str
    invocation_id: str
    step_name: str
    status: ExecutionStatus
    start_time: datetime | None
    end_time: datetime | None
    attempts: int
    runtime: str | None
    cache_key: str | None
    cached_from: str | None
    upstream: list[str]
    parameters: dict[str, Any]
    inputs: dict[str, Any]
    outputs: dict[str, OutputVersions]
    logs: str
    error_type: str | None
    error_message: str | None
    traceback: str | None

    @property
    def name(self) -> str:
        return self.invocation_id

    @property
    def output(self) -> ArtifactVersion:
        if len(self.outputs) != 1:
            raise ValueError(
                f"step run {self.invocation_id!r} has {len(self.outputs)} outputs"
                f" ({', '.join(self.outputs) or 'none'}); use .outputs[name]"
            )
        return next(iter(self.outputs.values()))[0]

    @property
    def config(self) -> StepRunConfig:
        return StepRunConfig(name=self.step_name, parameters=self.parameters, runtime=self.runtime)

    @property
    def duration(self) -> float | None:
        if self.start_time and self.end_time:
            return (self.end_time - self.start_time).total_seconds()
        return None

    @property
    def error(self) -> str | None:
        return f"{self.error_type}: {self.error_message}" if self.error_type else None


@dataclass
class PipelineRun:
    """A run of a pipeline, with its step runs keyed by invocation id."""

    id: str
    name: str
    pipeline_name: str
    status: ExecutionStatus
    start_time: datetime
    end_time: datetime | None
    parent_run_id: str | None
    config: dict[str, Any]
    error: str | None
    _store: Store = field(repr=False)
    _steps: dict[str, StepRun] | None = field(default=None, repr=False)

    @property
    def steps(self) -> dict[str, StepRun]:
        if self._steps is None:
            self._steps = load_step_runs(self._store, self.id)
        return self._steps

    @property
    def duration(self) -> float | None:
        return (self.end_time - self.start_time).total_seconds() if self.end_time else None

    def refresh(self) -> PipelineRun:
        from .client import Client

        return Client(self._store.root).get_pipeline_run(self.id)


_ARTIFACT_FIELDS = ArtifactVersion.__slots__[:-1]


def run_from_row(store: Store, row: sqlite3.Row) -> PipelineRun:
    return PipelineRun(
        id=row["id"],
        name=row["name"],
        pipeline_name=row["pipeline_name"],
        status=ExecutionStatus(row["status"]),
        start_time=to_datetime(row["start"]),  # type: ignore[arg-type]
        end_time=to_datetime(row["end"]),
        parent_run_id=row["parent_run_id"],
        config=json.loads(row["config"]) if row["config"] else {},
        error=row["error"],
        _store=store,
    )


def load_step_runs(store: Store, run_id: str) -> dict[str, StepRun]:
    rows = store.metadata.query(
        "SELECT * FROM step_runs WHERE run_id = ? ORDER BY seq, rowid", (run_id,)
    )
    wanted: set[str] = set()
    parsed: list[tuple[Any, dict[str, str]]] = []
    for row in rows:
        outs = json.loads(row["outputs"]) if row["outputs"] else {}
        wanted.update(outs.values())
        parsed.append((row, outs))
    artifacts = load_artifacts(store, wanted)
    result: dict[str, StepRun] = {}
    for row, outs in parsed:
        result[row["invocation_id"]] = StepRun(
            id=row["id"],
            run_id=row["run_id"],
            invocation_id=row["invocation_id"],
            step_name=row["step_name"],
            status=ExecutionStatus(row["status"]),
            start_time=to_datetime(row["start"]),
            end_time=to_datetime(row["end"]),
            attempts=row["attempts"],
            runtime=row["runtime"],
            cache_key=row["cache_key"],
            cached_from=row["cached_from"],
            upstream=json.loads(row["upstream"]) if row["upstream"] else [],
            parameters=json.loads(row["parameters"]) if row["parameters"] else {},
            inputs=json.loads(row["inputs"]) if row["inputs"] else {},
            outputs={name: OutputVersions([artifacts[aid]]) for name, aid in outs.items() if aid in artifacts},
            logs=row["logs"] or "",
            error_type=row["error_type"],
            error_message=row["error_message"],
            traceback=row["traceback"],
        )
    return result


def load_artifacts(store: Store, ids: set[str]) -> dict[str, ArtifactVersion]:
    found: dict[str, ArtifactVersion] = {}
    id_list = list(ids)
    for i in range(0, len(id_list), 500):
        chunk = id_list[i : i + 500]
        marks = ",".join("?" * len(chunk))
        for row in store.metadata.query(
            f"SELECT * FROM artifact_versions WHERE id IN ({marks})", chunk
        ):
            found[row["id"]] = ArtifactVersion.from_row(store, row)
    return found
