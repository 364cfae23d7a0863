"""Objects told once, in a forked child, that they are a copy of their parent's.

A forked child must not use its parent's connections, queued records or random state.
Asking ``os.getpid()`` on every step cost a syscall each time; instead one fork hook,
registered by the first object that needs it (importing dynpipe registers none), calls
each live object's ``after_fork`` in the child.
"""

from __future__ import annotations

import os
import weakref
from typing import Protocol


class ForkAware(Protocol):
    def after_fork(self) -> None:
        """Called in the child right after a fork (the parent's copy is left alone)."""


_WATCHED: weakref.WeakSet[ForkAware] = weakref.WeakSet()
_REGISTERED: list[bool] = []  # set once the hook is registered


def _after_fork_in_child() -> None:
    for obj in list(_WATCHED):
        obj.after_fork()


def watch_forks(obj: ForkAware) -> None:
    """Have ``obj.after_fork()`` called in a forked child (``obj`` must be weakly referenceable)."""
    if not _REGISTERED:
        _REGISTERED.append(True)
        os.register_at_fork(after_in_child=_after_fork_in_child)
    _WATCHED.add(obj)
