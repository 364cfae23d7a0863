"""What runs inside a Dask worker: one step attempt, its live log lines, and stopping it.

The task payload is the local pool's (``encode_task``), run by the same ``run_payload`` ->
``execute_task``, so inputs are read from and outputs written to the artifact store by the
worker, exactly as in a local worker process. Only materializers are mirrored: a Dask
worker is shared by many tasks (and maybe hosts), so the orchestrator's cwd, environment
and ``sys.path`` are not imposed on it.

Log lines travel as Dask events (``Worker.log_event``): they reuse the worker's existing
connection to the scheduler, need no plugin installed on the cluster and no extra port, and
the client routes them by task key. ``Client.forward_logging`` would only carry ``logging``
records (not prints), and without the step's name.
"""

from __future__ import annotations

import ctypes
import os
import socket
from typing import Any

from .dask_client import LOG_TOPIC, where_text
from .logs import attach_log_capture
from .task import TaskResult
from .worker import _Mirror, encode_result, run_payload


class StepCancelledOnWorker(BaseException):
    """Raised inside a step's thread on a Dask worker when the orchestrator cancels it.

    A BaseException so the step's own ``except Exception`` does not swallow it.
    """


def run_on_dask_worker(payload: bytes, key: str) -> bytes:
    """The Dask task of one step attempt; returns an encoded ``TaskResult``, never raises for the step."""
    from distributed import get_worker  # deferred: only a Dask worker runs this

    worker = get_worker()
    if not getattr(worker, "_dynpipe_log_capture", False):
        # Once per worker process: ``logging`` records of steps go to their step's log.
        attach_log_capture()
        worker._dynpipe_log_capture = True  # type: ignore[attr-defined]
    cancelled: set[str] = worker.__dict__.setdefault("_dynpipe_cancelled", set())
    if key in cancelled:  # cancelled before this thread started: do not run the step at all
        cancelled.discard(key)
        return encode_result(TaskResult.from_exception(StepCancelledOnWorker(f"Dask task {key} was cancelled")))
    host, pid = socket.gethostname(), os.getpid()
    worker.log_event(LOG_TOPIC, {"key": key, "start": worker.address, "host": host, "pid": pid})

    def on_line(line: str) -> None:
        worker.log_event(LOG_TOPIC, {"key": key, "line": line})

    result = run_payload(payload, on_line, _Mirror())
    result.where = where_text(worker.address, host, pid)  # also known when the start notice was late
    return encode_result(result)


def interrupt_step(key: str, dask_worker: Any = None) -> bool:
    """Raise ``StepCancelledOnWorker`` in the worker thread running ``key`` (``Client.run`` target).

    Dask cannot stop a running task; without this a cancelled step would keep its worker's
    thread busy to its end. A step blocked in C code (a long ``sleep``, a socket read) stops
    at its next Python instruction.
    """
    if dask_worker is None:
        return False
    for ident, running in list(dask_worker.active_threads.items()):
        if running == key:
            done = ctypes.pythonapi.PyThreadState_SetAsyncExc(
                ctypes.c_ulong(ident), ctypes.py_object(StepCancelledOnWorker)
            )
            return bool(done == 1)
    # Not running here (yet): a rerun Dask schedules after a worker death must not start it.
    cancelled: set[str] = dask_worker.__dict__.setdefault("_dynpipe_cancelled", set())
    if len(cancelled) > 10_000:
        cancelled.clear()
    cancelled.add(key)
    return False


def can_read(path: str, token: str) -> bool:
    """``Client.run`` target: does this worker see the orchestrator's store (the probe file)?"""
    try:
        with open(path, encoding="ascii") as fh:
            return fh.read() == token
    except OSError:
        return False
