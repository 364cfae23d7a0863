"""Is a run still alive? The same-host PID check first, then the heartbeat for other hosts.

A run's record names the host, pid and start marker of the process orchestrating it, and
that process refreshes ``heartbeat`` every few seconds while the run is open. On the same
host the PID answers at once; a process on another machine cannot be asked, so a
heartbeat older than ``DYNPIPE_HEARTBEAT_TIMEOUT`` (default 120 s) means it is lost.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass

from ..status import ExecutionStatus
from .owners import process_is_alive
from .records import RunRecord

_OPEN_RUN = (ExecutionStatus.RUNNING, ExecutionStatus.INITIALIZING)

EXITED = "the process running this pipeline exited before the run finished"


@dataclass(frozen=True)
class Verdict:
    """Why an open run is dead: the run's error and the error of its unfinished step runs."""

    run_error: str
    step_error: str


def needs_clock(runs: list[RunRecord]) -> bool:
    """True if judging these runs needs the current time (an open run of another host)."""
    host = socket.gethostname()
    return any(r.status in _OPEN_RUN and (r.owner_host != host or r.owner_pid is None) for r in runs)


def verdict(run: RunRecord, now: float | None, timeout: float) -> Verdict | None:
    """``None`` while the run may still be alive; otherwise why it is dead."""
    if run.status not in _OPEN_RUN:
        return None
    if run.owner_host == socket.gethostname() and run.owner_pid is not None:
        if process_is_alive(run.owner_host, run.owner_pid, run.owner_started):
            return None  # the fast path: this host can see the process
        return Verdict(EXITED, "the orchestrating process exited")
    if run.heartbeat is None or now is None:
        return None  # a record written before heartbeats existed: trust it
    silent = now - run.heartbeat
    if silent <= timeout:
        return None
    return Verdict(
        f"process lost: no heartbeat from {run.owner_host} (pid {run.owner_pid}) for {silent:.0f} s,"
        f" more than DYNPIPE_HEARTBEAT_TIMEOUT={timeout:g} s",
        "the orchestrating process was lost (no heartbeat)",
    )
