"""The orchestrator reads a worker's messages in chunks: every frame comes out whole and in
order, whatever sizes arrive together (several small ones in one read, a large one over many)."""

from __future__ import annotations

import socket
import threading
from multiprocessing.connection import Connection

import pytest

from dynpipe.runtimes.worker_process import FrameReader


def test_frames_come_out_whole_and_in_order_and_the_end_raises_eof() -> None:
    left, right = socket.socketpair()
    sender = Connection(left.detach())
    reader = FrameReader(right.fileno())
    sizes = [0, 1, 5, 4, 100, 70_000, 3, 300_000, 12, 65_536, 65_532]
    messages = [bytes([i % 251]) * size for i, size in enumerate(sizes * 5)]
    thread = threading.Thread(target=lambda: [sender.send_bytes(m) for m in messages])
    thread.start()
    received: list[bytes] = []
    while len(received) < len(messages):
        received += reader.read()
    thread.join(timeout=10)
    assert received == messages
    sender.close()
    with pytest.raises(EOFError):
        reader.read()
    right.close()
