"""Futures for submitted steps: StepRunFuture, MapResultsFuture, unmapped, wait, as_completed.

A ``StepRunFuture[R]`` wraps the ``concurrent.futures.Future`` of one step invocation and a
handle that answers what the future alone cannot (its status, its outputs' names). It knows
nothing of how the engine runs steps. Every wait here is interruptible: a KeyboardInterrupt
while waiting stops the run the step belongs to, then propagates.
"""

from __future__ import annotations

import concurrent.futures
import threading
import time
from collections.abc import Generator, Iterable, Iterator, Mapping
from typing import Any, Generic, Protocol, TypeVar, cast

from .status import ExecutionStatus
from .tracebacks import user_error

R = TypeVar("R")

S = ExecutionStatus
_COLOURS: dict[str, str] = {
    S.COMPLETED: "#2e7d32", S.CACHED: "#1565c0", S.FAILED: "#c62828", S.RUNNING: "#ef6c00",
    S.RETRYING: "#f9a825", S.SKIPPED: "#757575", S.STOPPED: "#6d4c41",
}


_DONE = frozenset({"CANCELLED", "CANCELLED_AND_NOTIFIED", "FINISHED"})
_NO_CALLBACKS: tuple[()] = ()


def notify_if_waiting(condition: threading.Condition) -> None:
    """``condition.notify_all()`` if a thread waits on it (call with it held).

    Most steps finish with nobody waiting (an inline step is waited for once it is done);
    ``notify_all`` is two Python calls and ~50 bytecodes even then. A waiter adds itself to
    the condition's ``_waiters`` while holding it, so under the lock the check is exact.
    """
    if condition._waiters:  # type: ignore[attr-defined]
        condition.notify_all()


class SharedConditionFuture(concurrent.futures.Future[Any]):
    """A ``concurrent.futures.Future`` that waits on a condition shared by its run.

    The stock future makes a ``threading.Condition`` each (~1.2 KB with its bound methods
    and deque): most of a 100,000-step run's memory. Sharing one means a waiter can wake
    for another future of the run, so ``result``/``exception`` wait in a loop until this
    one is done or the timeout is over; everything else (``concurrent.futures.wait``,
    ``as_completed``, ``asyncio.wrap_future``, callbacks, cancellation) is the stock code.

    Its list of ``concurrent.futures.wait`` waiters is made when the first one is added:
    most steps' futures never have one (56 B each in an open run).
    """

    def __init__(self, condition: threading.Condition) -> None:
        # Not super().__init__(): that makes the per-future condition this class avoids.
        self._condition = condition
        self._state = "PENDING"
        self._result = None
        self._exception = None
        self._waiter_list: list[Any] | None = None
        self._done_callbacks: list[Any] | tuple[()] = []

    @property
    def _waiters(self) -> list[Any]:  # type: ignore[override]
        """What ``concurrent.futures.wait``/``as_completed`` add their waiters to (and remove
        them from): the stock attribute, made on first use."""
        waiters = self._waiter_list
        if waiters is None:
            waiters = self._waiter_list = []
        return waiters

    # set_result/set_exception as the stock ones, but a future nobody waits on with
    # ``concurrent.futures.wait`` gets no waiter list. The condition's ``acquire``/``release``
    # are its lock's own (C) methods; ``with condition`` calls two Python methods more.
    def set_result(self, result: Any) -> None:
        self._finish(result, None)

    def set_exception(self, exception: BaseException | None) -> None:
        self._finish(None, exception)

    def _finish(self, result: Any, exception: BaseException | None) -> None:
        condition = self._condition
        condition.acquire()
        try:
            if self._state in _DONE:
                raise concurrent.futures.InvalidStateError(f"{self._state}: {self!r}")
            self._result = result
            self._exception = exception
            self._state = "FINISHED"  # last: result() reads a finished future without the lock
            for waiter in self._waiter_list or ():
                if exception is None:
                    waiter.add_result(self)
                else:
                    waiter.add_exception(self)
            notify_if_waiting(condition)
        finally:
            condition.release()
        self._invoke_callbacks()

    def _invoke_callbacks(self) -> None:
        if self._done_callbacks:  # most steps' futures have none
            super()._invoke_callbacks()  # type: ignore[misc]
        # Done: a callback added from now on runs at once and is never kept, so the list
        # (and the closures in it, such as a dependent step's start) can go.
        self._done_callbacks = _NO_CALLBACKS

    def _wait_done(self, timeout: float | None) -> None:
        if self._state in _DONE:
            return  # a final state never changes: no lock needed to see it
        with self._condition:
            deadline = None if timeout is None else time.monotonic() + timeout
            while self._state not in _DONE:
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    return
                self._condition.wait(left)

    def result(self, timeout: float | None = None) -> Any:
        # Finished with a result (its state and result never change again): no lock, and
        # not the stock ``result`` that takes it once more. ``_result`` is set before ``_state``.
        if self._state == "FINISHED" and self._exception is None:
            return self._result
        self._wait_done(timeout)
        return super().result(0)  # done: its result or error; else the stock TimeoutError

    def exception(self, timeout: float | None = None) -> BaseException | None:
        if self._state == "FINISHED":
            return self._exception
        self._wait_done(timeout)
        return super().exception(0)


