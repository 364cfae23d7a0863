"""Read-side views of stored records: pipeline runs, step runs, artifact versions."""

from __future__ import annotations

from collections.abc import ItemsView, Iterator, Mapping, ValuesView
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from ..errors import ArtifactLoadError
from ..status import FINISHED as _FINISHED  # noqa: F401 - re-exported
from ..status import ExecutionStatus
from .records import ArtifactRecord, RunFilter, RunRecord, StepRunRecord

if TYPE_CHECKING:
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
    id: str
    name: str
    version: int | None
    uri: str
    content_hash: str
    data_type: str | None
    materializer: str
    producer_step_run_id: str | None
    run_id: str | None
    output_name: str | None
    size: int | None
    created: float | None
    metadata: dict[str, Any]
    tags: list[str]

    def __init__(  # one assignment per field: a setattr loop over a kwargs dict cost ~4 µs per step output
        self, store: Store, *, id: str, name: str, uri: str, content_hash: str, materializer: str,
        version: int | None = None, data_type: str | None = None, producer_step_run_id: str | None = None,
        run_id: str | None = None, output_name: str | None = None, size: int | None = None,
        created: float | None = None, metadata: Any = None, tags: Any = None,
    ) -> None:
        self._store = store
        self.id = id
        self.name = name
        self.version = version
        self.uri = uri
        self.content_hash = content_hash
        self.data_type = data_type
        self.materializer = materializer
        self.producer_step_run_id = producer_step_run_id
        self.run_id = run_id
        self.output_name = output_name
        self.size = size
        self.created = created
        self.metadata = metadata
        self.tags = tags

    @classmethod
    def from_record(cls, store: Store, record: ArtifactRecord) -> ArtifactVersion:
        return cls(store, **{k: getattr(record, k) for k in _ARTIFACT_FIELDS})

    def load(self) -> Any:
        try:
            return self._store.load_value(self.uri, self.materializer, self.data_type or "", self.size)
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


class OutputVersions(list):
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
    _steps: StepRuns | None = field(default=None, repr=False)

    @property
    def steps(self) -> StepRuns:
        """The run's step runs by invocation id, read from the store as they are asked for."""
        if self._steps is None:
            self._steps = StepRuns(self._store, self.id)
        return self._steps

    @property
    def origin(self) -> str | None:
        """The notebook path, script (``sys.argv[0]`` as given) or ``schedule:NAME`` that started
        the run; ``None`` for runs recorded before dynpipe kept it."""
        value = self.config.get("origin")
        return value if isinstance(value, str) else None

    @property
    def duration(self) -> float | None:
        """How long the run was open (a notebook run stays open between cells)."""
        return (self.end_time - self.start_time).total_seconds() if self.end_time else None

    @property
    def active_duration(self) -> float | None:
        """Seconds during which at least one step ran (the union of the steps' intervals):
        what a notebook run's work cost, without the time it sat open between cells."""
        spans = sorted(
            (s.start_time.timestamp(), s.end_time.timestamp())
            for s in self.steps.values()
            if s.start_time is not None and s.end_time is not None
        )
        if not spans:
            return None if self.end_time is None else 0.0
        total, (lo, hi) = 0.0, spans[0]
        for start, end in spans[1:]:
            if start > hi:
                total, lo = total + (hi - lo), start
            hi = max(hi, end)
        return total + (hi - lo)

    def refresh(self) -> PipelineRun:
        return load_pipeline_run(self._store, self.id)


_ARTIFACT_FIELDS = ArtifactVersion.__slots__[:-1]


def run_from_record(store: Store, record: RunRecord) -> PipelineRun:
    return PipelineRun(
        id=record.id,
        name=record.name,
        pipeline_name=record.pipeline_name,
        status=record.status,
        start_time=to_datetime(record.start),  # type: ignore[arg-type]
        end_time=to_datetime(record.end),
        parent_run_id=record.parent_run_id,
        config=record.config,
        error=record.error,
        _store=store,
    )


