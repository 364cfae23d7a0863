"""Isolated steps on a Dask cluster: one Dask task per step attempt.

Select it with ``DYNPIPE_ISOLATED_BACKEND=dask`` and ``DYNPIPE_DASK_SCHEDULER=tcp://host:8786``,
or hand a ``distributed.Client`` over with ``dynpipe.use_dask(client)``. Inline steps stay in
the kernel. Semantics are the local pool's: the worker reads inputs from and writes outputs
to the artifact store (``run_payload`` -> ``execute_task``), notebook / ``__main__`` steps
travel by value, log lines stream back while the step runs (``dask_worker``), errors of the
step come back as data.

* **Placement** (``dask_placement``): ``DaskSettings`` (``settings={"dask": ...}`` of a step
  or pipeline) gives Dask worker ``resources``, ``workers`` / ``allow_other_workers`` and
  ``priority``; ``ResourceSettings(memory=..., cpu_count=...)`` must fit a worker's
  ``memory_limit`` / ``nthreads`` and restrict the step to the workers that do, ``gpu_count``
  asks for the Dask resource ``GPU``. A step no current worker can take fails before launch.
* **Where**: the worker's start notice (address, host, pid) is the launch's ``where``; the
  step counts as running from it (``wait_started``), so a step waiting for a free worker
  thread stays queued. The worker's result carries it too.
* **Shared store**: before the first launch of a run the workers are asked to read a probe
  file in the store root; workers that cannot (another host, no shared volume) fail the
  step before launch, naming them and the store.
* **Retries are ours**: tasks are submitted with ``retries=0``. When the worker running a
  step dies, the scheduler's ``remove-worker`` event fails the attempt at once with
  ``WorkerCrashedError`` naming the worker (the rerun Dask may have started elsewhere is
  cancelled), and the step's ``retry`` config decides what happens next; a ``KilledWorker``
  from Dask is reported the same way.
* **Cancellation** (FAIL_FAST, Ctrl-C, the notebook's Stop) cancels the future and raises
  ``StepCancelledOnWorker`` in the worker thread running the step.
"""

from __future__ import annotations

import contextvars
import dataclasses
import re
import threading
import time
import uuid
from pathlib import Path
from typing import Any

from .. import settings
from ..errors import WorkerCrashedError
from .base import CompletedLaunch, Launch, LogCallback, StepRuntime
from .dask_client import DASK, EventBridge, where_text
from .dask_placement import ClusterView, Unplaceable
from .dask_worker import can_read, interrupt_step, run_on_dask_worker
from .logs import relay_line
from .shipping import MaterializerShipment, func_ref
from .task import StepTask, TaskResult
from .worker import decode_result, encode_task


def task_key(task: StepTask) -> str:
    """A Dask key unique per attempt that still says which step it is (dashboard friendly)."""
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "-", task.invocation_id)[:40].strip("-") or "step"
    return f"dynpipe-{slug}-{task.step_run_id[:12]}-a{task.attempt}"


def _failed(task: StepTask, message: str, logs: str = "", error_type: str = "DaskRuntimeError") -> TaskResult:
    msg = f"step {task.invocation_id!r}: {message}"
    return TaskResult.from_exception(
        RuntimeError(msg), logs=logs + f"dynpipe: {message}\n", error_type=error_type, traceback=msg + "\n"
    )