class StepRunHandle(Protocol):
    """What a future asks of the invocation behind it."""

    @property
    def invocation_id(self) -> str: ...

    @property
    def future(self) -> concurrent.futures.Future[Mapping[str, Any]]: ...

    @property
    def status(self) -> str: ...

    @property
    def preview(self) -> str | None: ...

    @property
    def error(self) -> str | None: ...

    @property
    def output_names(self) -> list[str]: ...

    @property
    def compiling(self) -> bool:
        """True while a static pipeline builds its DAG (nothing has run yet)."""

    def outputs_to_return(self, outputs: Mapping[str, Any], output_name: str | None) -> Any:
        """What ``result()`` returns: the named output, the only one, a tuple, or None."""

    def interrupt(self, reason: str) -> None:
        """Stop the run this step belongs to (the caller was interrupted while waiting)."""


def _interrupted(handles: Iterable[StepRunHandle]) -> None:
    for handle in handles:
        handle.interrupt("interrupted while waiting for a step")
        return  # one handle per run is enough; stopping is per run


class StepRunFuture(Generic[R]):
    """A submitted step invocation; pass it to another step or wait for it."""

    __slots__ = ("_handle", "_output")

    def __init__(self, handle: StepRunHandle, output_name: str | None = None) -> None:
        self._handle = handle
        self._output = output_name

    @property
    def handle(self) -> StepRunHandle:
        return self._handle

    @property
    def output_name(self) -> str | None:
        return self._output

    @property
    def invocation_id(self) -> str:
        return self._handle.invocation_id

    @property
    def status(self) -> str:
        return self._handle.status

    def _check_not_compiling(self, what: str) -> None:
        if self._handle.compiling:
            raise RuntimeError(
                f"{what} on step {self.invocation_id!r} inside a static pipeline: its DAG is built"
                " before any step runs; pass the output to the next step, or use @pipeline(dynamic=True)"
            )

    def __getitem__(self, key: int | str) -> StepRunFuture[Any]:
        names = self._handle.output_names
        if isinstance(key, int):
            try:
                key = names[key]
            except IndexError:
                raise IndexError(f"step {self.invocation_id!r} has {len(names)} outputs") from None
        if key not in names:
            raise KeyError(f"step {self.invocation_id!r} has no output {key!r} (outputs: {names})")
        return StepRunFuture(self._handle, key)

    def __iter__(self) -> Iterator[StepRunFuture[Any]]:
        names = self._handle.output_names
        if len(names) < 2 and self._output is None:
            raise TypeError(f"step {self.invocation_id!r} has a single output; it cannot be unpacked")
        return (StepRunFuture(self._handle, n) for n in names)

    def wait(self, timeout: float | None = None) -> None:
        self._check_not_compiling("wait()")
        if not self._handle.future.done():  # done: no waiter to set up
            wait([self], timeout)

    def done(self) -> bool:
        return self._handle.future.done()

    def running(self) -> bool:
        return self._handle.status in (S.RUNNING, S.RETRYING)

    def exception(self, timeout: float | None = None) -> BaseException | None:
        try:
            return self._handle.future.exception(timeout)
        except KeyboardInterrupt:
            _interrupted([self._handle])
            raise

    def result(self, timeout: float | None = None) -> Any:
        """Wait; return the output artifact (or a tuple of them); raise the step's error."""
        __tracebackhide__ = True
        self._check_not_compiling("result()")
        exc = self.exception(timeout)
        if exc is not None:
            raise user_error(exc)
        return self._handle.outputs_to_return(self._handle.future.result(), self._output)

    def load(self, timeout: float | None = None) -> R:
        """Wait and load the data of the output(s): the step function's return value."""
        __tracebackhide__ = True
        self._check_not_compiling("load()")
        res: Any = self.result(timeout)
        if isinstance(res, tuple):
            return cast(R, tuple(a.load() for a in res))
        return cast(R, res.load() if res is not None else None)

    def __await__(self) -> Generator[Any, None, Any]:
        return self._await().__await__()

    async def _await(self) -> Any:
        import asyncio  # deferred: ~18 ms of `import dynpipe` otherwise

        try:
            await asyncio.wrap_future(self._handle.future)
        except asyncio.CancelledError:
            _interrupted([self._handle])  # the awaiting cell was interrupted
            raise
        except Exception:  # noqa: BLE001 - result() raises the step's error below
            pass
        return self.result()

    def __repr__(self) -> str:
        out = f"[{self._output!r}]" if self._output else ""
        return f"<StepRunFuture {self.invocation_id}{out} status={self.status}>"

    def _repr_html_(self) -> str:
        import html  # deferred: only notebooks display futures (cold start)

        h = self._handle
        colour = _COLOURS.get(h.status, "#9e9e9e")
        preview = f" → <code>{html.escape(h.preview)}</code>" if h.preview else ""
        error = f" <span style='color:#c62828'>{html.escape(h.error)}</span>" if h.error else ""
        return (
            f"<span style='font-family:var(--jp-code-font-family,monospace)'>StepRunFuture "
            f"<b>{html.escape(self.invocation_id)}</b> "
            f"<span style='color:{colour}'>● {h.status}</span>{preview}{error}</span>"
        )


