"""Isolated steps on this machine: a warm pool of worker processes.

Workers are ``python -m dynpipe.runtimes.worker`` subprocesses, each talking to the
orchestrator over its own socket pair. A subprocess (not multiprocessing's spawn or
forkserver) because those re-run the user's main script in every worker unless it
has an ``if __name__ == "__main__"`` guard; functions from ``__main__`` or a notebook
travel by value with cloudpickle instead, importable ones by import path.

The pool starts lazily on the first isolated step, is shared by every run of the
process (``shared_local_runtime()``) and holds ``DYNPIPE_WORKERS`` workers (default:
CPU count). Per worker, one reader thread in the orchestrator streams log lines to
the engine as they arrive and notices the worker's death at once (socket EOF or its
pidfd): the step running there gets a ``WorkerCrashedError`` naming the signal or
exit code and a fresh worker takes the slot. ``cancel()`` SIGKILLs the worker's
process group. Workers die with the orchestrator: ``PR_SET_PDEATHSIG`` (set by the
worker against the long-lived spawner thread that started it) and an ``atexit``
shutdown.
"""

from __future__ import annotations

from .. import settings

from ..errors import WorkerCrashedError  # noqa: F401 - re-exported for existing imports

import atexit
import collections
import contextvars
import dataclasses
import os
import select
import signal
import socket
import subprocess
import sys
import threading
import time
from multiprocessing.connection import Connection
from typing import Any

from .base import CompletedLaunch, Launch, LogCallback, StepRuntime
from .task import StepTask, TaskResult
from .shipping import custom_materializers, func_ref
from .worker import HELLO, LINE, QUIT, RESULT, TASK, decode_result, encode_task

_MAX_START_FAILURES = 3



def pool_size_from_env() -> int:
    return settings.local_workers()


def describe_exit(returncode: int | None, memory_limit: str | None = None) -> str:
    """Why a worker died, in words; with a memory limit set, say that it may be the cause."""
    if returncode is None:
        return "worker process stopped answering"
    if memory_limit:
        hint = f" (the step ran under a memory limit of {memory_limit}: running out of it can end a process this way)"
    elif returncode == -signal.SIGKILL:
        hint = " (out of memory? the kernel's OOM killer sends SIGKILL)"
    else:
        hint = ""
    if returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = f"signal {-returncode}"
        return f"worker process killed by {name}{hint}"
    return f"worker process exited with code {returncode}{hint}"


class LocalLaunch(Launch):
    """One attempt sent (or queued) to the pool."""

    def __init__(self, pool: LocalProcessRuntime, task: StepTask, payload: bytes, on_line: LogCallback | None) -> None:
        self.pool = pool
        self.invocation_id = task.invocation_id
        self.echo = task.echo_logs and task.capture_logs
        self.payload = payload
        self.on_line = on_line
        self.lines: list[str] = []
        self.worker: _Worker | None = None
        self.cancelled = False
        self.memory_limit = task.resources.memory if task.resources is not None else None
        # Echoed lines are written in the launching thread's context, so a notebook kernel
        # shows them under the cell that started the step, not the cell running now.
        self._context = contextvars.copy_context()
        self._event = threading.Event()
        self._result: TaskResult | None = None

    def result(self, timeout: float | None = None) -> TaskResult:
        if not self._event.wait(timeout):
            raise TimeoutError(f"step {self.invocation_id!r} is still running in a worker process")
        assert self._result is not None
        return self._result

    def done(self) -> bool:
        return self._event.is_set()

    def cancel(self) -> bool:
        return self.pool._cancel(self)

    def _line(self, line: str) -> None:
        self.lines.append(line)
        if self.echo:
            text = f"[{self.invocation_id}] {line}\n"
            try:
                try:
                    self._context.run(sys.stdout.write, text)
                except RuntimeError:  # the context is busy elsewhere: write it here instead
                    sys.stdout.write(text)
            except (ValueError, OSError):
                pass
        if self.on_line is not None:
            try:
                self.on_line(line)
            except Exception:  # noqa: BLE001 - an observer must never break the step
                pass

    def _finish(self, result: TaskResult) -> None:
        if self._event.is_set():
            return
        self._result = result
        self._event.set()

    def _fail(self, message: str) -> None:
        logs = "".join(line + "\n" for line in self.lines)
        err = WorkerCrashedError(f"step {self.invocation_id!r}: {message}")
        self._finish(
            TaskResult(
                logs=logs + f"dynpipe: {message}\n",
                error=err,
                error_type="WorkerCrashedError",
                error_message=str(err),
                traceback=f"WorkerCrashedError: {err}\n",
            )
        )


