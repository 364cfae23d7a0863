"""ResourceSettings enforced in a local worker process, where the OS allows it.

Memory becomes a soft ``RLIMIT_AS`` for the duration of one task: the limit is the
worker's current address-space size plus the step's ``memory``, so the figure means
"this much more than an idle worker", close to what a container limit means. An
allocation past it raises ``MemoryError`` inside the step instead of swapping or
waking the OOM killer. ``cpu_count`` pins the worker to that many cores
(``sched_setaffinity``), rounded up, spread over the allowed cores by worker slot.
Both are undone when the task ends, so the next task in the same warm worker starts
clean. Neither is a security boundary: a step may raise its own soft limit.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

try:
    import resource
except ImportError:  # pragma: no cover - not on POSIX
    resource = None  # type: ignore[assignment]


def address_space_bytes() -> int | None:
    """Current virtual memory size of this process (Linux), or None if unknown."""
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("VmSize:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def pick_cores(allowed: set[int], count: float, slot: int) -> set[int]:
    """``ceil(count)`` cores out of ``allowed``, starting at a slot-dependent offset."""
    cores = sorted(allowed)
    n = max(1, min(len(cores), math.ceil(count)))
    start = (slot * n) % len(cores)
    return {cores[(start + i) % len(cores)] for i in range(n)}


@contextmanager
def applied_resources(settings: Any, slot: int = 0) -> Iterator[list[str]]:
    """Apply ``settings`` (a ResourceSettings or None) to this process while the block runs.

    Yields notes about settings that could not be honoured here (e.g. GPUs), so the
    caller can put them in the step's logs.
    """
    notes: list[str] = []
    undo: list[Any] = []
    try:
        if settings is not None:
            memory = getattr(settings, "memory_bytes", None)
            if memory is not None:
                if resource is None or not hasattr(resource, "RLIMIT_AS"):
                    notes.append("memory limit not enforced: no RLIMIT_AS on this OS")
                else:
                    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
                    base = address_space_bytes() or 0
                    limit = base + int(memory)
                    if hard != resource.RLIM_INFINITY:
                        limit = min(limit, hard)
                    resource.setrlimit(resource.RLIMIT_AS, (limit, hard))
                    undo.append(lambda s=soft, h=hard: resource.setrlimit(resource.RLIMIT_AS, (s, h)))
            cpus = getattr(settings, "cpu_count", None)
            if cpus is not None:
                if not hasattr(os, "sched_setaffinity"):
                    notes.append("CPU limit not enforced: no sched_setaffinity on this OS")
                else:
                    allowed = os.sched_getaffinity(0)
                    os.sched_setaffinity(0, pick_cores(allowed, cpus, slot))
                    undo.append(lambda a=allowed: os.sched_setaffinity(0, a))
            if getattr(settings, "gpu_count", None):
                notes.append("gpu_count is only honoured by the Kubernetes runtime")
        yield notes
    finally:
        for fn in reversed(undo):
            try:
                fn()
            except OSError:
                pass
