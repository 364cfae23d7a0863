"""A forked child knows its store, its write batch and its id maker are its parent's copies."""

from __future__ import annotations

import os
from pathlib import Path

from dynpipe.store.ids import IdMaker
from dynpipe.store.store import open_store


def test_a_forked_child_marks_its_copies_and_reseeds_its_ids(tmp_path: Path) -> None:
    maker, store = IdMaker(), open_store(tmp_path / "store")
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report, then leave without running the parent's exit hooks
        seen = f"{maker.new()[16:]} {store.forked} {store.metadata._batch.forked}"  # type: ignore[attr-defined]
        os.write(write, seen.encode())
        os._exit(0)
    os.close(write)
    _, status = os.waitpid(pid, 0)
    child_random, child_store, child_batch = os.read(read, 200).decode().split()
    os.close(read)
    assert status == 0
    assert (child_store, child_batch) == ("True", "True")
    assert (store.forked, store.metadata._batch.forked) == (False, False)  # type: ignore[attr-defined]
    # the child's generator was reseeded: its random half is not the parent's next one
    assert child_random != maker.new()[16:]