class _Worker:
    """One worker process and the orchestrator's end of its socket."""

    __slots__ = ("proc", "conn", "slot", "launch", "ready", "pidfd", "killed")

    def __init__(self, proc: subprocess.Popen[bytes], conn: Connection, slot: int) -> None:
        self.proc = proc
        self.conn = conn
        self.slot = slot
        self.launch: LocalLaunch | None = None
        self.ready = False
        self.killed = False
        self.pidfd: int | None = None
        if hasattr(os, "pidfd_open"):
            try:
                self.pidfd = os.pidfd_open(proc.pid)
            except OSError:
                self.pidfd = None

    @property
    def pid(self) -> int:
        return self.proc.pid

    def kill(self) -> None:
        """SIGKILL the worker and whatever the step started in its process group."""
        self.killed = True
        for fn in (lambda: os.killpg(self.proc.pid, signal.SIGKILL), lambda: os.kill(self.proc.pid, signal.SIGKILL)):
            try:
                fn()
                return
            except (ProcessLookupError, PermissionError):
                continue


class LocalProcessRuntime(StepRuntime):
    """A warm pool of local worker processes; one attempt per worker at a time."""

    name = "isolated"

    def __init__(self, size: int | None = None, python: str | None = None) -> None:
        self.size = size or pool_size_from_env()
        self.python = python or sys.executable
        self._lock = threading.Lock()
        self._idle: list[_Worker] = []
        self._workers: set[_Worker] = set()
        self._starting = 0
        self._queue: collections.deque[LocalLaunch] = collections.deque()
        self._spawn_requests: collections.deque[int] = collections.deque()
        self._spawn_wake = threading.Condition(self._lock)
        self._spawner: threading.Thread | None = None
        self._closed = False
        self._start_failures = 0
        self._last_start_error = ""
        self._free_slots: list[int] = []
        self._next_slot = 0
        self._base_env = dict(os.environ)
        self.started_at: float | None = None

    # -- public ------------------------------------------------------------------------
    def launch(self, task: StepTask, on_log_line: LogCallback | None = None) -> Launch:
        try:
            payload = self._encode(task)
        except Exception as exc:  # noqa: BLE001 - a clear error for this step only
            return CompletedLaunch(_unsendable(task, exc))
        launch = LocalLaunch(self, task, payload, on_log_line)
        with self._lock:
            if self._closed:
                launch._fail("the isolated worker pool is shut down (the process is exiting)")
                return launch
            self._ensure_started()
            worker = self._idle.pop() if self._idle else None
            if worker is None:
                self._queue.append(launch)
            else:
                worker.launch = launch
                launch.worker = worker
        if worker is not None:
            self._send(worker, launch)
        return launch

    def resize(self, size: int) -> None:
        """Grow now; shrink as workers become idle."""
        with self._lock:
            self.size = size
            if self.started_at is not None:
                self._top_up()
            while len(self._workers) + self._starting > self.size and self._idle:
                self._retire(self._idle.pop())

    def warm_up(self, timeout: float = 60.0) -> float:
        """Start the pool now and wait until every worker is ready; returns seconds taken."""
        t0 = time.perf_counter()
        with self._lock:
            self._ensure_started()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                ready = sum(1 for w in self._workers if w.ready)
                if ready >= self.size:
                    break
            time.sleep(0.002)
        return time.perf_counter() - t0

    def worker_pids(self) -> list[int]:
        with self._lock:
            return [w.pid for w in self._workers]

    def shutdown(self) -> None:
        """Stop every worker now; queued and running attempts fail with a clear reason."""
        with self._lock:
            self._closed = True
            workers = list(self._workers)
            queued = list(self._queue)
            self._queue.clear()
            self._idle.clear()
            self._spawn_wake.notify_all()
        for launch in queued:
            launch._fail("the isolated worker pool was shut down before the step started")
        for w in workers:
            if w.launch is None:
                try:
                    w.conn.send_bytes(QUIT)
                except OSError:
                    pass
            w.kill()
        for w in workers:
            try:
                w.proc.wait(timeout=2)
            except subprocess.TimeoutExpired:
                pass

    # -- pool internals (call with self._lock held unless noted) -------------------------
    def _ensure_started(self) -> None:
        if self._spawner is None:
            self.started_at = time.perf_counter()
            self._spawner = threading.Thread(target=self._spawn_loop, name="dynpipe-worker-spawner", daemon=True)
            self._spawner.start()
        self._top_up()

    def _top_up(self) -> None:
        missing = self.size - len(self._workers) - self._starting
        for _ in range(max(0, missing)):
            self._starting += 1
            self._spawn_requests.append(self._take_slot())
        if missing > 0:
            self._spawn_wake.notify_all()

    def _take_slot(self) -> int:
        if self._free_slots:
            return self._free_slots.pop()
        self._next_slot += 1
        return self._next_slot - 1

    def _spawn_loop(self) -> None:
        """The only thread that starts workers: PR_SET_PDEATHSIG follows the thread that forked."""
        while True:
            with self._lock:
                while not self._spawn_requests and not self._closed:
                    self._spawn_wake.wait()
                if self._closed:
                    return
                slot = self._spawn_requests.popleft()
            try:
                worker = self._spawn(slot)
            except Exception as exc:  # noqa: BLE001 - e.g. out of file descriptors
                with self._lock:
                    self._starting -= 1
                    self._free_slots.append(slot)
                    self._start_failed(f"cannot start a worker process: {exc}")
                continue
            with self._lock:
                self._starting -= 1
                if self._closed:
                    worker.kill()
                    continue
                self._workers.add(worker)
            threading.Thread(
                target=self._read_loop, args=(worker,), name=f"dynpipe-worker-{worker.pid}", daemon=True
            ).start()

    def _spawn(self, slot: int) -> _Worker:
        parent_sock, child_sock = socket.socketpair()
        try:
            child_fd = child_sock.fileno()
            env = dict(self._base_env)
            env.setdefault("PYTHONUNBUFFERED", "1")
            home = _package_parent()
            if home is not None:  # dynpipe imported from a source tree via sys.path
                env["PYTHONPATH"] = os.pathsep.join(p for p in (home, env.get("PYTHONPATH")) if p)
            proc = subprocess.Popen(
                [
                    self.python, "-m", "dynpipe.runtimes.worker",
                    "--fd", str(child_fd), "--parent", str(os.getpid()), "--slot", str(slot),
                ],
                pass_fds=(child_fd,),
                stdin=subprocess.DEVNULL,
                env=env,
                cwd=os.getcwd(),
                start_new_session=True,  # Ctrl-C reaches the orchestrator only; it decides
            )
        finally:
            child_sock.close()
        conn = Connection(parent_sock.detach())
        return _Worker(proc, conn, slot)

    def _read_loop(self, w: _Worker) -> None:
        """Per worker: deliver log lines and results; detect death at once."""
        conn = w.conn
        poller = None
        if w.pidfd is not None:
            poller = select.poll()  # not select(): file descriptors past 1024 are common in kernels
            poller.register(conn.fileno(), select.POLLIN)
            poller.register(w.pidfd, select.POLLIN)
        try:
            while True:
                if poller is not None:
                    ready = {fd for fd, _ in poller.poll()}
                    if conn.fileno() not in ready:  # the process is gone: drain, then stop
                        while conn.poll(0):
                            self._handle(w, conn.recv_bytes())
                        break
                self._handle(w, conn.recv_bytes())
        except (EOFError, OSError, ValueError):
            pass
        self._on_death(w)

    def _handle(self, w: _Worker, msg: bytes) -> None:
        kind, body = msg[:1], msg[1:]
        if kind == LINE:
            launch = w.launch
            if launch is not None:
                launch._line(body.decode("utf-8", "replace"))
        elif kind == RESULT:
            try:
                result = decode_result(body)
            except Exception as exc:  # noqa: BLE001 - e.g. a class that only exists in the worker
                result = _undecodable(w.launch, exc)
            with self._lock:
                launch, w.launch = w.launch, None
            if launch is not None:
                launch._finish(result)
            self._worker_free(w)
        elif kind == HELLO:
            with self._lock:
                w.ready = True
                self._start_failures = 0
            self._worker_free(w)

    def _worker_free(self, w: _Worker) -> None:
        """Give a ready worker the next queued attempt, or park it (or retire it if over size)."""
        with self._lock:
            if self._closed or w.killed:
                return
            if self._queue:
                launch = self._queue.popleft()
                w.launch = launch
                launch.worker = w
            elif len(self._workers) + self._starting > self.size:
                self._retire(w)
                return
            else:
                self._idle.append(w)
                return
        self._send(w, launch)

    def _retire(self, w: _Worker) -> None:
        self._workers.discard(w)
        w.killed = True
        try:
            w.conn.send_bytes(QUIT)
        except OSError:
            w.kill()

    def _send(self, w: _Worker, launch: LocalLaunch) -> None:
        if launch.cancelled:
            w.kill()
            return
        try:
            w.conn.send_bytes(TASK + launch.payload)
        except OSError:
            w.kill()  # the reader thread sees the death and fails this launch
        launch.payload = b""

    def _on_death(self, w: _Worker) -> None:
        try:
            os.killpg(w.proc.pid, signal.SIGKILL)  # children the step left behind
        except (ProcessLookupError, PermissionError):
            pass
        try:
            returncode: int | None = w.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            w.kill()
            returncode = None
        for fd_close in (w.conn.close, lambda: os.close(w.pidfd) if w.pidfd is not None else None):
            try:
                fd_close()
            except OSError:
                pass
        with self._lock:
            was_member = w in self._workers
            self._workers.discard(w)
            if w in self._idle:
                self._idle.remove(w)
            launch, w.launch = w.launch, None
            self._free_slots.append(w.slot)
            if not w.ready and not w.killed:
                self._start_failed(f"a worker process failed to start ({describe_exit(returncode)})")
            elif not self._closed and was_member:
                self._top_up()
        if launch is not None:
            if launch.cancelled:
                reason = "the step was cancelled: its worker process was killed"
            else:
                reason = describe_exit(returncode, launch.memory_limit)
            launch._fail(reason)

    def _start_failed(self, message: str) -> None:
        """Lock held. Retry a few times, then fail waiting attempts instead of hanging."""
        self._start_failures += 1
        self._last_start_error = message
        if self._closed:
            return
        if self._start_failures < _MAX_START_FAILURES:
            self._top_up()
            return
        if self._workers or self._starting:
            return  # others may still come up and serve the queue
        queued = list(self._queue)
        self._queue.clear()
        self._start_failures = 0  # the next launch tries again
        for launch in queued:
            threading.Thread(target=launch._fail, args=(message + "; see the process's stderr",), daemon=True).start()

    def _cancel(self, launch: LocalLaunch) -> bool:
        with self._lock:
            if launch.done():
                return False
            launch.cancelled = True
            if launch in self._queue:
                self._queue.remove(launch)
                worker = None
                queued = True
            else:
                worker = launch.worker
                queued = False
        if queued:
            launch._fail("cancelled before a worker process picked it up")
            return True
        if worker is not None:
            worker.kill()
        return True

    # -- encoding --------------------------------------------------------------------------
    def _encode(self, task: StepTask) -> bytes:
        ref = func_ref(task.func)
        sendable = dataclasses.replace(task, func=ref or task.func, echo_logs=False)
        extras: dict[str, Any] = {"cwd": os.getcwd()}
        env = os.environ
        if env != self._base_env:
            changed = {k: v for k, v in env.items() if self._base_env.get(k) != v}
            removed = tuple(k for k in self._base_env if k not in env)
            extras["env"] = (changed, removed)
        extras["sys_path"] = list(sys.path)  # small; a worker applies it only when it differs
        mats = custom_materializers()
        if mats is not None:
            extras["materializers"] = mats
        # Two layers: the worker applies cwd / sys.path first, then unpickles the task,
        # whose references may need exactly that path.
        return encode_task(sendable, extras)


