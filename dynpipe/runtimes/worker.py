"""The worker entry point: ``python -m dynpipe.runtimes.worker``.

Two modes, one code path (``run_payload`` -> ``execute_task``):

* ``--fd N --parent PID`` (local pool): a warm worker serving tasks over a socket
  inherited from the orchestrator. Frames (``multiprocessing.connection`` framing):
  orchestrator -> worker ``T`` + task payload, ``Q`` quit; worker -> orchestrator
  ``H`` ready, ``L`` + one log line (live), ``R`` + result payload.
* ``--task URL [--result URL]`` (one pod per step, Kubernetes): read one task payload
  from a path, an fsspec URL or the Job's env (``env:NAME``), run it writing to the artifact
  store only, write a JSON report (``--result``, default ``URL.result``), echo log lines to
  stdout: the orchestrator follows them.

A task payload is ``pickle((extras, pickled StepTask))`` (``encode_task``):
``extras`` carries what the worker must mirror from the orchestrator (cwd, environment
changes, sys.path, custom materializers) and is applied before the task is unpickled,
because the task's references may need that sys.path; from the local pool it also carries
the fields every attempt of the step shares (``STEP_FIELDS``, pickled once per step) and a
function that travels by value, cloudpickled apart from the task (``func``). The task is
cloudpickled, or pickled by the C pickler when it holds only plain data and
dynpipe's classes. A result payload is ``pickle((pickled TaskResult without error, pickled
error or None))``: an exception that cannot travel is dropped and the orchestrator raises
from its type, message and traceback instead.
"""

from __future__ import annotations

import argparse
import ctypes
import importlib
import os
import pickle
import select
import signal
import sys
import threading
import time
from dataclasses import dataclass, replace
from typing import Any

import cloudpickle

from .logs import attach_log_capture
from .resources import applied_resources
from .task import StepTask, TaskResult, execute_task, with_inline_inputs

TASK = b"T"
QUIT = b"Q"
HELLO = b"H"
LINE = b"L"
RESULT = b"R"

PR_SET_PDEATHSIG = 1

#: StepTask fields every attempt of a step in one run shares (the very same objects): the
#: local pool sends them apart, pickled once per step (``shipping.StepParts``).
STEP_FIELDS = ("input_annotations", "outputs", "materializers", "resources", "settings", "dask")


@dataclass(frozen=True)
class FuncRef:
    """A step function that travels by import path (its module is importable)."""

    module: str
    qualname: str

    def resolve(self) -> Any:
        obj: Any = importlib.import_module(self.module)
        for part in self.qualname.split("."):
            obj = getattr(obj, part)
        return getattr(obj, "entrypoint", obj)  # a Step: its plain function


def _kill_own_group() -> None:
    """SIGKILL this worker's process group: the worker and everything its steps started."""
    try:
        os.killpg(os.getpgrp(), signal.SIGKILL)
    except OSError:
        os._exit(1)


def die_with_parent(parent_pid: int) -> None:
    """Take the whole process group down when the orchestrator goes away (no orphans).

    Two independent paths, because either alone can be blocked: ``PR_SET_PDEATHSIG``
    asks Linux for SIGTERM when the orchestrator dies, and the handler kills the group;
    a watchdog thread waits on the orchestrator's pidfd (or polls the parent pid) and
    does the same even if the step replaced the SIGTERM handler. SIGTERM rather than
    SIGKILL: a SIGKILLed worker could not kill the ``sleep`` or server its step started.
    What cannot be cleaned: processes a step moved into their own session or group
    (``setsid``, ``start_new_session=True``), and nothing runs while a C extension holds
    the GIL without releasing it (the group then goes when it does).
    """
    signal.signal(signal.SIGTERM, lambda *_: _kill_own_group())
    signal.signal(signal.SIGHUP, lambda *_: _kill_own_group())
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
        except (OSError, AttributeError):
            pass
    if parent_pid and os.getppid() != parent_pid:
        _kill_own_group()  # the parent died before prctl took effect
    if parent_pid:
        threading.Thread(target=_watch_parent, args=(parent_pid,), name="dynpipe-parent-watch", daemon=True).start()


def _watch_parent(parent_pid: int) -> None:
    pidfd: int | None = None
    if hasattr(os, "pidfd_open"):
        try:
            pidfd = os.pidfd_open(parent_pid)
        except OSError:
            pidfd = None
    if pidfd is not None:
        poller = select.poll()
        poller.register(pidfd, select.POLLIN)
        while not poller.poll():
            pass
    else:
        while os.getppid() == parent_pid:
            time.sleep(0.5)
    _kill_own_group()


