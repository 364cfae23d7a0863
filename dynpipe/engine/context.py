"""The run context: the one place a run's mutable state lives.

A ``RunContext`` is created per pipeline run and made current with a context variable;
step calls find it there. It owns invocation ids, the live DAG, the thread pools for
submitted steps, the isolated runtime handle, and the failure/stop state that execution
modes act on.
"""

from __future__ import annotations

import contextvars
import threading
import time
import uuid
from concurrent.futures import Future
from datetime import datetime
from typing import TYPE_CHECKING, Any

from .. import settings
from ..config import ExecutionMode, PipelineConfig
from ..errors import RunNameTaken
from ..futures import notify_if_waiting
from ..runtimes import get_runtime
from ..status import ExecutionStatus
from ..store.ids import IdMaker
from ..store.store import Store
from .dag import RunGraph
from .heartbeat import Heartbeat
from .lineage import LoadedValues
from .origin import run_origin
from .starts import DeferredStarts
from .threads import DaemonThreadPool

if TYPE_CHECKING:
    from ..runtimes.base import StepRuntime
    from .invocation import Invocation

_current_run: contextvars.ContextVar[RunContext | None] = contextvars.ContextVar(
    "dynpipe_run", default=None
)



def current_run() -> RunContext | None:
    return _current_run.get()


def inline_pool_size() -> int:
    return settings.inline_workers()


def format_run_name(template: str, pipeline_name: str, run_id: str) -> str:
    now = datetime.now()
    values = {
        "date": now.strftime("%Y_%m_%d"),
        "time": now.strftime("%H_%M_%S_%f"),
        "run_id": run_id[:8],
        "pipeline_name": pipeline_name,
    }
    try:
        return template.format(**values)
    except (KeyError, IndexError) as exc:
        raise ValueError(
            f"run name {template!r} uses unknown placeholder {exc}; "
            f"known: {', '.join('{' + k + '}' for k in values)}"
        ) from None