def _package_parent() -> str | None:
    """The folder holding the dynpipe package, unless it is a site directory already."""
    here = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    if os.path.basename(here) in ("site-packages", "dist-packages"):
        return None
    return here


def _unsendable(task: StepTask, exc: BaseException) -> TaskResult:
    msg = (
        f"step {task.invocation_id!r} cannot be sent to an isolated worker process:"
        f" {type(exc).__name__}: {exc}. Its function, parameters or configuration must be"
        " picklable (cloudpickle); use runtime='inline' for steps that close over locks,"
        " open files or connections"
    )
    err = TypeError(msg)
    return TaskResult(error=err, error_type="TypeError", error_message=msg, traceback=msg + "\n")


def _undecodable(launch: LocalLaunch | None, exc: BaseException) -> TaskResult:
    step = f"step {launch.invocation_id!r}: " if launch else ""
    msg = f"{step}the worker's result cannot be read in the orchestrator: {type(exc).__name__}: {exc}"
    logs = "".join(line + "\n" for line in launch.lines) if launch else ""
    return TaskResult(logs=logs, error=RuntimeError(msg), error_type="RuntimeError", error_message=msg, traceback=msg)


# -- the process-wide pool ---------------------------------------------------------------------

_shared: LocalProcessRuntime | None = None
_shared_lock = threading.Lock()


def shared_local_runtime() -> LocalProcessRuntime:
    """The process-wide pool (created lazily; its workers start on the first isolated step).

    A changed ``DYNPIPE_WORKERS`` resizes it.
    """
    global _shared
    size = pool_size_from_env()
    with _shared_lock:
        if _shared is None or _shared._closed:
            _shared = LocalProcessRuntime(size)
            return _shared
        rt = _shared
    if rt.size != size:
        rt.resize(size)
    return rt


def shutdown_shared_runtime() -> None:
    global _shared
    with _shared_lock:
        rt, _shared = _shared, None
    if rt is not None:
        rt.shutdown()


def _forget_after_fork() -> None:
    """A forked child must not use (or kill) its parent's workers."""
    global _shared, _shared_lock
    _shared = None
    _shared_lock = threading.Lock()


atexit.register(shutdown_shared_runtime)
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_after_fork)

__all__ = [
    "LocalLaunch",
    "LocalProcessRuntime",
    "WorkerCrashedError",
    "describe_exit",
    "shared_local_runtime",
    "shutdown_shared_runtime",
]
