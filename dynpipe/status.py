"""The statuses of runs and step runs, and which of them are final.

One vocabulary for the engine, the store, the live DAG, the CLI and the notebook: values are
lower-case strings (stable in the store), and ``ExecutionStatus`` is a ``str`` enum so a
stored string and the enum member compare equal.
"""

from __future__ import annotations

from enum import Enum


class ExecutionStatus(str, Enum):
    """Status of a run or step run."""

    QUEUED = "queued"  # submitted, waiting for its inputs or for a thread/worker
    INITIALIZING = "initializing"
    RUNNING = "running"
    RETRYING = "retrying"
    COMPLETED = "completed"
    CACHED = "cached"
    FAILED = "failed"
    SKIPPED = "skipped"
    STOPPED = "stopped"

    def __str__(self) -> str:
        return self.value

    @property
    def is_finished(self) -> bool:
        return self in FINISHED


#: Final statuses: a step run or run in one of these never changes again.
FINISHED: frozenset[ExecutionStatus] = frozenset(
    {
        ExecutionStatus.COMPLETED,
        ExecutionStatus.CACHED,
        ExecutionStatus.FAILED,
        ExecutionStatus.SKIPPED,
        ExecutionStatus.STOPPED,
    }
)

#: Final statuses whose step produced outputs (ran, or reused a cached run).
SUCCEEDED: frozenset[ExecutionStatus] = frozenset({ExecutionStatus.COMPLETED, ExecutionStatus.CACHED})
