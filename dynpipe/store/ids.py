"""Unique ids for step runs and artifacts: 32 hex digits, in time order.

``uuid4().hex`` costs an ``os.urandom`` call per id, which releases the GIL: with a pool of
busy step threads, getting it back costs far more than the id. And random ids scatter the
inserts over every page of the ``step_runs``/``artifact_versions`` primary keys, so once those
indexes outgrow SQLite's page cache each insert reads pages back and the time per step grows
with the store. These ids start with the time in nanoseconds (inserts land at the index's
end) and end with 64 bits from a generator seeded from ``os.urandom`` once per process.
"""

from __future__ import annotations

import os
import random
import time

from .forks import watch_forks


class IdMaker:
    """Makes ids for one owner (a run, a store); reseeded in a forked child."""

    __slots__ = ("_rng", "__weakref__")

    def __init__(self) -> None:
        self.reseed()
        watch_forks(self)  # a forked child reseeds (no getpid call per id)

    def reseed(self) -> None:
        """A forked child must not repeat its parent's ids."""
        self._rng = random.Random(os.urandom(32))

    after_fork = reseed

    def new(self) -> str:
        return f"{time.time_ns():016x}{self._rng.getrandbits(64):016x}"