class DaskLaunch(Launch):
    """One attempt submitted as a Dask task; the client's event thread feeds it lines."""

    def __init__(self, runtime: DaskRuntime, task: StepTask, key: str, on_line: LogCallback | None) -> None:
        self.runtime = runtime
        self.task = task
        self.key = key
        self.on_line = on_line
        self.echo = task.echo_logs and task.capture_logs
        self.lines: list[str] = []
        self.worker: str | None = None
        #: The worker as the live DAG names it (address, host, pid), once its start notice came.
        self.where: str | None = None
        self.started_at: float | None = None
        self.future: Any = None
        self._died: str | None = None
        self._cancelled = False
        self._lock = threading.Lock()
        self._event = threading.Event()
        self._started = threading.Event()
        self._result: TaskResult | None = None
        # Echoed lines are written in the launching thread's context, so a notebook kernel
        # shows them under the cell that started the step.
        self._context = contextvars.copy_context()

    # -- called by the engine ------------------------------------------------------------
    def wait_started(self) -> float | None:
        """Block until a worker thread has the task (when its start notice arrived) or the
        launch ended: a step waiting for a free worker thread is still queued, not running."""
        self._started.wait()
        return self.started_at

    def result(self, timeout: float | None = None) -> TaskResult:
        if not self._event.wait(timeout):
            raise TimeoutError(f"step {self.task.invocation_id!r} is still running as Dask task {self.key}")
        with self._lock:
            if self._result is None:
                self._result = self._collect()
                self._result.where = self._result.where or self.where
            return self._result

    def done(self) -> bool:
        return self._event.is_set()

    def cancel(self) -> bool:
        with self._lock:
            if self._event.is_set():
                return False
            self._cancelled = True
            self._end()
        self._stop_remote()
        return True

    # -- called by the event bridge (the client's event loop: never block) ---------------
    def add_line(self, line: str) -> None:
        self.lines.append(line)
        relay_line(line, self.task.invocation_id, self.echo, self._context, self.on_line)

    def started_on(self, worker: str, where: str) -> None:
        if self.worker is not None and worker != self.worker:
            # Started a second time: its first worker died and Dask rescheduled it, though
            # the scheduler's remove-worker event did not reach us first.
            self.worker_died(self.worker)
            return
        self.worker, self.where = worker, where
        if self.started_at is None:
            self.started_at = time.time()
        self._started.set()

    def worker_died(self, worker: str) -> None:
        """The scheduler removed ``worker`` while it was processing this task.

        Its start notice may still have been in the dead worker's send buffer, so a task that
        was processing there counts as started there unless it is known to run elsewhere.
        """
        if self._event.is_set() or (self.worker is not None and worker != self.worker):
            return
        self._died = worker
        self.where = self.where or where_text(worker)
        self._end()

    def _end(self) -> None:
        self._event.set()
        self._started.set()

    # -- internals -----------------------------------------------------------------------
    def _logs(self) -> str:
        return "".join(line + "\n" for line in self.lines)

    def _stop_remote(self) -> None:
        """Cancel the future and interrupt the thread running it (wherever it runs now)."""
        client = self.runtime.client
        try:
            client.run(interrupt_step, self.key, on_error="ignore")
        except Exception:  # noqa: BLE001 - the cluster may be gone; nothing left to stop
            pass
        try:
            if self.future is not None:
                self.future.cancel()
        except Exception:  # noqa: BLE001
            pass

    def _collect(self) -> TaskResult:
        """Lock held: the attempt's result, from the future or from why it ended early."""
        self.runtime.bridge.forget(self.key)
        if self._cancelled:
            return _failed(self.task, f"Dask task {self.key} was cancelled", self._logs(), "WorkerCrashedError")
        if self._died is not None:
            self._stop_remote()
            return self._crashed(self._died)
        future = self.future
        try:
            if future.status == "finished":
                return decode_result(future.result())
            if future.status == "cancelled":
                return _failed(self.task, f"Dask task {self.key} was cancelled on the cluster", self._logs())
            exc = future.exception()
        except Exception as err:  # noqa: BLE001 - e.g. the client lost the scheduler
            exc = err
        last_worker = getattr(exc, "last_worker", None)
        if type(exc).__name__ == "KilledWorker":
            address = getattr(last_worker, "address", None) or self.worker or "unknown"
            return self._crashed(str(address), f" (Dask: {exc})")
        return _failed(
            self.task, f"Dask task {self.key} failed outside the step: {type(exc).__name__}: {exc}", self._logs()
        )

    def _crashed(self, worker: str, detail: str = "") -> TaskResult:
        message = (
            f"the Dask worker {worker} running it died{detail}; the attempt failed"
            " (the step's retry configuration decides whether it runs again)"
        )
        err = WorkerCrashedError(f"step {self.task.invocation_id!r}: {message}")
        return TaskResult.from_exception(
            err, logs=self._logs() + f"dynpipe: {message}\n", traceback=f"WorkerCrashedError: {err}\n"
        )


