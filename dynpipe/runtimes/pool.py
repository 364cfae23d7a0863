"""The warm pool of local worker processes: one attempt per worker at a time.

Per worker, one reader thread in the orchestrator streams log lines to the engine as they
arrive and notices the worker's death at once (socket EOF or its pidfd): the step running
there gets a ``WorkerCrashedError`` naming the signal or exit code, the worker's process
group is killed (children the step left behind) and a fresh worker takes the slot.

Workers start on one long-lived spawner thread, because ``PR_SET_PDEATHSIG`` (set by the
worker) follows the thread that forked it. A worker that dies before it is ready is a
*start failure*, never an attempt of a step: queued attempts keep waiting while the pool
retries with exponential backoff (capped), and only after ``GIVE_UP_AFTER`` failures in a
row, with no worker alive to serve them, do they fail, saying what happened.
"""

from __future__ import annotations

import collections
import select
import sys
import threading
import time

from .. import settings
from .base import CompletedLaunch, Launch, LogCallback, StepRuntime
from .local_launch import EnvChanges, LocalLaunch, encode_for_worker, undecodable, unsendable
from .shipping import MaterializerShipment, StepParts
from .task import StepTask
from .worker import HELLO, LINE, QUIT, RESULT, TASK, decode_result
from .worker_process import FrameReader, WorkerProcess, describe_exit

#: Worker start failures in a row after which waiting attempts fail instead of waiting.
GIVE_UP_AFTER = 6
#: Backoff before restarting after a start failure: BASE * 2**(n-1) seconds, at most CAP.
BACKOFF_BASE = 0.1
BACKOFF_CAP = 2.0


