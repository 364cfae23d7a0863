"""Step starts recorded late: a step that ends within ``WINDOW`` is one transaction, not two.

Most steps finish in well under a millisecond; writing their start in a transaction of its
own doubled the commits per step. A start is kept here instead, and either the step's final
write inserts the row whole (``StepOutcome.start``), or, if the step is still running
``WINDOW`` seconds after it started, a daemon thread commits the start then.

Durability (docs/architecture.md): a step running for longer than ``WINDOW`` has its start
committed, so a crash of the orchestrator loses only the starts of steps that began less than
``WINDOW`` before it (they had not finished, and a reader marks the run failed all the same).
The final record of a step whose start was still here is group-committed within the same
``WINDOW`` (``store/write_batch.py``); any other final record is committed before the step's
future resolves.
"""

from __future__ import annotations

import threading
import time
import warnings

from ..store import write_batch
from ..store.backend import MetadataBackend
from ..store.records import NewStepRun

#: seconds a running step may go without its start committed; a step that ends within it
#: also has its record group-committed (the same bound, store/write_batch.py)
WINDOW = write_batch.WINDOW
#: seconds the thread waits with nothing pending before it exits (restarted on demand)
IDLE_EXIT = 2.0


class DeferredStarts:
    """Starts of running steps of one run, not committed yet."""

    def __init__(self, metadata: MetadataBackend) -> None:
        self._metadata = metadata
        self._lock = threading.Condition(threading.Lock())
        # step run id -> (record, start, monotonic time by which it must be committed)
        self._pending: dict[str, tuple[NewStepRun, float, float]] = {}
        self._thread: threading.Thread | None = None
        self._idle = False
        self._warned = False

    def add(self, record: NewStepRun, start: float) -> None:
        with self._lock:
            self._pending[record.id] = (record, start, time.monotonic() + WINDOW)
            if self._thread is None:
                self._thread = threading.Thread(target=self._loop, name="dynpipe-step-starts", daemon=True)
                self._thread.start()
            elif self._idle:
                self._lock.notify()

    def take(self, step_run_id: str) -> float | None:
        """The start of a step whose row is not written yet (its final write inserts it), else None."""
        with self._lock:
            item = self._pending.pop(step_run_id, None)
        return None if item is None else item[1]

    def flush(self, step_run_id: str | None = None) -> None:
        """Commit pending starts now (one step's, or all): before a write that updates the row."""
        with self._lock:
            for sid in [step_run_id] if step_run_id is not None else list(self._pending):
                item = self._pending.get(sid)
                if item is not None:
                    self._metadata.record_step_started(item[0], item[1])
                    del self._pending[sid]  # only once committed: take() never sees a half-written start

    def _loop(self) -> None:
        with self._lock:
            while True:
                if not self._pending:
                    self._idle = True
                    self._lock.wait(IDLE_EXIT)
                    self._idle = False
                    if not self._pending:
                        self._thread = None
                        return
                    continue
                now = time.monotonic()
                for sid, (record, start, due) in list(self._pending.items()):
                    if due <= now:
                        self._commit(sid, record, start, now)
                if self._pending:
                    self._lock.wait(max(0.0, min(due for _, _, due in self._pending.values()) - now))

    def _commit(self, sid: str, record: NewStepRun, start: float, now: float) -> None:
        try:
            self._metadata.record_step_started(record, start)
        except Exception as exc:  # noqa: BLE001 - the step's final write inserts the row anyway
            self._pending[sid] = (record, start, now + WINDOW)
            if not self._warned:
                self._warned = True
                warnings.warn(f"dynpipe: could not record a step's start: {exc}", RuntimeWarning, stacklevel=1)
            return
        del self._pending[sid]