def load_pipeline_run(store: Store, run_id: str) -> PipelineRun:
    """One run by id, read again from the store."""
    records = store.metadata.list_runs(RunFilter(id_or_name=run_id, limit=1))
    if not records:
        raise KeyError(f"no pipeline run with id {run_id!r} in {store.root}")
    return run_from_record(store, records[0])


def step_run_from_record(r: StepRunRecord, artifacts: dict[str, ArtifactVersion]) -> StepRun:
    return StepRun(
        id=r.id,
        run_id=r.run_id,
        invocation_id=r.invocation_id,
        step_name=r.step_name,
        status=r.status,
        start_time=to_datetime(r.start),
        end_time=to_datetime(r.end),
        attempts=r.attempts,
        runtime=r.runtime,
        cache_key=r.cache_key,
        cached_from=r.cached_from,
        upstream=r.upstream,
        parameters=r.parameters,
        inputs=r.inputs,
        outputs={name: OutputVersions([artifacts[aid]]) for name, aid in r.outputs.items() if aid in artifacts},
        logs=r.logs,
        error_type=r.error_type,
        error_message=r.error_message,
        traceback=r.traceback,
    )


def load_step_runs(store: Store, run_id: str) -> dict[str, StepRun]:
    records = store.metadata.step_runs_of_run(run_id)
    wanted = {aid for r in records for aid in r.outputs.values()}
    artifacts = load_artifacts(store, wanted)
    return {r.invocation_id: step_run_from_record(r, artifacts) for r in records}


def load_artifacts(store: Store, ids: set[str]) -> dict[str, ArtifactVersion]:
    if not ids:
        return {}
    return {r.id: ArtifactVersion.from_record(store, r) for r in store.metadata.artifacts_by_ids(ids)}


class StepRuns(Mapping[str, "StepRun"]):
    """A run's step runs, loaded lazily: a 50,000-step run opens without reading 50,000 rows.

    Keys come from one narrow query; ``steps[name]`` reads that one step run; iterating
    values or items (or many lookups) reads them all in one pass, once.
    """

    #: single lookups after which the rest are read in one pass
    BULK_AFTER = 32

    def __init__(self, store: Store, run_id: str) -> None:
        self._store, self._run_id = store, run_id
        self._ids: list[str] | None = None
        self._id_set: set[str] | None = None
        self._loaded: dict[str, StepRun] = {}
        self._all = False

    def _keys(self) -> list[str]:
        if self._ids is None:
            self._ids = self._store.metadata.invocation_ids_of_run(self._run_id)
        return self._ids

    def _load_all(self) -> dict[str, StepRun]:
        if not self._all:
            self._loaded = load_step_runs(self._store, self._run_id)
            self._ids, self._all = list(self._loaded), True
        return self._loaded

    def __getitem__(self, invocation_id: str) -> StepRun:
        found = self._loaded.get(invocation_id)
        if found is not None or self._all:
            if found is None:
                raise KeyError(invocation_id)
            return found
        if len(self._loaded) >= self.BULK_AFTER:
            return self._load_all()[invocation_id]
        record = self._store.metadata.step_run_of_run(self._run_id, invocation_id)
        if record is None:
            raise KeyError(invocation_id)
        artifacts = load_artifacts(self._store, set(record.outputs.values()))
        self._loaded[invocation_id] = step = step_run_from_record(record, artifacts)
        return step

    def __iter__(self) -> Iterator[str]:
        return iter(self._keys())

    def __len__(self) -> int:
        return len(self._keys())

    def __contains__(self, invocation_id: object) -> bool:
        if self._id_set is None:
            self._id_set = set(self._keys())
        return invocation_id in self._id_set

    def values(self) -> ValuesView[StepRun]:
        return self._load_all().values()

    def items(self) -> ItemsView[str, StepRun]:
        return self._load_all().items()

    def __repr__(self) -> str:
        return f"StepRuns({self._load_all()!r})"