class _Mirror:
    """Keeps this worker's cwd / environment / sys.path in step with the orchestrator."""

    def __init__(self) -> None:
        self.base_env = dict(os.environ)
        self.applied: tuple[dict[str, str], tuple[str, ...]] = ({}, ())
        self._step_parts: dict[bytes, tuple[Any, ...]] = {}
        self.materializers: list[bytes] = []  # the registrations applied last (pickles)

    def step_parts(self, blob: bytes) -> tuple[Any, ...]:
        """A step's shared task fields, unpickled once per step (read-only for tasks)."""
        parts = self._step_parts.get(blob)
        if parts is None:
            if len(self._step_parts) >= 64:
                self._step_parts.clear()
            parts = self._step_parts[blob] = tuple(cloudpickle.loads(blob))
        return parts

    def apply(self, extras: dict[str, Any]) -> None:
        cwd = extras.get("cwd")
        if cwd and cwd != os.getcwd():
            try:
                os.chdir(cwd)
            except OSError:
                pass
        env: tuple[dict[str, str], Any] = extras.get("env") or ({}, ())
        if env != self.applied:
            old_set, old_unset = self.applied
            for key in (*old_set, *old_unset):
                if key in self.base_env:
                    os.environ[key] = self.base_env[key]
                else:
                    os.environ.pop(key, None)
            new_set, new_unset = env
            os.environ.update(new_set)
            for key in new_unset:
                os.environ.pop(key, None)
            self.applied = (dict(new_set), tuple(new_unset))
        path = extras.get("sys_path")
        if path is not None and path != sys.path:
            sys.path[:] = path
        blobs = extras.get("materializers")
        if blobs and blobs != self.materializers:  # the same registrations as last task: done
            from ..store.materializers import registry

            self.materializers = blobs
            for blob in blobs:
                try:
                    tp, mat = cloudpickle.loads(blob)
                except Exception:  # noqa: BLE001 - only steps that use it will miss it
                    self.materializers = []  # try again with the next task (its sys.path may differ)
                    continue
                if tp is None:
                    registry.add(mat)
                else:
                    registry.register(tp, mat)


def _failed(task: StepTask | None, exc: BaseException, what: str) -> TaskResult:
    import traceback as tb

    step = f"step {task.invocation_id!r}: " if task is not None else ""
    err = RuntimeError(f"{step}{what}: {type(exc).__name__}: {exc}")
    return TaskResult.from_exception(
        err, error_type=type(exc).__name__,
        traceback="".join(tb.format_exception(type(exc), exc, exc.__traceback__)),
    )


def encode_task(task: StepTask, extras: dict[str, Any], plain: bool = False) -> bytes:
    """The payload for a worker; small database-kept inputs travel inside it (workers never
    open the metadata database), read here on the orchestrator's side. ``plain``: the task
    holds only dynpipe's classes and built-in data (the C pickler will do, ~3x faster)."""
    if any(
        (r.uri.startswith("db:") and r.data is None)
        for ref in task.inputs.values()
        for r in (ref if isinstance(ref, list) else (ref,))
    ):
        from ..store.store import open_store

        task = with_inline_inputs(task, open_store(task.store_root).metadata)
    # The outer layer holds plain data only (str, list, dict, bytes): the C pickler does
    # it in a fifth of cloudpickle's time; the task itself may hold anything.
    blob = pickle.dumps(task, protocol=5) if plain else cloudpickle.dumps(task, protocol=5)
    return pickle.dumps((extras, blob), protocol=5)


def encode_result(result: TaskResult) -> bytes:
    """Result payload; the exception travels separately so a bad one cannot sink the rest."""
    error_blob: bytes | None = None
    if result.error is not None:
        try:
            error_blob = cloudpickle.dumps(result.error)
            cloudpickle.loads(error_blob)  # custom __init__ signatures fail only here
        except Exception:  # noqa: BLE001 - fall back to type/message/traceback
            error_blob = None
    plain = replace(result, error=None)
    try:
        body = _dumps_plain(plain)
    except Exception as exc:  # noqa: BLE001 - e.g. unpicklable output metadata
        body = cloudpickle.dumps(replace(_failed(None, exc, "the result cannot be sent back"), logs=result.logs))
    return pickle.dumps((body, error_blob), protocol=5)  # two bytes objects: no cloudpickle needed


def _dumps_plain(obj: Any) -> bytes:
    """The C pickler when it can (a result is dynpipe's own classes, strings and bytes:
    ~5x faster than cloudpickle, which asks about every class it meets), else cloudpickle.

    Falling back is safe: what the C pickler cannot find by reference in this process (a
    class shipped by value from a notebook) makes it raise rather than write a bad pickle.
    """
    try:
        return pickle.dumps(obj, protocol=5)
    except Exception:  # noqa: BLE001 - PicklingError, or whatever a __reduce__ raises
        return cloudpickle.dumps(obj, protocol=5)


