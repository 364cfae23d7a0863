"""Futures for submitted steps: StepRunFuture, MapResultsFuture, unmapped, wait, as_completed."""

from __future__ import annotations

import concurrent.futures
from collections.abc import Generator, Iterable, Iterator
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .engine.launcher import FutureOutput, Invocation


class StepRunFuture:
    """A submitted step invocation; pass it to another step or wait for it."""

    __slots__ = ("_inv", "_output")

    def __init__(self, invocation: Invocation, output_name: str | None = None) -> None:
        self._inv = invocation
        self._output = output_name

    @property
    def invocation_id(self) -> str:
        return self._inv.invocation_id

    @property
    def status(self) -> str:
        return self._inv.node.status

    def _check_not_compiling(self, what: str) -> None:
        if self._inv.ctx.compiling:
            raise RuntimeError(
                f"{what} on step {self.invocation_id!r} inside a static pipeline: its DAG is built"
                " before any step runs; pass the output to the next step, or use @pipeline(dynamic=True)"
            )

    def _output_ref(self, name: str | None) -> FutureOutput:
        from .engine.launcher import FutureOutput

        return FutureOutput(self._inv, name if name is not None else self._output)

    def __getitem__(self, key: int | str) -> StepRunFuture:
        names = [o.name for o in self._inv.step.outputs]
        if isinstance(key, int):
            try:
                key = names[key]
            except IndexError:
                raise IndexError(f"step {self.invocation_id!r} has {len(names)} outputs") from None
        if key not in names:
            raise KeyError(f"step {self.invocation_id!r} has no output {key!r} (outputs: {names})")
        return StepRunFuture(self._inv, key)

    def __iter__(self) -> Iterator[StepRunFuture]:
        names = [o.name for o in self._inv.step.outputs]
        if len(names) < 2 and self._output is None:
            raise TypeError(f"step {self.invocation_id!r} has a single output; it cannot be unpacked")
        return (StepRunFuture(self._inv, n) for n in names)

    def wait(self, timeout: float | None = None) -> None:
        self._check_not_compiling("wait()")
        concurrent.futures.wait([self._inv.future], timeout=timeout)

    def done(self) -> bool:
        return self._inv.future.done()

    def running(self) -> bool:
        return self._inv.node.status in ("running", "retrying")

    def result(self, timeout: float | None = None) -> Any:
        """Wait; return the output artifact (or a tuple of them); raise the step's error."""
        __tracebackhide__ = True  # noqa: F841 - IPython leaves this frame out of tracebacks
        self._check_not_compiling("result()")
        exc = self._inv.future.exception(timeout)
        if exc is not None:
            from .engine.launcher import without_engine_frames

            raise without_engine_frames(exc)
        outputs = self._inv.future.result()
        if self._output is not None:
            return outputs[self._output]
        from .engine.launcher import outputs_to_return

        return outputs_to_return(self._inv, outputs)

    def load(self, timeout: float | None = None) -> Any:
        """Wait and load the data of the output(s)."""
        __tracebackhide__ = True  # noqa: F841
        self._check_not_compiling("load()")
        res = self.result(timeout)
        if isinstance(res, tuple):
            return tuple(a.load() for a in res)
        return res.load() if res is not None else None

    def exception(self, timeout: float | None = None) -> BaseException | None:
        return self._inv.future.exception(timeout)

    def __await__(self) -> Generator[Any, None, Any]:
        return self._await().__await__()

    async def _await(self) -> Any:
        import asyncio  # lazily: ~18 ms of `import dynpipe` otherwise

        await asyncio.wrap_future(self._inv.future)
        return self.result()

    def __repr__(self) -> str:
        out = f"[{self._output!r}]" if self._output else ""
        return f"<StepRunFuture {self.invocation_id}{out} status={self.status}>"

    def _repr_html_(self) -> str:
        import html

        node = self._inv.node
        colour = {
            "completed": "#2e7d32", "cached": "#1565c0", "failed": "#c62828", "running": "#ef6c00",
            "retrying": "#f9a825", "skipped": "#757575", "stopped": "#6d4c41",
        }.get(node.status, "#9e9e9e")
        preview = f" → <code>{html.escape(node.preview)}</code>" if node.preview else ""
        error = f" <span style='color:#c62828'>{html.escape(node.error)}</span>" if node.error else ""
        return (
            f"<span style='font-family:var(--jp-code-font-family,monospace)'>StepRunFuture "
            f"<b>{html.escape(self.invocation_id)}</b> "
            f"<span style='color:{colour}'>● {node.status}</span>{preview}{error}</span>"
        )


class MapResultsFuture(list):  # type: ignore[type-arg]
    """The futures of a ``step.map``/``step.product`` fan-out, in input order."""

    def result(self, timeout: float | None = None) -> list[Any]:
        return [f.result(timeout) for f in self]

    def load(self, timeout: float | None = None) -> list[Any]:
        return [f.load(timeout) for f in self]

    def wait(self, timeout: float | None = None) -> None:
        wait(list(self), timeout)

    def done(self) -> bool:
        return all(f.done() for f in self)

    def unpack(self) -> tuple[list[StepRunFuture], ...]:
        """For multi-output steps: one list of futures per output."""
        if not self:
            return ()
        names = [o.name for o in self[0]._inv.step.outputs]
        return tuple([f[name] for f in self] for name in names)

    def __repr__(self) -> str:
        done = sum(1 for f in self if f.done())
        return f"<MapResultsFuture {done}/{len(self)} done>"


class unmapped:  # noqa: N801 - name follows the reference API
    """Wrap an argument of ``step.map`` so every mapped invocation receives it whole."""

    __slots__ = ("value",)

    def __init__(self, value: Any) -> None:
        self.value = value


def wait(
    futures: Iterable[StepRunFuture], timeout: float | None = None
) -> tuple[set[StepRunFuture], set[StepRunFuture]]:
    """Wait for all futures; return (done, not_done) like ``concurrent.futures.wait``."""
    futs = list(futures)
    by_inner = {f._inv.future: f for f in futs}
    done, not_done = concurrent.futures.wait(list(by_inner), timeout=timeout)
    return {by_inner[d] for d in done}, {by_inner[n] for n in not_done}


def as_completed(
    futures: Iterable[StepRunFuture], timeout: float | None = None
) -> Iterator[StepRunFuture]:
    """Yield futures as their steps finish."""
    futs = list(futures)
    by_inner: dict[concurrent.futures.Future[Any], list[StepRunFuture]] = {}
    for f in futs:
        by_inner.setdefault(f._inv.future, []).append(f)
    for inner in concurrent.futures.as_completed(list(by_inner), timeout=timeout):
        yield from by_inner[inner]
