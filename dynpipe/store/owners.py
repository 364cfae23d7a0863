"""Who owns a run: the host, pid and process start time, to tell a live run from a dead one."""

from __future__ import annotations

import os
import socket


def owner_of_this_process() -> tuple[str, int, str | None]:
    pid = os.getpid()
    return socket.gethostname(), pid, _process_start_marker(pid)


def _process_start_marker(pid: int) -> str | None:
    """Start time of a process (Linux /proc), so a reused pid is not mistaken for the owner."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            data = fh.read()
        # Field 22 counted after the parenthesised command name.
        fields = data[data.rindex(b")") + 2 :].split()
        return fields[19].decode()
    except (OSError, ValueError, IndexError):
        return None


def process_is_alive(host: str | None, pid: int | None, started: str | None) -> bool:
    """True unless we can prove the process that owns a run is gone."""
    if host != socket.gethostname() or pid is None:
        return True  # cannot check another machine; trust the record
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    if started is not None:
        current = _process_start_marker(pid)
        if current is not None and current != started:
            return False
    return True