class LocalProcessRuntime(StepRuntime):
    """A warm pool of local worker processes; one attempt per worker at a time."""

    name = "isolated"

    def __init__(self, size: int | None = None, python: str | None = None) -> None:
        self.size = size or settings.local_workers()
        self.python = python or sys.executable
        self._lock = threading.Lock()
        self._idle: list[WorkerProcess] = []
        self._workers: set[WorkerProcess] = set()
        self._starting = 0
        self._queue: collections.deque[LocalLaunch] = collections.deque()
        self._spawn_requests: collections.deque[int] = collections.deque()
        self._spawn_wake = threading.Condition(self._lock)
        self._spawner: threading.Thread | None = None
        self._closed = False
        self._start_failures = 0
        self._next_start_at = 0.0
        self._free_slots: list[int] = []
        self._next_slot = 0
        self._env = EnvChanges()
        self._shipment = MaterializerShipment()
        self._step_parts = StepParts()
        self.started_at: float | None = None

    @property
    def closed(self) -> bool:
        return self._closed

    # -- public ------------------------------------------------------------------------
    def launch(self, task: StepTask, on_log_line: LogCallback | None = None) -> Launch:
        try:
            payload = encode_for_worker(task, self._env, self._shipment, self._step_parts)
        except Exception as exc:  # noqa: BLE001 - a clear error for this step only
            return CompletedLaunch(unsendable(task, exc))
        launch = LocalLaunch(self, task, payload, on_log_line)
        with self._lock:
            if self._closed:
                launch.fail("the isolated worker pool is shut down (the process is exiting)")
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

    def attempts_at_once(self) -> int:
        """One attempt per worker."""
        return self.size

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
                if sum(1 for w in self._workers if w.ready) >= self.size:
                    break
            time.sleep(0.002)
        return time.perf_counter() - t0

    def worker_pids(self) -> list[int]:
        with self._lock:
            return [w.pid for w in self._workers]

    def shutdown(self) -> None:
        """Stop every worker and its process group now; queued and running attempts fail
        with a clear reason."""
        with self._lock:
            self._closed = True
            workers = list(self._workers)
            queued = list(self._queue)
            self._queue.clear()
            self._idle.clear()
            self._spawn_wake.notify_all()
        for launch in queued:
            launch.fail("the isolated worker pool was shut down before the step started")
        for w in workers:
            w.kill()
        for w in workers:
            try:
                w.proc.wait(timeout=2)
            except Exception:  # noqa: BLE001 - best effort; the reader thread reaps it
                pass

    def cancel_launch(self, launch: LocalLaunch) -> bool:
        """Drop a queued attempt, or kill the worker (and its group) running it."""
        with self._lock:
            if launch.done():
                return False
            launch.cancelled = True
            queued = launch in self._queue
            if queued:
                self._queue.remove(launch)
            worker = None if queued else launch.worker
            if worker is not None and worker.launch is not launch:
                worker = None  # its result is being delivered; the worker runs another attempt now
        if queued:
            launch.fail("cancelled before a worker process picked it up")
        elif worker is not None:
            worker.kill()
        return True

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
        """The only thread that starts workers (their PR_SET_PDEATHSIG follows it); waits
        out the backoff after start failures."""
        while True:
            with self._lock:
                while not self._closed:
                    wait = self._next_start_at - time.monotonic()
                    if self._spawn_requests and wait <= 0:
                        break
                    self._spawn_wake.wait(wait if self._spawn_requests else None)
                if self._closed:
                    return
                slot = self._spawn_requests.popleft()
            try:
                worker = WorkerProcess.start(self.python, self._env.base, slot)
            except Exception as exc:  # noqa: BLE001 - e.g. no such interpreter, out of descriptors
                with self._lock:
                    self._starting -= 1
                    self._free_slots.append(slot)
                    self._start_failed(f"cannot start a worker process: {type(exc).__name__}: {exc}")
                continue
            with self._lock:
                self._starting -= 1
                closed = self._closed
                if not closed:
                    self._workers.add(worker)
            if closed:
                worker.kill()
                worker.reap()
                continue
            threading.Thread(
                target=self._read_loop, args=(worker,), name=f"dynpipe-worker-{worker.pid}", daemon=True
            ).start()

    def _read_loop(self, w: WorkerProcess) -> None:
        """Per worker: deliver log lines and results; detect death at once."""
        conn = w.conn
        fd = conn.fileno()
        reader = FrameReader(fd)
        poller = None
        if w.pidfd is not None:
            poller = select.poll()  # not select(): file descriptors past 1024 are common in kernels
            poller.register(fd, select.POLLIN)
            poller.register(w.pidfd, select.POLLIN)
        try:
            while True:
                if poller is not None:
                    ready = {ready_fd for ready_fd, _ in poller.poll()}
                    if fd not in ready:  # the process is gone: drain, then stop
                        while conn.poll(0):
                            for msg in reader.read():
                                self._handle(w, msg)
                        break
                for msg in reader.read():
                    self._handle(w, msg)
        except (EOFError, OSError, ValueError):
            pass
        self._on_death(w)

    def _handle(self, w: WorkerProcess, msg: bytes) -> None:
        kind, body = msg[:1], msg[1:]
        if kind == LINE:
            launch = w.launch
            if launch is not None:
                launch.add_line(body.decode("utf-8", "replace"))
        elif kind == RESULT:
            with self._lock:
                launch, w.launch = w.launch, None
            # The worker gets its next attempt first: it runs that while this thread decodes
            # and hands over the result (the worker no longer idles through that part).
            self._worker_free(w)
            try:
                result = decode_result(body)
            except Exception as exc:  # noqa: BLE001 - e.g. a class that only exists in the worker
                result = undecodable(launch, exc)
            if launch is not None:
                launch.finish(result)
        elif kind == HELLO:
            with self._lock:
                w.ready = True
                self._start_failures = 0
                self._next_start_at = 0.0
            self._worker_free(w)

    def _worker_free(self, w: WorkerProcess) -> None:
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

    def _retire(self, w: WorkerProcess) -> None:
        self._workers.discard(w)
        w.killed = True
        try:
            w.conn.send_bytes(QUIT)
        except OSError:
            w.kill()

    def _send(self, w: WorkerProcess, launch: LocalLaunch) -> None:
        if launch.cancelled:
            w.kill()
            return
        try:
            w.conn.send_bytes(TASK + launch.payload)
        except OSError:
            w.kill()  # the reader thread sees the death and fails this launch
        launch.payload = b""

    def _on_death(self, w: WorkerProcess) -> None:
        returncode = w.reap()
        with self._lock:
            was_member = w in self._workers
            self._workers.discard(w)
            if w in self._idle:
                self._idle.remove(w)
            launch, w.launch = w.launch, None
            self._free_slots.append(w.slot)
            if not w.ready and not w.killed:
                self._start_failed(describe_exit(returncode, ready=False))
            elif not self._closed and was_member:
                self._top_up()
        if launch is not None:
            if launch.cancelled:
                reason = "the step was cancelled: its worker process was killed"
            else:
                reason = describe_exit(returncode, launch.memory_limit)
            launch.fail(reason)

    def _start_failed(self, message: str) -> None:
        """Lock held. Retry after a growing pause; after GIVE_UP_AFTER failures in a row with
        no worker to serve them, fail the waiting attempts instead of letting them hang."""
        self._start_failures += 1
        if self._closed:
            return
        if self._start_failures < GIVE_UP_AFTER:
            delay = min(BACKOFF_BASE * 2 ** (self._start_failures - 1), BACKOFF_CAP)
            self._next_start_at = time.monotonic() + delay
            self._top_up()
            return
        failures, self._start_failures = self._start_failures, 0  # the next launch tries again
        self._next_start_at = time.monotonic() + BACKOFF_CAP
        if any(w.ready for w in self._workers) or self._starting:
            return  # live workers serve the queue; the next launch tops the pool up again
        queued = list(self._queue)
        self._queue.clear()
        reason = (
            f"a worker process failed to start: {message} ({failures} starts in a row failed,"
            " so the step never ran; see the orchestrator's stderr for the worker's output)"
        )
        for launch in queued:
            threading.Thread(target=launch.fail, args=(reason,), daemon=True).start()