class RunContext:
    """State of one pipeline run in the orchestrating process."""

    def __init__(
        self,
        *,
        pipeline_name: str,
        config: PipelineConfig,
        store: Store,
        known_steps: set[str] | None = None,
        parent_run_id: str | None = None,
        unlisted: bool = False,
    ) -> None:
        self.run_id = uuid.uuid4().hex
        self.ids = IdMaker()  # its step runs' ids (store/ids.py)
        self.pipeline_name = pipeline_name
        self.config = config
        self.store = store
        self.mode: ExecutionMode = config.mode
        self.parent_run_id = parent_run_id
        self.unlisted = unlisted
        self.known_steps = known_steps
        template = config.run_name or "{pipeline_name}-{date}-{time}"
        self.run_name = format_run_name(template, pipeline_name, self.run_id)
        self.graph = RunGraph(self.run_id, self.run_name, pipeline_name)
        self.compiling = False
        self.lock = threading.Lock()
        self.status_lock = threading.Lock()  # step statuses (engine/transitions.py)
        self.invocations: list[Invocation] = []
        self.outstanding: set[Invocation] = set()
        self.held: list[Invocation] = []
        self.stop_event = threading.Event()
        self.first_failure: tuple[str, BaseException] | None = None
        self.failed_steps: list[str] = []
        self._ids: dict[str, int] = {}  # step name -> its invocations' counter (allocate_id)
        self._custom_ids: set[str] = set()
        self._inline_pool: DaemonThreadPool | None = None
        self._isolated_pool: DaemonThreadPool | None = None
        self._runtimes: dict[str, StepRuntime] = {}
        self.effective_configs: dict[int, Any] = {}
        self.loaded = LoadedValues()  # values loaded in this run -> their producer (lineage)
        self.finished = False
        self.status: ExecutionStatus = ExecutionStatus.RUNNING
        self._token: contextvars.Token[RunContext | None] | None = None
        self.idle = threading.Condition(self.lock)
        self.futures_condition = threading.Condition()  # shared by its steps' futures (futures.py)
        self.heartbeat: Heartbeat | None = None
        self.starts = DeferredStarts(store.metadata)  # steps' starts written late (starts.py)

    # -- lifecycle ----------------------------------------------------------------
    def begin(self) -> None:
        """Record the run in the store; call once before the first step."""
        interval = settings.heartbeat_interval()  # a bad value fails before the run is recorded
        fixed = bool(self.config.run_name) and "{" not in (self.config.run_name or "")
        if fixed and self.store.metadata.run_name_exists(self.run_name):
            raise self._name_taken()
        if not fixed and self.store.metadata.run_name_exists(self.run_name):
            self._make_name_unique()
        try:
            self._create_run()
        except RunNameTaken:
            # Another run took the name between the check and the insert (concurrent runs).
            if fixed or self.run_name.endswith(self.run_id[:8]):
                raise self._name_taken() from None
            self._make_name_unique()
            self._create_run()
        run_id, metadata = self.run_id, self.store.metadata
        self.heartbeat = Heartbeat(
            lambda: metadata.record_heartbeat(run_id), interval, f"dynpipe-heartbeat-{run_id[:8]}"
        )
        self.heartbeat.start()

    def _name_taken(self) -> RunNameTaken:
        return RunNameTaken(
            f"a run named {self.run_name!r} already exists in {self.store.root};"
            " run names are unique: add a placeholder such as {date}, {time} or {run_id}"
        )

    def _make_name_unique(self) -> None:
        self.run_name = f"{self.run_name}-{self.run_id[:8]}"
        self.graph.run_name = self.run_name

    def _create_run(self) -> None:
        self.store.metadata.create_run(
            self.run_id,
            self.run_name,
            self.pipeline_name,
            {
                "execution_mode": self.mode.value,
                "enable_cache": self.config.enable_cache,
                "parameters": self.config.parameters,
                "tags": list(self.config.tags),
                "model": self.config.model.model_dump(exclude_defaults=True) if self.config.model else None,
                "origin": run_origin(),  # the notebook, script or schedule: runs list shows it
            },
            parent_run_id=self.parent_run_id,
            unlisted=self.unlisted,
        )

    def activate(self) -> None:
        """Make this the current run for step calls in this thread/context."""
        self._token = _current_run.set(self)

    def deactivate(self) -> None:
        if self._token is not None:
            _current_run.reset(self._token)
            self._token = None

    # -- invocation ids -------------------------------------------------------------
    def allocate_id(self, step_name: str, custom: str | None) -> str:
        with self.lock:
            if custom is not None:
                if custom in self._custom_ids or self._counted(custom):
                    raise ValueError(
                        f"invocation id {custom!r} is already used in run {self.run_name!r};"
                        " ids must be unique within a run"
                    )
                self._custom_ids.add(custom)
                return custom
            n = self._ids.get(step_name, 0)
            while True:
                n += 1
                if n == 1:
                    candidate = step_name
                    taken = self._counted(candidate)
                else:  # this step's own counter is below n: only a step of that name has it
                    candidate = f"{step_name}_{n}"
                    taken = candidate in self._ids
                if not taken and candidate not in self._custom_ids:
                    break
            self._ids[step_name] = n
            return candidate

    def _counted(self, invocation_id: str) -> bool:
        """Whether a step's counter has passed ``invocation_id`` (``name``, ``name_2``, ...).

        Every id such a counter passed is in use (given, or taken by a custom id or another
        step), and every id in use is one of those or a custom id: so the run keeps its
        custom ids and one counter per step name, not a set of every id (~50 B a step).
        """
        if invocation_id in self._ids:
            return True
        name, _, number = invocation_id.rpartition("_")
        if not (number.isascii() and number.isdigit()) or number[0] == "0":
            return False
        return 2 <= int(number) <= self._ids.get(name, 0)

    # -- pools and runtimes ------------------------------------------------------------
    def inline_pool(self) -> DaemonThreadPool:
        if self._inline_pool is None:
            with self.lock:
                if self._inline_pool is None:
                    self._inline_pool = DaemonThreadPool(inline_pool_size(), f"dynpipe-{self.pipeline_name}")
        return self._inline_pool

    def isolated_pool(self) -> DaemonThreadPool:
        """Threads that wait on isolated launches (the work itself runs elsewhere), sized
        for the isolated runtime (``settings.isolated_waiters``)."""
        if self._isolated_pool is None:
            try:
                bound = self.runtime("isolated").attempts_at_once()
            except Exception:  # noqa: BLE001 - the step reports why its runtime cannot start
                bound = None
            with self.lock:
                if self._isolated_pool is None:
                    size = settings.isolated_waiters(bound)
                    self._isolated_pool = DaemonThreadPool(size, f"dynpipe-iso-{self.pipeline_name}")
        return self._isolated_pool

    def runtime(self, name: str) -> StepRuntime:
        rt = self._runtimes.get(name)
        if rt is None:
            rt = get_runtime(name)
            self._runtimes[name] = rt
        return rt

    # -- outstanding work ---------------------------------------------------------------
    def track(self, inv: Invocation) -> None:
        with self.lock:
            self.invocations.append(inv)
            self.outstanding.add(inv)

    def untrack(self, inv: Invocation) -> None:
        with self.lock:
            self.outstanding.discard(inv)
            if not self.outstanding:
                # A set never shrinks its table: after a big fan-out the drained one held
                # ~50 B a step until the run ended.
                self.outstanding = set()
                notify_if_waiting(self.idle)  # most runs have no thread in wait_idle

    def wait_idle(self, timeout: float | None = None) -> bool:
        deadline = None if timeout is None else time.monotonic() + timeout
        with self.lock:
            while self.outstanding:
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return False
                self.idle.wait(remaining if remaining is not None else 0.5)
        return True

    def pending_futures(self) -> list[Future[Any]]:
        with self.lock:
            return [inv.future for inv in self.outstanding]

    # -- failures --------------------------------------------------------------------------
    def record_failure(self, invocation_id: str, exc: BaseException) -> None:
        with self.lock:
            self.failed_steps.append(invocation_id)
            if self.first_failure is None:
                self.first_failure = (invocation_id, exc)
        if self.mode is not ExecutionMode.CONTINUE_ON_FAILURE:
            self.stop_event.set()
        if self.mode is ExecutionMode.FAIL_FAST:
            self.stop_running(f"step {invocation_id!r} failed (FAIL_FAST)")

    def stop_running(self, reason: str) -> None:
        """Stop everything in flight: kill isolated launches, discard inline results."""
        self.stop_event.set()
        with self.lock:
            running = list(self.outstanding)
        for inv in running:
            inv.request_stop(reason)

    @property
    def stopping(self) -> bool:
        return self.stop_event.is_set()

    @property
    def fail_fast_stopping(self) -> bool:
        """FAIL_FAST and something failed: no retries, nothing new starts."""
        return self.mode is ExecutionMode.FAIL_FAST and self.stop_event.is_set()

    def shutdown_pools(self, wait: bool = True) -> None:
        for pool in (self._inline_pool, self._isolated_pool):
            if pool is not None:
                pool.shutdown(wait=wait, cancel_futures=not wait)
        self._inline_pool = None
        self._isolated_pool = None
