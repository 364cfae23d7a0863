"""WAL checkpoints of the SQLite metadata store, off the writer's thread.

SQLite's automatic checkpoint runs inside the ``COMMIT`` that crosses its threshold and
fsyncs the WAL and the database there: one step in ~150 paid 5-10 ms for it, about half
of all commit time. Here a daemon thread with its own connection runs a ``PASSIVE``
checkpoint every ``EVERY`` commits instead (writers keep committing meanwhile), and the
writer's automatic checkpoint stays as a safety net at a higher threshold. Durability is
unchanged: a transaction is durable against a process crash once its ``COMMIT`` returns,
whether or not its pages were checkpointed yet.

A process that exits without closing its connection (most scripts and scheduled runs) leaves
its WAL behind, never checkpointed when it had fewer than ``EVERY`` commits, and the next
process to open the store rebuilds its index from the whole file: ~16 pages per one-step run
piled up to the safety net (40 MB), where each fresh process's open read the WAL for tens of
ms. So an opener that finds a WAL over ``SHRINK_WAL_BYTES`` checkpoints it and truncates it,
from the same thread, off the run's path.
"""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

#: commits between two background checkpoints (~7 WAL pages per step transaction)
EVERY = 128
#: the writer's own automatic checkpoint threshold, in pages: reached only if the thread lags
SAFETY_NET_PAGES = 10_000
#: a WAL found this big at open is checkpointed and truncated (~1,000 pages; a few ms to index)
SHRINK_WAL_BYTES = 4 * 1024 * 1024
#: how long the truncation may wait for the writer and readers before giving up (ms): it holds
#: the write lock while it waits, so the run's commits would wait as long
SHRINK_BUSY_MS = 100


class Checkpointer:
    """Counts commits of one connection's writer; checkpoints from a thread started on demand."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._commits = 0
        self._wake = threading.Event()
        self._closed = False
        self._thread: threading.Thread | None = None
        self._shrink = _wal_size(path) > SHRINK_WAL_BYTES
        if self._shrink:
            self._start()
            self._wake.set()

    def committed(self) -> None:
        """Called by the writer (under its lock) after each commit."""
        self._commits += 1
        if self._commits < EVERY:
            return
        self._commits = 0
        if self._thread is None:
            self._start()
        self._wake.set()

    def _start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="dynpipe-wal-checkpoint", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        try:
            conn = sqlite3.connect(str(self._path), timeout=60.0, isolation_level=None, check_same_thread=False)
        except sqlite3.Error:
            return  # the writer's automatic checkpoint still bounds the WAL
        try:
            while True:
                self._wake.wait()
                self._wake.clear()
                if self._closed:
                    return
                try:
                    busy, frames, copied = conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
                    if self._shrink and not busy and frames == copied:
                        self._shrink = False
                        # all copied: TRUNCATE only waits for a lock, then empties the file
                        conn.execute(f"PRAGMA busy_timeout = {SHRINK_BUSY_MS}")
                        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
                except sqlite3.Error:
                    pass  # busy or failing disk: the next round (or the safety net) catches up
        finally:
            conn.close()

    def close(self) -> None:
        self._closed = True
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=10.0)


def _wal_size(path: Path) -> int:
    try:
        return path.with_name(path.name + "-wal").stat().st_size
    except OSError:
        return 0
