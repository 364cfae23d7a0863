"""The metadata interface: every read and write the rest of dynpipe makes of run records.

``MetadataStore`` (SQLite, ``metadata.py``) and ``PostgresMetadata`` (``postgres.py``)
implement it and pass the same tests; ``metadata_url.py`` picks one from
``DYNPIPE_STORE_URL``. Each write method is one whole unit of work (one transaction), and only
plain records from ``records.py`` cross it, so callers never see SQL or driver types.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, Protocol

from ..status import ExecutionStatus
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

if TYPE_CHECKING:
    from .summary_records import RunSummaryRecord, SummaryFilter


class MetadataBackend(Protocol):
    """Pipelines, runs, step runs, attempts, artifact versions and small blobs."""

    # -- runs ------------------------------------------------------------------------
    def create_run(
        self,
        run_id: str,
        name: str,
        pipeline_name: str,
        config: dict[str, Any],
        parent_run_id: str | None = None,
        unlisted: bool = False,
    ) -> None:
        """Record a running run (and its pipeline); raises ``RunNameTaken`` for a used name."""

    def run_name_exists(self, name: str) -> bool: ...

    def finish_run(self, run_id: str, status: ExecutionStatus, error: str | None = None) -> None:
        """Record the run's final status; step runs still open become stopped."""

    def list_runs(self, where: RunFilter) -> list[RunRecord]: ...

    def run_summaries(
        self,
        where: SummaryFilter,
        limit: int,
        after: tuple[float, str] | None = None,
        offset: int = 0,
        active: bool = False,
    ) -> list[RunSummaryRecord]:
        """A page of runs, newest first (by start, then id), after the ``(start, id)`` cursor
        ``after``, each with its step counts by status and (``active``) active seconds; step
        rows are read by narrow columns only (``run_summaries.py``)."""

    def record_heartbeat(self, run_id: str) -> None:
        """The orchestrator of an open run is alive (written every few seconds by a thread)."""

    def reap_dead_runs(self, runs: Iterable[RunRecord]) -> set[str]:
        """Mark runs whose owner is gone (same-host PID, else a stale heartbeat) as failed; return ids."""

    def pipeline_has_listed_runs(self, pipeline_name: str) -> bool: ...

    def list_pipeline_names(self) -> list[str]:
        """Pipelines with at least one listed run, by name."""

    # -- step runs: one transaction per transition ----------------------------------------
    def record_step_started(self, step: NewStepRun, start: float) -> None: ...

    def record_attempt(self, step_run_id: str, attempt: AttemptRecord) -> None:
        """A failed attempt that will be retried: the step run is ``retrying``."""

    def record_retry_started(self, step_run_id: str, attempt: int) -> None: ...

    def finish_step_run(self, step: NewStepRun, outcome: StepOutcome, batched: bool = False) -> None:
        """A step run's end: outputs, last attempt and status together (inserted if new).

        ``batched``: the record may be committed up to ``write_batch.WINDOW`` later, together
        with others (group commit; a backend may also commit it at once)."""

    def record_cache_hit(
        self, step: NewStepRun, now: float, cache_key: str, cached: CachedStepRun, batched: bool = False
    ) -> None: ...

    def flush(self, run_id: str | None = None) -> None:
        """Commit batched records now; raise the error of a batch that held records of ``run_id``."""

    def record_not_run(
        self, step: NewStepRun, status: ExecutionStatus, end: float, reason: str
    ) -> None:
        """A step run that never started (skipped, or stopped while queued)."""

    def append_step_log(self, step_run_id: str, text: str) -> None: ...

    def record_artifacts(self, artifacts: list[NewArtifact]) -> None: ...

    def find_cached(self, cache_key: str, not_before: float | None) -> CachedStepRun | None: ...

    def step_runs_of_run(self, run_id: str) -> list[StepRunRecord]: ...

    def invocation_ids_of_run(self, run_id: str) -> list[str]:
        """The run's step runs' invocation ids, in the order of ``step_runs_of_run``."""
        ...

    def step_run_of_run(self, run_id: str, invocation_id: str) -> StepRunRecord | None: ...

    def step_attempts(self, step_run_id: str) -> list[AttemptRecord]: ...

    def run_names_of_step_runs(self, step_run_ids: list[str]) -> dict[str, str]:
        """Step run id -> name of the run it belongs to."""

    # -- artifacts -----------------------------------------------------------------------
    def artifacts_by_ids(self, ids: Iterable[str]) -> list[ArtifactRecord]: ...

    def find_artifact(self, name_or_id: str, version: int | None = None) -> ArtifactRecord | None:
        """By id, or by name (newest version unless ``version`` is given)."""

    def list_artifacts(self, name: str | None = None) -> list[ArtifactRecord]: ...

    def put_blob(self, content_hash: str, data: bytes) -> None: ...

    def get_blob(self, content_hash: str) -> bytes | None: ...

    def has_blob(self, content_hash: str) -> bool: ...

    # -- the database itself ---------------------------------------------------------------
    def schema_version(self) -> int:
        """The schema version recorded in the database's ``schema_version`` table."""

    def location(self) -> str:
        """Where the metadata lives, as a URL with any password masked."""

    def close(self) -> None: ...