class DaskRuntime(StepRuntime):
    """Runs isolated step attempts as tasks on a Dask cluster (``distributed.Client``)."""

    name = "isolated"

    def __init__(self, client: Any = None) -> None:
        self.client = client if client is not None else DASK.client()
        self.bridge: EventBridge = DASK.bridge(self.client)
        self._shipment = MaterializerShipment()
        self._lock = threading.Lock()
        self._stores_seen: set[str] = set()
        self.cluster = ClusterView(self.client, self.bridge)

    def launch(self, task: StepTask, on_log_line: LogCallback | None = None) -> Launch:
        try:
            self._check_store(task)
            options = self.cluster.submit_options(task)
            payload = self._encode(task)
        except (_BeforeLaunch, Unplaceable) as exc:
            return CompletedLaunch(_failed(task, str(exc)))
        except Exception as exc:  # noqa: BLE001 - one step fails with a clear reason
            return CompletedLaunch(_failed(task, f"cannot submit to Dask: {type(exc).__name__}: {exc}"))
        key = task_key(task)
        launch = DaskLaunch(self, task, key, on_log_line)
        self.bridge.watch(key, launch)
        try:
            future = self.client.submit(run_on_dask_worker, payload, key, key=key, **options)
        except Exception as exc:  # noqa: BLE001
            self.bridge.forget(key)
            return CompletedLaunch(_failed(task, f"cannot submit to Dask: {type(exc).__name__}: {exc}"))
        launch.future = future
        future.add_done_callback(lambda _f: launch._end())
        return launch

    def _encode(self, task: StepTask) -> bytes:
        """The local pool's payload, minus what a shared Dask worker must not mirror (cwd,
        environment, sys.path) and the local resource limits (Dask resources place it instead)."""
        ref = func_ref(task.func)
        sendable = dataclasses.replace(task, func=ref or task.func, echo_logs=False, resources=None, dask=None)
        extras: dict[str, Any] = {}
        mats = self._shipment.blobs()
        if mats is not None:
            extras["materializers"] = mats
        try:
            return encode_task(sendable, extras)
        except Exception as exc:
            raise _BeforeLaunch(
                f"cannot be sent to a Dask worker: {type(exc).__name__}: {exc}. Its function, parameters"
                " or configuration must be picklable (cloudpickle); use runtime='inline' for steps that"
                " close over locks, open files or connections"
            ) from exc

    def _check_store(self, task: StepTask) -> None:
        """Once per store root: every worker must see the store at the same path."""
        root = task.store_root
        artifact_url = settings.text("DYNPIPE_ARTIFACT_STORE") or ""
        if root in self._stores_seen or ("://" in artifact_url and not artifact_url.startswith("file://")):
            return
        token = uuid.uuid4().hex
        probe = Path(root) / f".dask-probe-{token}"
        probe.write_text(token, encoding="ascii")
        try:
            seen: dict[str, bool] = self.client.run(can_read, str(probe), token)
        finally:
            probe.unlink(missing_ok=True)
        blind = sorted(addr for addr, ok in seen.items() if not ok)
        if blind:
            raise _BeforeLaunch(
                f"the Dask worker(s) {', '.join(blind)} cannot read the artifact store at {root}:"
                " a cluster on other hosts needs the store on a volume mounted at the same path"
                " (or a remote artifact store, DYNPIPE_ARTIFACT_STORE)"
            )
        with self._lock:
            self._stores_seen.add(root)


class _BeforeLaunch(Exception):
    """A reason the step cannot go to the cluster at all (its message is the user's)."""
