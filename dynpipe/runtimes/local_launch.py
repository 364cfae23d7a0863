"""One isolated attempt on the local pool: its result channel and what travels with it.

``LocalLaunch`` is what the engine waits on; the pool's reader thread feeds it log lines
as they arrive and finishes it with the worker's result (or with the reason the worker
died). ``encode_for_worker`` builds the payload once, in the launching thread, so the
pool's lock is never held while pickling.
"""

from __future__ import annotations

import contextvars
import os
import sys
import threading
import time
from typing import TYPE_CHECKING, Any

import cloudpickle

from ..errors import WorkerCrashedError
from .base import Launch, LogCallback
from .logs import relay_line
from .shipping import MaterializerShipment, StepParts, func_ref, plain_parameters
from .task import StepTask, TaskResult
from .worker import STEP_FIELDS, encode_task

if TYPE_CHECKING:
    from .pool import LocalProcessRuntime
    from .worker_process import WorkerProcess

#: Seconds a queued attempt's waiting thread first waits for its end (``wait_started``).
#: With 2 workers and 200 submitted steps the orchestrator's context switches went from
#: ~11-15 to ~8-10 a step; a step's ``running`` status shows at most this much later.
SETTLE = 0.05


class LocalLaunch(Launch):
    """One attempt sent (or queued) to the pool."""

    def __init__(self, pool: LocalProcessRuntime, task: StepTask, payload: bytes, on_line: LogCallback | None) -> None:
        self.pool = pool
        self.invocation_id = task.invocation_id
        self.echo = task.echo_logs and task.capture_logs
        self.payload = payload
        self.on_line = on_line
        self.lines: list[str] = []
        self._worker: WorkerProcess | None = None
        self.started_at: float | None = None  # when a worker was handed the attempt
        self._started = threading.Event()
        self.cancelled = False
        self.memory_limit = task.resources.memory if task.resources is not None else None
        # Echoed lines are written in the launching thread's context, so a notebook kernel
        # shows them under the cell that started the step, not the cell running now.
        self._context = contextvars.copy_context()
        self._event = threading.Event()
        self._result: TaskResult | None = None

    @property
    def worker(self) -> WorkerProcess | None:
        return self._worker

    @worker.setter
    def worker(self, worker: WorkerProcess | None) -> None:
        """The pool hands the attempt to a worker: that is when the attempt starts."""
        self._worker = worker
        if worker is not None and self.started_at is None:
            self.started_at = time.time()
            self._started.set()

    @property
    def where(self) -> str | None:
        """The worker process that has the attempt, for the live DAG."""
        worker = self._worker
        return f"pid {worker.pid}" if worker is not None else None

    def wait_started(self) -> float | None:
        """Block until a worker has the attempt (its start time) or the launch ended (None
        if it ended before any worker took it: cancelled, or the pool could not start one).

        An attempt still queued is first given ``SETTLE`` seconds to end: a short one (most
        of a busy pool's) then wakes its waiting thread once, at its end, not twice (worker
        took it, then done). The start time returned is still the moment a worker took it;
        only its ``running`` status shows at most ``SETTLE`` later.
        """
        if not self._started.is_set():
            self._event.wait(SETTLE)
        self._started.wait()
        return self.started_at

    def result(self, timeout: float | None = None) -> TaskResult:
        if not self._event.wait(timeout):
            raise TimeoutError(f"step {self.invocation_id!r} is still running in a worker process")
        assert self._result is not None
        return self._result

    def done(self) -> bool:
        return self._event.is_set()

    def cancel(self) -> bool:
        return self.pool.cancel_launch(self)

    def add_line(self, line: str) -> None:
        """A log line from the worker: keep it, echo it, tell the observer."""
        self.lines.append(line)
        relay_line(line, self.invocation_id, self.echo, self._context, self.on_line)

    def finish(self, result: TaskResult) -> None:
        if self._event.is_set():
            return
        result.where = result.where or self.where
        self._result = result
        self._event.set()
        if not self._started.is_set():  # mostly set already: a worker took the attempt
            self._started.set()

    def fail(self, message: str) -> None:
        """End the attempt with ``WorkerCrashedError`` (the step's code did not finish)."""
        logs = "".join(line + "\n" for line in self.lines)
        err = WorkerCrashedError(f"step {self.invocation_id!r}: {message}")
        self.finish(
            TaskResult.from_exception(
                err, logs=logs + f"dynpipe: {message}\n", traceback=f"WorkerCrashedError: {err}\n"
            )
        )