def decode_result(data: bytes) -> TaskResult:
    body, error_blob = cloudpickle.loads(data)
    result: TaskResult = cloudpickle.loads(body)
    if error_blob is not None:
        try:
            result.error = cloudpickle.loads(error_blob)
        except Exception:  # noqa: BLE001 - the orchestrator raises StepExecutionError
            result.error = None
    return result


def run_payload(payload: bytes, on_line: Any, mirror: _Mirror, slot: int = 0, store: Any = None) -> TaskResult:
    """Decode one task, run it with its resources applied, never raise."""
    task: StepTask | None = None
    try:
        extras, task_blob = cloudpickle.loads(payload)
        mismatch = python_mismatch(extras)
        if mismatch:
            return TaskResult.from_exception(RuntimeError(mismatch), error_type="PythonVersionMismatch", traceback="")
        mirror.apply(extras)
        task = cloudpickle.loads(task_blob)
        func_blob = extras.get("func")
        if func_blob is not None:  # a function sent by value travels apart from the task
            task.func = cloudpickle.loads(func_blob)
        step_blob = extras.get("step")
        if step_blob is not None:  # the fields every attempt of the step shares (shipping.StepParts)
            for name, value in zip(STEP_FIELDS, mirror.step_parts(step_blob), strict=True):
                setattr(task, name, value)
        if isinstance(task.func, FuncRef):
            ref = task.func
            try:
                task.func = ref.resolve()
            except Exception as exc:  # noqa: BLE001
                where = f"{ref.module}.{ref.qualname}"
                return _failed(task, exc, f"cannot import step function {where} in the worker process")
    except Exception as exc:  # noqa: BLE001 - e.g. a module importable only in the orchestrator
        return _failed(task, exc, "cannot load the step in the worker process")
    with applied_resources(task.resources, slot) as notes:
        for note in notes:
            if on_line is not None:
                on_line(f"dynpipe: {note}")
            else:
                print(f"[{task.invocation_id}] dynpipe: {note}", flush=True)
        result = execute_task(task, on_line, store)
    memory = getattr(task.resources, "memory", None)
    if memory and isinstance(result.error, MemoryError):
        detail = str(result.error) or "an allocation failed"
        message = (
            f"step {task.invocation_id!r} ran out of memory: {detail} (limit"
            f" ResourceSettings(memory={memory!r}), enforced as an address-space limit)"
        )
        err = MemoryError(message)
        err.__traceback__ = result.error.__traceback__
        result.error, result.error_message = err, message
        result.logs += f"dynpipe: {message}\n"
    return result


class _DescriptorOutput:
    """Output written straight to file descriptors 1 and 2 (C extensions such as XGBoost's
    training log, ``os.system``, child processes) while a task runs: streamed live like the
    step's prints and added to its stored log. Python-level prints never reach these
    descriptors in a worker: they go to the step's log sink.

    A watcher thread delivers lines as they come; at the end of a task the worker's main
    thread drains what is left itself, under the same lock, so a task costs no hand-off to
    the watcher (an end marker sent through the pipe and waited for cost two thread
    switches per task, ~40 µs of the worker's time).
    """

    def __init__(self, on_line: Any) -> None:
        self.on_line = on_line
        self.lines: list[str] | None = None  # None: no task running
        self.console = os.fdopen(os.dup(2), "w", buffering=1, errors="replace")
        read, write = os.pipe()
        os.set_blocking(read, False)  # the read end only: writers keep blocking writes
        os.dup2(write, 1)
        os.dup2(write, 2)
        os.close(write)
        self._fd = read
        self._lock = threading.Lock()
        self._partial = b""  # a line not ended yet
        self._watcher = threading.Thread(target=self._watch, name="dynpipe-fd-output", daemon=True)
        self._watcher.start()

    def _watch(self) -> None:
        poller = select.poll()
        poller.register(self._fd, select.POLLIN)
        while True:
            events = poller.poll()
            with self._lock:
                if not self._drain() or any(ev & (select.POLLERR | select.POLLNVAL) for _, ev in events):
                    return

    def _drain(self) -> bool:
        """Lock held: deliver every complete line the pipe holds now; False at its end."""
        while True:
            try:
                chunk = os.read(self._fd, 65536)
            except BlockingIOError:
                return True
            except OSError:
                return False
            if not chunk:
                return False
            *complete, self._partial = (self._partial + chunk).split(b"\n")
            for raw in complete:
                self._line(raw.decode("utf-8", "replace"))

    def _line(self, line: str) -> None:
        lines = self.lines
        if lines is None:
            self.console.write(line + "\n")  # between tasks: the worker's console
            return
        lines.append(line)
        try:
            self.on_line(line)
        except OSError:
            pass

    def start_task(self) -> None:
        self.lines = []

    def end_task(self) -> list[str]:
        """Everything the task wrote (a last line without its newline too); its lines."""
        with self._lock:
            self._drain()
            if self._partial:
                partial, self._partial = self._partial, b""
                self._line(partial.decode("utf-8", "replace"))
            lines, self.lines = self.lines or [], None
        return lines


