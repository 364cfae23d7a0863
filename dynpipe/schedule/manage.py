"""Schedules as managed objects: create, list, pause, resume, delete, and the runs they started."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from ..store.schedules import FireRecord, ScheduleRecord, ScheduleStore
from .cron import Cron, Overlap, TimeZone
from .module_info import check_params, resolve_module
from .params import split_params

_NAME_CHARS = "letters, digits, '.', '_' and '-'"


class ScheduleSpec(BaseModel):
    """A schedule as the user gives it; validated before anything is stored."""

    model_config = ConfigDict(extra="forbid")
    name: str
    module: str
    cron: Cron
    timezone: TimeZone = "UTC"
    params: list[str] = Field(default_factory=list)
    overlap: Overlap = "skip"
    catchup: str = "none"

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not value or not all(c.isalnum() or c in "._-" for c in value) or value[0] in ".-":
            raise ValueError(f"schedule name {value!r}: use {_NAME_CHARS}, starting with a letter or digit")
        return value

    @field_validator("catchup")
    @classmethod
    def _catchup(cls, value: str) -> str:
        if value not in ("none", "latest", "all"):
            raise ValueError(f"--catchup {value!r}: expected none, latest or all")
        return value


def build_spec(**fields: Any) -> ScheduleSpec:
    """A ScheduleSpec, with pydantic's errors turned into one ValueError naming the option."""
    from pydantic import ValidationError

    try:
        return ScheduleSpec(**fields)
    except ValidationError as exc:
        first = exc.errors()[0]
        message = str(first.get("ctx", {}).get("error") or first["msg"])
        raise ValueError(message.removeprefix("Value error, ")) from None


def create_schedule(spec: ScheduleSpec, root: Path | None = None) -> ScheduleRecord:
    """Check the module (parsed, not imported) and the parameters, then store the schedule."""
    path, info = resolve_module(spec.module)
    params = split_params(spec.params)
    check_params(info, list(params), path)
    record = ScheduleRecord(
        name=spec.name, module=str(path), pipeline=info.attr, cron=spec.cron, timezone=spec.timezone,
        params=params, overlap=spec.overlap, catchup=spec.catchup,
    )
    store = ScheduleStore(root)
    try:
        return store.create(record)
    finally:
        store.close()


def record_kubernetes_schedule(spec: ScheduleSpec, module: Path | None, pipeline: str, pipeline_name: str,
                               namespace: str, cronjob: str, configmap: str | None,
                               root: Path | None = None) -> ScheduleRecord:
    """Store a schedule whose CronJob was applied: ``list``/``pause``/``delete`` then find it by name."""
    placement = {"namespace": namespace, "cronjob": cronjob, "pipeline_name": pipeline_name}
    if configmap:
        placement["configmap"] = configmap
    record = ScheduleRecord(
        name=spec.name, module=str(module) if module else pipeline, pipeline=pipeline, cron=spec.cron,
        timezone=spec.timezone, params=split_params(spec.params), overlap=spec.overlap, catchup="none",
        target="kubernetes", placement=placement,
    )
    store = ScheduleStore(root)
    try:
        return store.create(record)
    finally:
        store.close()


def cluster_runs(record: ScheduleRecord, root: Path | None = None, limit: int | None = None) -> list[FireRecord]:
    """The runs a schedule's CronJob started, newest first, found in the (shared) store by their names.

    The pod names its run ``{schedule}-{date}-{time}`` (``kubernetes.run_name_template``), so the
    name tags the run with its schedule; there is no fire table in the cluster.
    """
    from ..store.client import Client

    tagged = re.compile(re.escape(record.name) + r"-\d{4}_\d{2}_\d{2}-\d{2}_\d{2}_\d{2}_\d{6}")
    runs = Client(root).list_pipeline_runs(pipeline_name=record.placement.get("pipeline_name", record.pipeline))
    fires = [
        FireRecord(schedule=record.name, fire_time=r.start_time.timestamp(), kind="cronjob", outcome=r.status.value,
                   run_name=r.name, started=r.start_time.timestamp(),
                   ended=r.end_time.timestamp() if r.end_time else None)
        for r in runs if tagged.match(r.name)
    ]
    fires.sort(key=lambda f: f.fire_time, reverse=True)
    return fires[:limit] if limit else fires


def list_schedule_runs(name: str, root: Path | None = None) -> list[FireRecord]:
    """The fires of schedule ``name``, newest first; ``run_name`` links each to its run in the store.

    ``dynpipe runs list --schedule NAME`` is these run names looked up with ``Client``.
    """
    store = ScheduleStore(root)
    try:
        record = store.get(name)
        if record.target == "kubernetes":
            return cluster_runs(record, root)
        return store.fires(name)
    finally:
        store.close()