class MapResultsFuture(list):
    """The futures of a ``step.map``/``step.product`` fan-out, in input order."""

    def result(self, timeout: float | None = None) -> list[Any]:
        return [f.result(timeout) for f in self]

    def load(self, timeout: float | None = None) -> list[Any]:
        return [f.load(timeout) for f in self]

    def wait(self, timeout: float | None = None) -> None:
        wait(list(self), timeout)

    def done(self) -> bool:
        return all(f.done() for f in self)

    def unpack(self) -> tuple[list[StepRunFuture[Any]], ...]:
        """For multi-output steps: one list of futures per output."""
        if not self:
            return ()
        names = self[0].handle.output_names
        return tuple([f[name] for f in self] for name in names)

    def __repr__(self) -> str:
        done = sum(1 for f in self if f.done())
        return f"<MapResultsFuture {done}/{len(self)} done>"


class unmapped:
    """Wrap an argument of ``step.map`` so every mapped invocation receives it whole."""

    __slots__ = ("value",)

    def __init__(self, value: Any) -> None:
        self.value = value


def wait(
    futures: Iterable[StepRunFuture[Any]], timeout: float | None = None
) -> tuple[set[StepRunFuture[Any]], set[StepRunFuture[Any]]]:
    """Wait for all futures; return (done, not_done) like ``concurrent.futures.wait``."""
    futs = list(futures)
    by_inner = {f.handle.future: f for f in futs}
    try:
        done, not_done = concurrent.futures.wait(list(by_inner), timeout=timeout)
    except KeyboardInterrupt:
        _interrupted(f.handle for f in futs)
        raise
    return {by_inner[d] for d in done}, {by_inner[n] for n in not_done}


def as_completed(
    futures: Iterable[StepRunFuture[Any]], timeout: float | None = None
) -> Iterator[StepRunFuture[Any]]:
    """Yield futures as their steps finish."""
    futs = list(futures)
    by_inner: dict[concurrent.futures.Future[Any], list[StepRunFuture[Any]]] = {}
    for f in futs:
        by_inner.setdefault(f.handle.future, []).append(f)
    try:
        for inner in concurrent.futures.as_completed(list(by_inner), timeout=timeout):
            yield from by_inner[inner]
    except KeyboardInterrupt:
        _interrupted(f.handle for f in futs)
        raise
