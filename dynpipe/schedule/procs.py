"""Processes a run left behind: its descendants, found through ``/proc`` (Linux; elsewhere none).

A run's isolated-step workers live in sessions of their own, so signalling the run's process
group does not reach them; the scheduler notes the run's descendants before stopping it and
kills whichever outlive it.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path


def _stat(pid: int) -> tuple[int, str] | None:
    """(parent pid, start time) of ``pid``, or None when it is gone."""
    try:
        data = Path(f"/proc/{pid}/stat").read_bytes()
    except OSError:
        return None
    fields = data[data.rindex(b")") + 2 :].split()
    return int(fields[1]), fields[19].decode()


def descendants(pid: int) -> dict[int, str]:
    """Every process below ``pid``: pid -> start time (to tell a reused pid apart)."""
    children: dict[int, list[int]] = {}
    starts: dict[int, str] = {}
    try:
        entries = os.listdir("/proc")
    except OSError:
        return {}
    for name in entries:
        if name.isdigit():
            info = _stat(int(name))
            if info is not None:
                children.setdefault(info[0], []).append(int(name))
                starts[int(name)] = info[1]
    found: dict[int, str] = {}
    todo = [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in found:
                found[child] = starts[child]
                todo.append(child)
    return found


def kill_survivors(processes: dict[int, str]) -> list[int]:
    """SIGKILL those of ``processes`` still alive (same pid and start time); return their pids."""
    killed = []
    for pid, started in processes.items():
        info = _stat(pid)
        if info is None or info[1] != started:
            continue
        try:
            os.kill(pid, signal.SIGKILL)
            killed.append(pid)
        except (ProcessLookupError, PermissionError):
            pass
    return killed
