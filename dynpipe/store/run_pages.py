"""Light views of runs for lists (``Client.list_run_summaries``) and the cursor between pages.

A ``RunSummary`` carries what a row of a runs list shows (status, step counts, active
and open time, origin) without the run's step rows; ``RunPage.next`` is an opaque token
for the page after it, stable while new runs arrive (it names the last run shown, not a
position).
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from ..status import ExecutionStatus
from .models import to_datetime
from .summary_records import RunSummaryRecord


@dataclass(frozen=True)
class RunSummary:
    """One run of a list: its row, step counts by status, and times."""

    id: str
    name: str
    pipeline_name: str
    status: ExecutionStatus
    start_time: datetime
    end_time: datetime | None
    error: str | None
    config: dict[str, Any]
    step_counts: dict[str, int]
    #: seconds during which at least one step ran (as ``PipelineRun.active_duration``);
    #: ``None`` unless the page was asked with ``active_time=True``
    active_duration: float | None

    @property
    def steps(self) -> int:
        return sum(self.step_counts.values())

    @property
    def origin(self) -> str | None:
        value = self.config.get("origin")
        return value if isinstance(value, str) else None

    @property
    def duration(self) -> float | None:
        """How long the run was open (a notebook run stays open between cells)."""
        return (self.end_time - self.start_time).total_seconds() if self.end_time else None


@dataclass(frozen=True)
class RunPage:
    """Runs newest first; ``next`` is the cursor of the following page, ``None`` at the end."""

    runs: list[RunSummary]
    next: str | None


def summary_from_record(record: RunSummaryRecord, active_time: bool) -> RunSummary:
    run = record.run
    active = record.active
    if active is None and active_time and run.end is not None:
        active = 0.0  # finished without a step that ran
    return RunSummary(
        id=run.id, name=run.name, pipeline_name=run.pipeline_name, status=run.status,
        start_time=to_datetime(run.start),  # type: ignore[arg-type]
        end_time=to_datetime(run.end), error=run.error, config=run.config,
        step_counts=record.step_counts, active_duration=active,
    )


def encode_cursor(record: RunSummaryRecord) -> str:
    """The token of the page after ``record``: its start (exact float) and id."""
    raw = json.dumps([record.run.start, record.run.id]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(token: str) -> tuple[float, str]:
    """A token from ``encode_cursor``; ``ValueError`` naming it otherwise."""
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        start, run_id = json.loads(raw)
        if isinstance(start, bool) or not isinstance(start, (int, float)) or not isinstance(run_id, str):
            raise TypeError
    except (binascii.Error, ValueError, TypeError):
        raise ValueError(f"cursor {token!r} is not one a runs page returned as 'next'") from None
    return float(start), run_id