class EnvChanges:
    """What changed in ``os.environ`` since the pool started (workers start with that env).

    Asked once per task, so it must be cheap: ``os.environ != dict`` goes through the
    Mapping ABC, decoding every variable in Python (~45 µs a task with 40 variables);
    CPython's ``os.environ._data`` (the raw bytes mapping behind it) compares in C in ~1 µs.
    Where that attribute is missing, the full comparison still gives the right answer.
    """

    def __init__(self) -> None:
        self.base: dict[str, str] = dict(os.environ)
        raw = getattr(os.environ, "_data", None)
        self._raw_base: dict[Any, Any] | None = dict(raw) if isinstance(raw, dict) else None

    def since_start(self) -> tuple[dict[str, str], tuple[str, ...]] | None:
        """(set or changed, removed) variables, or None when the environment is as it was."""
        raw = getattr(os.environ, "_data", None)
        if self._raw_base is not None and raw == self._raw_base:
            return None
        env, base = os.environ, self.base
        if env == base:
            return None
        changed = {k: v for k, v in env.items() if base.get(k) != v}
        return changed, tuple(k for k in base if k not in env)


def encode_for_worker(
    task: StepTask, env_changes: EnvChanges, shipment: MaterializerShipment, step_parts: StepParts
) -> bytes:
    """The task payload: the function by import path when possible, plus what the worker
    must mirror (cwd, environment changes since the pool started, sys.path, materializers),
    and the fields every attempt of the step shares, pickled once (``StepParts``).

    Two layers: the worker applies cwd / sys.path first, then unpickles the task, whose
    references may need exactly that path.
    """
    ref = func_ref(task.func)
    plain = plain_parameters(task.parameters)
    extras: dict[str, Any] = {"cwd": os.getcwd(), "step": step_parts.blob(task)}
    func: Any = ref or task.func
    if ref is None and plain:
        # By value: cloudpickle the function alone and leave the rest of the task to the C
        # pickler (cloudpickle asks about every object of the task: ~15 % more time).
        extras["func"] = cloudpickle.dumps(task.func, protocol=5)
        func = None
    shared: dict[str, Any] = dict.fromkeys(STEP_FIELDS)  # travel in extras["step"], pickled once per step
    sendable = replaced(task, func=func, echo_logs=False, **shared)
    env = env_changes.since_start()
    if env is not None:
        extras["env"] = env
    extras["sys_path"] = list(sys.path)  # small; a worker applies it only when it differs
    mats = shipment.blobs()
    if mats is not None:
        extras["materializers"] = mats
    return encode_task(sendable, extras, plain=plain)


def replaced(task: StepTask, **changes: Any) -> StepTask:
    """A shallow copy of ``task`` with ``changes``: what ``dataclasses.replace`` gives (a
    StepTask has no ``__post_init__``), in a third of its time (it runs ``__init__`` over
    all twenty fields)."""
    copy = object.__new__(StepTask)
    copy.__dict__.update(task.__dict__, **changes)
    return copy


def unsendable(task: StepTask, exc: BaseException) -> TaskResult:
    msg = (
        f"step {task.invocation_id!r} cannot be sent to an isolated worker process:"
        f" {type(exc).__name__}: {exc}. Its function, parameters or configuration must be"
        " picklable (cloudpickle); use runtime='inline' for steps that close over locks,"
        " open files or connections"
    )
    return TaskResult.from_exception(TypeError(msg), traceback=msg + "\n")


def undecodable(launch: LocalLaunch | None, exc: BaseException) -> TaskResult:
    step = f"step {launch.invocation_id!r}: " if launch else ""
    msg = f"{step}the worker's result cannot be read in the orchestrator: {type(exc).__name__}: {exc}"
    logs = "".join(line + "\n" for line in launch.lines) if launch else ""
    return TaskResult.from_exception(RuntimeError(msg), logs=logs, traceback=msg)
