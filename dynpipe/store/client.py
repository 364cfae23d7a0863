"""``Client``: read pipelines, runs, step runs and artifacts from the store."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .models import ArtifactVersion, PipelineRun, StepAttempt, StepRun, run_from_row, to_datetime
from .store import Store, open_store


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
        if not self.store.metadata.query(
            "SELECT 1 FROM runs WHERE pipeline_name = ? AND unlisted = 0 LIMIT 1", (name,)
        ):
            known = ", ".join(p.name for p in self.list_pipelines()) or "none"
            raise KeyError(f"no pipeline named {name!r} in store {self.store.root} (known: {known})")
        return PipelineInfo(name, self)

    def list_pipelines(self) -> list[PipelineInfo]:
        rows = self.store.metadata.query(
            "SELECT p.name FROM pipelines p WHERE EXISTS"
            " (SELECT 1 FROM runs r WHERE r.pipeline_name = p.name AND r.unlisted = 0) ORDER BY p.name"
        )
        return [PipelineInfo(row["name"], self) for row in rows]

    # -- runs -------------------------------------------------------------------
    def _runs(
        self, where: str, params: list[Any], limit: int | None, ascending: bool = False
    ) -> list[PipelineRun]:
        order = "ASC" if ascending else "DESC"
        sql = f"SELECT * FROM runs {where} ORDER BY start {order}, rowid {order}"
        if limit is not None:
            sql += f" LIMIT {int(limit)}"
        rows = self.store.metadata.query(sql, params)
        if self.store.metadata.reap_dead_runs(rows):
            rows = self.store.metadata.query(sql, params)
        return [run_from_row(self.store, row) for row in rows]

    def get_pipeline_run(self, name_or_id: str) -> PipelineRun:
        runs = self._runs("WHERE id = ? OR name = ?", [name_or_id, name_or_id], 1)
        if not runs:
            prefix = self._runs("WHERE id LIKE ?", [f"{name_or_id}%"], 2)
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
        clauses: list[str] = []
        params: list[Any] = []
        if pipeline_name is not None:
            clauses.append("pipeline_name = ?")
            params.append(pipeline_name)
        if name is not None:
            clauses.append("name = ?")
            params.append(name)
        if name_contains is not None:
            clauses.append("name LIKE ?")
            params.append(f"%{name_contains}%")
        if parent_run_id is not None:
            clauses.append("parent_run_id = ?")
            params.append(parent_run_id)
        if not include_unlisted:
            clauses.append("unlisted = 0")
        if sort_by not in ("desc:created", "asc:created", "created"):
            raise ValueError(f"list_pipeline_runs: sort_by {sort_by!r} is not one of desc:created, asc:created")
        limit = size if limit is None else limit
        where = ("WHERE " + " AND ".join(clauses)) if clauses else ""
        runs = self._runs(where, params, None if status else limit, ascending=sort_by == "asc:created")
        if status is not None:
            runs = [r for r in runs if r.status.value == str(status)]
            if limit is not None:
                runs = runs[:limit]
        return runs

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
        rows = self.store.metadata.query(
            "SELECT * FROM step_attempts WHERE step_run_id = ? ORDER BY attempt", (step.id,)
        )
        attempts = [
            StepAttempt(
                r["attempt"], r["status"], to_datetime(r["start"]), to_datetime(r["end"]),
                r["error_type"], r["error_message"],
            )
            for r in rows
        ]
        if step.attempts > len(attempts):
            attempts.append(
                StepAttempt(step.attempts, step.status.value, None, step.end_time, step.error_type, step.error_message)
            )
        return attempts

    # -- artifacts ----------------------------------------------------------------
    def get_artifact_version(self, name_or_id: str, version: int | None = None) -> ArtifactVersion:
        """By id, or by name (newest version unless ``version`` is given)."""
        md = self.store.metadata
        if version is None:
            rows = md.query("SELECT * FROM artifact_versions WHERE id = ?", (name_or_id,))
            if not rows:
                rows = md.query(
                    "SELECT * FROM artifact_versions WHERE name = ? ORDER BY version DESC LIMIT 1",
                    (name_or_id,),
                )
        else:
            rows = md.query(
                "SELECT * FROM artifact_versions WHERE name = ? AND version = ?",
                (name_or_id, int(version)),
            )
        if not rows:
            detail = f" version {version}" if version is not None else ""
            raise KeyError(f"no artifact {name_or_id!r}{detail} in {self.store.root}")
        return ArtifactVersion.from_row(self.store, rows[0])

    def list_artifact_versions(self, name: str | None = None) -> list[ArtifactVersion]:
        if name is None:
            rows = self.store.metadata.query("SELECT * FROM artifact_versions ORDER BY created")
        else:
            rows = self.store.metadata.query(
                "SELECT * FROM artifact_versions WHERE name = ? ORDER BY version", (name,)
            )
        return [ArtifactVersion.from_row(self.store, r) for r in rows]
