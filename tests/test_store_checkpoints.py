"""WAL checkpoints run on a background thread, not inside the writer's commits."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from pathlib import Path

from dynpipe.store import checkpoints
from dynpipe.store.metadata import MetadataStore

REPO = Path(__file__).resolve().parent.parent


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


def test_a_wal_left_big_by_exited_processes_is_truncated_by_the_next_opener(tmp_path: Path) -> None:
    """Processes that exit without closing leave their WAL; the next opener shrinks it off-thread."""
    path = tmp_path / "metadata.db"
    rows = checkpoints.SHRINK_WAL_BYTES // 4000 + 50  # each row fills about a page
    code = f"""
import os, sys
sys.path.insert(0, {str(REPO)!r})
from dynpipe.store.metadata import MetadataStore
md = MetadataStore(__import__("pathlib").Path({str(path)!r}))
md.write([("CREATE TABLE t (x BLOB)", ())])
md.write([("INSERT INTO t (x) VALUES (randomblob(4000))", ()) for _ in range({rows})])
os._exit(0)  # no close: the WAL stays, as after a script that just ends
"""
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
    wal = path.with_name(path.name + "-wal")
    assert wal.stat().st_size > checkpoints.SHRINK_WAL_BYTES
    md = MetadataStore(path)
    deadline = time.monotonic() + 20.0
    while wal.exists() and wal.stat().st_size > 0:
        assert time.monotonic() < deadline, f"the WAL stayed at {wal.stat().st_size} bytes"
        time.sleep(0.02)
    assert md.query("SELECT COUNT(*) FROM t")[0][0] == rows  # nothing lost
    md.write([("INSERT INTO t (x) VALUES (1)", ())])  # and the writer goes on
    md.close()
