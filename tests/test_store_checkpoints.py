"""WAL checkpoints run on a background thread, not inside the writer's commits."""

from __future__ import annotations

import threading
import time
from pathlib import Path

from dynpipe.store import checkpoints
from dynpipe.store.metadata import MetadataStore


def test_background_thread_checkpoints_the_wal_without_the_writer(tmp_path: Path) -> None:
    path = tmp_path / "metadata.db"
    md = MetadataStore(path)
    md.write([("CREATE TABLE t (x BLOB)", ())])
    size_before = path.stat().st_size
    writer = threading.get_ident()
    for _ in range(checkpoints.EVERY * 2):  # far below the writer's own threshold in pages
        md.write([("INSERT INTO t (x) VALUES (?)", (bytes(2000),))])
    assert (md.query("PRAGMA wal_autocheckpoint")[0][0]) == checkpoints.SAFETY_NET_PAGES
    deadline = time.monotonic() + 20.0
    while path.stat().st_size <= size_before:  # pages reach the database file only by a checkpoint
        assert time.monotonic() < deadline, "no checkpoint copied the WAL into the database"
        time.sleep(0.02)
    thread = md._checkpoints._thread
    assert thread is not None and thread.ident != writer and thread.is_alive()
    assert md.query("SELECT COUNT(*) FROM t")[0][0] == checkpoints.EVERY * 2
    md.close()
    assert not thread.is_alive()


def test_few_commits_start_no_thread(tmp_path: Path) -> None:
    """A short-lived process (CLI, a reader) never pays for the thread."""
    md = MetadataStore(tmp_path / "metadata.db")
    for _ in range(5):
        md.write([("CREATE TABLE IF NOT EXISTS t (x)", ())])
    assert md._checkpoints._thread is None
    md.close()
