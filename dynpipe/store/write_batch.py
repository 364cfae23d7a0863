"""Group commit of the metadata store: short steps' records share one transaction, within ``WINDOW``.

A transaction costs ~150 µs on SQLite (``BEGIN IMMEDIATE`` + ``COMMIT``), more than everything
else a short step records; on PostgreSQL every statement is a round trip to the server. The
record of a step that ran for less than ``WINDOW`` (and of a cache hit) is queued here instead
(``WriteBatch.add``): the step's thread only builds the statements; a daemon thread runs them,
everything pending in ONE transaction, at the latest ``WINDOW`` seconds after the first one was
queued (if ``MAX_RECORDS`` or ``MAX_BYTES`` are pending before that, the step that filled the
batch commits it itself). SQLite and psycopg release the GIL while they wait, so that I/O
overlaps the steps. The backend gives the transaction that runs the grouped statements
(``sqlite3`` / psycopg ``executemany``) and the lock it commits under.

Guarantee (docs/architecture.md, "What is guaranteed when something crashes"): a crash of
the process loses at most the records queued in the last ``WINDOW`` — whole records (a step's
blob, artifact and step rows are in one transaction), a suffix of what was queued, never a
row pointing at missing bytes — and each of them cost less than ``WINDOW`` to compute. Steps
that ran longer, failed or were retried are committed before their future resolves, as before.

Whoever needs the records now commits them on its own thread (``commit_pending``): every read
of the store in this process, every other write (it may update a queued row), the run's end
and ``atexit``. A batch that fails to commit raises there, and is remembered per run
(``failure``) so the run's end fails with it; after a failure nothing is queued any more
(steps write synchronously and fail loudly, as they would without batching).
"""

from __future__ import annotations

import atexit
import threading
import time
import weakref
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from ..errors import StoreError
from .forks import watch_forks

#: SQL text and its parameters, in the backend's driver's placeholder style
Statement = tuple[str, Any]
#: queued statements by SQL text, in first-use order: each text runs as one ``executemany``
#: (a batch holds only INSERTs of new rows, none depending on another text's rows, and on
#: PostgreSQL the artifact-version locks they take first, so grouping keeps its meaning; within a
#: text, the order is kept: artifact versions of a name count up)
Grouped = dict[str, list[Any]]

#: seconds a queued record may wait for its commit (also ``engine/starts.py``'s window)
WINDOW = 0.05
#: records (steps) or bytes queued that are committed at once, by the step that queued the last
MAX_RECORDS = 2000
MAX_BYTES = 256 * 1024
#: seconds the writer thread waits with nothing pending before it exits (restarted on demand)
IDLE_EXIT = 2.0

#: batches with records queued, so ``atexit`` (and readers of the same file) can commit them
_QUEUED: weakref.WeakSet[WriteBatch] = weakref.WeakSet()
#: set once the exit hook is registered: by the first batch, so importing dynpipe registers none
_EXIT_HOOK: list[bool] = []


