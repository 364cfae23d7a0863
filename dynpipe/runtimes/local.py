"""Isolated steps on this machine: who owns the warm worker pool, and when it stops.

The per-step overhead of an isolated step is a socket round trip only if the workers are
already running, so one pool outlives the runs of a process (a script's runs, a notebook's
cells). ``LocalRuntimes`` is its owner: it creates the pool on the first isolated step (not
at import: importing dynpipe starts nothing and registers nothing), resizes it when
``DYNPIPE_WORKERS`` changes, and shuts it down

* explicitly, with ``shutdown()`` (``shutdown_shared_runtime()``), or
* at interpreter exit, through one ``atexit`` hook registered when the pool is created;
  hooks added with ``before_exit`` (the notebook extension finishes its open runs there)
  run first, while the workers can still be stopped step by step.

A forked child never uses its parent's pool (the owner notices the changed pid). Workers
also die with the orchestrator on their own (see ``worker.die_with_parent``), so a SIGKILL
of the orchestrator, which runs no exit hook, leaves nothing behind but what a step moved
out of its worker's process group.
"""

from __future__ import annotations

import atexit
import os
import threading
from collections.abc import Callable
from typing import Final

from .. import settings
from ..errors import WorkerCrashedError
from .local_launch import LocalLaunch
from .pool import LocalProcessRuntime
from .worker_process import describe_exit


class LocalRuntimes:
    """Owns this process's pool of local workers (created lazily, shut down once)."""

    def __init__(self) -> None:
        self._pid = os.getpid()
        self._lock = threading.Lock()
        self._pool: LocalProcessRuntime | None = None
        self._before_exit: list[Callable[[], object]] = []
        self._exit_hook = False

    def _forget_if_forked(self) -> None:
        """A forked child must neither use nor kill its parent's workers (nor wait on a lock
        another thread of the parent held at the fork)."""
        if self._pid != os.getpid():
            self._pid = os.getpid()
            self._lock = threading.Lock()
            self._pool = None
            self._before_exit = []
            self._exit_hook = False

    def _register_exit_hook(self) -> None:
        """Lock held: one atexit hook per process, added on first need."""
        if not self._exit_hook:
            atexit.register(self._at_exit)
            self._exit_hook = True

    def pool(self) -> LocalProcessRuntime:
        """The pool (created on first use); a changed ``DYNPIPE_WORKERS`` resizes it."""
        size = settings.local_workers()
        self._forget_if_forked()
        with self._lock:
            pool = self._pool
            if pool is None or pool.closed:
                pool = self._pool = LocalProcessRuntime(size)
                self._register_exit_hook()
                return pool
        if pool.size != size:
            pool.resize(size)
        return pool

    def current(self) -> LocalProcessRuntime | None:
        """The pool if one is running (never starts one)."""
        self._forget_if_forked()
        return self._pool

    def shutdown(self) -> None:
        """Stop the pool's workers now (and their process groups); the next isolated step
        starts a new pool."""
        self._forget_if_forked()
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown()

    def before_exit(self, hook: Callable[[], object]) -> None:
        """Run ``hook`` at interpreter exit before the pool stops (e.g. finish open runs)."""
        self._forget_if_forked()
        with self._lock:
            if hook not in self._before_exit:
                self._before_exit.append(hook)
            self._register_exit_hook()

    def discard_before_exit(self, hook: Callable[[], object]) -> None:
        with self._lock:
            if hook in self._before_exit:
                self._before_exit.remove(hook)

    def _at_exit(self) -> None:
        if self._pid != os.getpid():
            return
        with self._lock:
            hooks = list(reversed(self._before_exit))
        for hook in hooks:
            try:
                hook()
            except Exception:  # noqa: BLE001 - best effort at exit; the pool must still stop
                pass
        self.shutdown()


#: The one owner per process. Created at import but inert: no pool, no thread, no hook
#: until the first isolated step (or ``before_exit``) asks for one.
LOCAL: Final = LocalRuntimes()


def shared_local_runtime() -> LocalProcessRuntime:
    """The process's pool (``LOCAL.pool()``)."""
    return LOCAL.pool()


def shutdown_shared_runtime() -> None:
    """Stop the process's pool now (``LOCAL.shutdown()``)."""
    LOCAL.shutdown()


__all__ = [
    "LOCAL",
    "LocalLaunch",
    "LocalProcessRuntime",
    "LocalRuntimes",
    "WorkerCrashedError",
    "describe_exit",
    "shared_local_runtime",
    "shutdown_shared_runtime",
]