def serve(fd: int, parent_pid: int, slot: int) -> None:
    """Pool mode: serve tasks until told to quit or the orchestrator goes away."""
    from multiprocessing.connection import Connection

    die_with_parent(parent_pid)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the orchestrator decides on Ctrl-C
    conn = Connection(fd)
    mirror = _Mirror()
    send_lock = threading.Lock()

    def send(data: bytes) -> None:
        with send_lock:  # the descriptor reader sends log lines from its own thread
            conn.send_bytes(data)

    def on_line(line: str) -> None:
        send(LINE + line.encode("utf-8", "replace"))

    descriptors = _DescriptorOutput(on_line)
    send(HELLO + str(os.getpid()).encode())
    try:
        _serve_loop(conn, send, on_line, mirror, descriptors, slot)
    finally:
        # Quit or the orchestrator's end closed: nothing the steps started may outlive us.
        _kill_own_group()


def _serve_loop(conn: Any, send: Any, on_line: Any, mirror: _Mirror, descriptors: _DescriptorOutput, slot: int) -> None:
    while True:
        try:
            msg = conn.recv_bytes()
        except (EOFError, OSError):
            return
        kind = msg[:1]
        if kind == QUIT:
            return
        if kind == TASK:
            descriptors.start_task()
            result = run_payload(msg[1:], on_line, mirror, slot)
            extra = descriptors.end_task()
            if extra:
                result.logs += "".join(line + "\n" for line in extra)
            try:
                send(RESULT + encode_result(result))
            except (BrokenPipeError, OSError):
                return


def python_mismatch(extras: dict[str, Any], here: str | None = None) -> str | None:
    """A step sent by value (cloudpickle) only loads under the Python that pickled it; ``here``:
    the image's Python (default: this interpreter's), known to an orchestrator from a report."""
    wanted = extras.get("python")
    here = here or f"{sys.version_info[0]}.{sys.version_info[1]}"
    if not wanted or wanted == here or not extras.get("by_value"):
        return None
    return (f"step {extras.get('invocation_id', '?')!r} travels by value (it is defined in a notebook or __main__)"
            f" and needs Python {wanted}, but this image runs Python {here}; use an image with Python {wanted}"
            " or move the step into a module the image contains")


def run_once(task_url: str, result_url: str | None) -> int:
    """One-shot mode (one pod per step): the report (JSON) goes to ``--result`` (default: next to
    the task); ``--task env:NAME`` reads the payload from the Job's env (base64).

    The pod writes artifact files only, never the metadata database, and reports in JSON so
    the orchestrator never unpickles what a pod wrote.
    """
    from .k8s.result import encode_report
    from .k8s.transport import pod_store, read_task, write_report

    mirror = _Mirror()
    started = time.time()
    # The task's own echo prints "[invocation] line" to stdout: the pod log is the stream.
    payload = read_task(task_url)
    result = run_payload(payload, None, mirror, store=pod_store())
    write_report(result_url or f"{task_url}.result", encode_report(result))
    status = "failed" if result.error_type else "completed"
    sys.__stdout__.write(f"dynpipe worker: step {status} in {time.time() - started:.2f}s\n")  # type: ignore[union-attr]
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m dynpipe.runtimes.worker")
    parser.add_argument("--fd", type=int, help="socket inherited from the orchestrator (pool mode)")
    parser.add_argument("--parent", type=int, default=0, help="orchestrator pid (pool mode)")
    parser.add_argument("--slot", type=int, default=0, help="worker slot, spreads CPU pinning")
    parser.add_argument("--task", help="path or fsspec URL of one task payload (one-shot mode)")
    parser.add_argument("--result", help="where to write the result (default: TASK.result)")
    args = parser.parse_args(argv)
    attach_log_capture()  # this process only runs steps
    if args.fd is not None:
        serve(args.fd, args.parent, args.slot)
        return 0
    if args.task:
        return run_once(args.task, args.result)
    parser.error("give --fd (pool mode) or --task (one-shot mode)")
    return 2


if __name__ == "__main__":
    # Run the imported module, not this __main__ copy: FuncRef and friends must be the
    # classes the orchestrator pickled (dynpipe.runtimes.worker.FuncRef).
    from dynpipe.runtimes.worker import main as _main

    sys.exit(_main())