class WriteBatch:
    """The queued records of one metadata store, and the daemon thread that commits them."""

    def __init__(
        self, key: str, conn_lock: threading.RLock, transaction: Callable[[Grouped], None],
        rolled_back: Callable[[], bool],
    ):
        if not _EXIT_HOOK:
            _EXIT_HOOK.append(True)
            atexit.register(_commit_at_exit)
        self.key = key  # the database (file, or URL without password): its readers in this process commit this first
        self.forked = False  # a forked child's copy is the parent's to commit, never the child's
        watch_forks(self)  # (set by a fork hook, not a getpid call per step)
        self._conn_lock = conn_lock  # held around every transaction; taken before _mutex, never after
        self._transaction = transaction  # runs grouped statements in one transaction (caller holds _conn_lock)
        self._rolled_back = rolled_back  # after an interrupt in _transaction: True if nothing was committed
        # entered directly: a Condition's own ``with`` is a Python-level call around the same lock
        self._mutex = threading.Lock()
        self._cond = threading.Condition(self._mutex)  # wait/notify (under _mutex)
        self._statements: Grouped = {}
        self._runs: dict[str, int] = {}  # run id -> records queued
        self._records = 0
        self._bytes = 0
        self._due = 0.0  # monotonic time by which the queued records must be committed
        self.cache_keys: set[str] = set()  # completed steps' cache keys queued (find_cached commits first)
        self.blobs: dict[str, bytes] = {}  # small outputs queued: read from here, no commit needed
        self._failures: dict[str, StoreError] = {}  # run id -> the error of a batch that held its records
        self._thread: threading.Thread | None = None
        self._idle = False

    def after_fork(self) -> None:
        self.forked = True

    @property
    def pending(self) -> bool:
        return bool(self._statements)

    def add(
        self, run_id: str, statements: Sequence[Statement], size: int,
        cache_key: str | None = None, blobs: Iterable[tuple[str, bytes]] = (),
    ) -> bool:
        """Queue one step's statements (committed together, whole); False: write them now instead."""
        with self._mutex:
            if self._failures or self.forked:
                return False  # a batch failed: write synchronously, so the step itself fails
            first = not self._statements
            for sql, params in statements:
                group = self._statements.get(sql)
                if group is None:
                    self._statements[sql] = [params]
                else:
                    group.append(params)
            self._runs[run_id] = self._runs.get(run_id, 0) + 1
            self._bytes += size
            if cache_key is not None:
                self.cache_keys.add(cache_key)
            self.blobs.update(blobs)
            self._records += 1
            if first:
                self._due = time.monotonic() + WINDOW
                _QUEUED.add(self)
                self._wake()
        return True

    @property
    def full(self) -> bool:
        """Enough for one transaction: the adder commits it on its own thread (bounds memory and loss)."""
        return self._records >= MAX_RECORDS or self._bytes >= MAX_BYTES

    def _wake(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, name="dynpipe-group-commit", daemon=True)
            self._thread.start()
        elif self._idle:
            self._cond.notify()

    def commit_pending(self) -> None:
        """Commit every queued record now, on this thread; raises the store error if that fails."""
        if not self._statements or self.forked:
            return
        with self._conn_lock:
            self._commit_taken()

    def _commit_taken(self) -> None:
        """Take what is queued and commit it (caller holds the connection lock, so batches commit in order)."""
        with self._mutex:
            statements, runs, keys, blobs = self._statements, self._runs, self.cache_keys, self.blobs
            if not statements:
                return
            self._statements, self._runs, self._records, self._bytes = {}, {}, 0, 0
            # readers that miss these now wait for the connection lock, i.e. for this commit
            self.cache_keys, self.blobs = set(), {}
            _QUEUED.discard(self)
        try:
            self._transaction(statements)
        except Exception as exc:
            error = exc if isinstance(exc, StoreError) else StoreError(
                f"could not commit {sum(runs.values())} step records to {self.key}: {type(exc).__name__}: {exc}"
            )
            with self._mutex:
                for run_id in runs:
                    self._failures.setdefault(run_id, error)
            if error is not exc:
                raise error from exc
            raise
        except BaseException:  # Ctrl-C on the committing thread: queue them again unless committed
            if self._rolled_back():
                self._requeue(statements, runs, keys, blobs)
            raise

    def _requeue(self, statements: Grouped, runs: dict[str, int], keys: set[str], blobs: dict[str, bytes]) -> None:
        with self._mutex:
            for sql, rows in self._statements.items():  # queued meanwhile: after the older ones
                statements.setdefault(sql, []).extend(rows)
            for run_id, count in self._runs.items():
                runs[run_id] = runs.get(run_id, 0) + count
            self._records = sum(runs.values())
            self._statements, self._runs = statements, runs
            self.cache_keys |= keys
            self.blobs.update(blobs)
            _QUEUED.add(self)
            self._due = time.monotonic()
            self._wake()

    def flush(self, run_id: str | None = None) -> None:
        """Commit the queued records now; raise the error of a batch that held records of ``run_id``."""
        try:
            self.commit_pending()
        finally:
            failed = self.failure(run_id) if run_id is not None else None
        if failed is not None:
            raise failed

    def failure(self, run_id: str) -> StoreError | None:
        """The error of a batch that held records of ``run_id``, once (the run's end reports it)."""
        with self._mutex:
            return self._failures.pop(run_id, None)

    def _loop(self) -> None:
        while True:
            with self._mutex:
                while True:
                    if not self._statements:
                        self._idle = True
                        self._cond.wait(IDLE_EXIT)
                        self._idle = False
                        if not self._statements:
                            self._thread = None
                            return
                        continue
                    delay = self._due - time.monotonic()
                    if delay <= 0:
                        break
                    self._cond.wait(delay)
            try:
                with self._conn_lock:
                    self._commit_taken()
            except Exception:  # noqa: BLE001 - kept in _failures: the flusher and the run's end raise it
                pass


def commit_queued(key: str | None = None) -> None:
    """Commit the queued records of every batch (of database ``key``) in this process."""
    for batch in list(_QUEUED):
        if key is None or batch.key == key:
            batch.commit_pending()


def _commit_at_exit() -> None:
    for batch in list(_QUEUED):
        try:
            batch.commit_pending()
        except Exception:  # noqa: BLE001 - nothing is left to report to at exit
            pass

