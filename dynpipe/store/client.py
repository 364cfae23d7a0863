"""``Client``: read pipelines, runs, step runs and artifacts from the store."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path

from .models import ArtifactVersion, PipelineRun, StepAttempt, StepRun, run_from_record, to_datetime
from .records import RunFilter
from .run_pages import RunPage, decode_cursor, encode_cursor, summary_from_record
from .store import Store, open_store
from .summary_records import SummaryFilter


@dataclass
class PipelineInfo:
    """A named pipeline and its runs (newest first)."""

    name: str
    _client: Client

    @property
    def runs(self) -> list[PipelineRun]:
        return self._client.list_pipeline_runs(pipeline_name=self.name)

    @property
    def last_run(self) -> PipelineRun:
        runs = self._client.list_pipeline_runs(pipeline_name=self.name, limit=1)
        if not runs:
            raise KeyError(f"pipeline {self.name!r} has no runs yet")
        return runs[0]


class Client:
    """Entry point for reading the store; ``Client(root)`` opens another store root."""

    def __init__(self, root: str | Path | None = None) -> None:
        self.store: Store = open_store(root)

    # -- pipelines --------------------------------------------------------------
    def get_pipeline(self, name: str) -> PipelineInfo:
        """A named pipeline; one-step runs of a step called outside any pipeline are not one."""
        if not self.store.metadata.pipeline_has_listed_runs(name):
            known = ", ".join(p.name for p in self.list_pipelines()) or "none"
            raise KeyError(f"no pipeline named {name!r} in store {self.store.root} (known: {known})")
        return PipelineInfo(name, self)

    def list_pipelines(self) -> list[PipelineInfo]:
        return [PipelineInfo(name, self) for name in self.store.metadata.list_pipeline_names()]

    # -- runs -------------------------------------------------------------------
    def _runs(self, where: RunFilter) -> list[PipelineRun]:
        records = self.store.metadata.list_runs(where)
        if self.store.metadata.reap_dead_runs(records):
            records = self.store.metadata.list_runs(where)
        return [run_from_record(self.store, r) for r in records]

    def get_pipeline_run(self, name_or_id: str) -> PipelineRun:
        runs = self._runs(RunFilter(id_or_name=name_or_id, limit=1))
        if not runs:
            prefix = self._runs(RunFilter(id_prefix=name_or_id, limit=2))
            if len(prefix) == 1:
                return prefix[0]
            raise KeyError(f"no pipeline run with name or id {name_or_id!r} in {self.store.root}")
        return runs[0]

    def list_pipeline_runs(
        self,
        pipeline_name: str | None = None,
        status: str | None = None,
        name_contains: str | None = None,
        include_unlisted: bool = False,
        parent_run_id: str | None = None,
        limit: int | None = None,
        *,
        name: str | None = None,
        size: int | None = None,
        sort_by: str = "desc:created",
    ) -> list[PipelineRun]:
        """Runs, newest first; ``name``/``size``/``sort_by`` as in ZenML's client.

        One-step runs (a step called outside any pipeline) are left out unless
        ``include_unlisted``; ``sort_by`` is ``desc:created`` or ``asc:created``.
        """
        if sort_by not in ("desc:created", "asc:created", "created"):
            raise ValueError(f"list_pipeline_runs: sort_by {sort_by!r} is not one of desc:created, asc:created")
        limit = size if limit is None else limit
        where = RunFilter(
            pipeline_name=pipeline_name, name=name, name_contains=name_contains,
            parent_run_id=parent_run_id, include_unlisted=include_unlisted,
            ascending=sort_by == "asc:created", limit=None if status else limit,
        )
        runs = self._runs(where)
        if status is not None:
            runs = [r for r in runs if r.status.value == str(status)]
            if limit is not None:
                runs = runs[:limit]
        return runs

    def list_run_summaries(
        self,
        pipeline_name: str | None = None,
        status: str | None = None,
        limit: int = 50,
        after: str | None = None,
        *,
        offset: int = 0,
        run_names: Collection[str] | None = None,
        include_unlisted: bool = False,
        active_time: bool = False,
    ) -> RunPage:
        """One page of runs, newest first, with step counts and active time but no step rows.

        ``after`` is the ``next`` of the previous page: pages continue where it ended even
        while new runs arrive (``offset`` counts from the top and shifts with them).
        ``run_names`` keeps only the named runs (a schedule's). ``active_time`` also reads the
        steps' start and end times for ``RunSummary.active_duration`` (else it is ``None``).
        """
        if limit < 1:
            raise ValueError(f"list_run_summaries: limit must be at least 1, got {limit}")
        cursor = decode_cursor(after) if after else None
        where = SummaryFilter(
            pipeline_name=pipeline_name, status=None if status is None else str(status),
            run_names=None if run_names is None else sorted(run_names), include_unlisted=include_unlisted,
        )
        metadata = self.store.metadata
        records = metadata.run_summaries(where, limit + 1, cursor, offset, active_time)
        if metadata.reap_dead_runs(r.run for r in records):  # their status (and the page) changed
            records = metadata.run_summaries(where, limit + 1, cursor, offset, active_time)
        more = len(records) > limit
        records = records[:limit]
        runs = [summary_from_record(r, active_time) for r in records]
        return RunPage(runs, encode_cursor(records[-1]) if more else None)

    def get_step_run(self, run: str, invocation_id: str) -> StepRun:
        pipeline_run = self.get_pipeline_run(run)
        try:
            return pipeline_run.steps[invocation_id]
        except KeyError:
            raise KeyError(
                f"run {pipeline_run.name!r} has no step {invocation_id!r}"
                f" (steps: {', '.join(pipeline_run.steps) or 'none'})"
            ) from None

    def list_step_attempts(self, run: str, invocation_id: str) -> list[StepAttempt]:
        """Every attempt of one step run, oldest first: the failed ones that were retried,
        then the final attempt (the step run's own outcome)."""
        step = self.get_step_run(run, invocation_id)
        attempts = [
            StepAttempt(
                r.attempt, str(r.status), to_datetime(r.start), to_datetime(r.end), r.error_type, r.error_message
            )
            for r in self.store.metadata.step_attempts(step.id)
        ]
        if step.attempts > len(attempts):
            attempts.append(
                StepAttempt(step.attempts, step.status.value, None, step.end_time, step.error_type, step.error_message)
            )
        return attempts

    # -- artifacts ----------------------------------------------------------------
    def get_artifact_version(self, name_or_id: str, version: int | None = None) -> ArtifactVersion:
        """By id, or by name (newest version unless ``version`` is given)."""
        record = self.store.metadata.find_artifact(name_or_id, version)
        if record is None:
            detail = f" version {version}" if version is not None else ""
            raise KeyError(f"no artifact {name_or_id!r}{detail} in {self.store.root}")
        return ArtifactVersion.from_record(self.store, record)

    def list_artifact_versions(self, name: str | None = None) -> list[ArtifactVersion]:
        return [ArtifactVersion.from_record(self.store, r) for r in self.store.metadata.list_artifacts(name)]
