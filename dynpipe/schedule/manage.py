"""Schedules as managed objects: create, list, pause, resume, delete, and the runs they started."""

from __future__ import annotations

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


def list_schedule_runs(name: str, root: Path | None = None) -> list[FireRecord]:
    """The fires of schedule ``name``, newest first; ``run_name`` links each to its run in the store.

    ``dynpipe runs list --schedule NAME`` is these run names looked up with ``Client``.
    """
    store = ScheduleStore(root)
    try:
        store.get(name)
        return store.fires(name)
    finally:
        store.close()
