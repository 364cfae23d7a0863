"""The records of a runs-list page (read by ``run_summaries.py``): which runs, and each run's counts.

In a module of their own, imported only when runs are listed: a pipeline run opens the store
(whose backend mixes in the page reads) but lists no runs, and creating these two dataclasses
cost ~1 % of a fresh process's first run.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from .records import RunRecord


@dataclass(frozen=True)
class SummaryFilter:
    """Which runs a page lists; ``None`` fields do not filter."""

    pipeline_name: str | None = None
    status: str | None = None
    #: only runs with these names (a schedule's runs)
    run_names: Sequence[str] | None = None
    include_unlisted: bool = False


@dataclass(frozen=True)
class RunSummaryRecord:
    """A run's row, its step counts by status and its active seconds (``None``: no step ended)."""

    run: RunRecord
    step_counts: dict[str, int] = field(default_factory=dict)
    #: only when asked for (``active=True``); ``None`` also when no step has ended
    active: float | None = None
