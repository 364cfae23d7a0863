"""The live DAG of a run: one node per invocation, and change events for observers.

The engine updates nodes from whichever thread runs a step; observers (the notebook
widget, a progress printer) subscribe and are called synchronously with the changed
node, so they must be cheap and do their own throttling.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from itertools import chain
from typing import Any

from ..status import ExecutionStatus

#: Log lines a node keeps for the notebook's details panel (the store keeps the whole log).
LOG_LINES = 1000


def pack(mapping: Mapping[str, Any]) -> tuple[Any, ...]:
    """A small mapping as one flat tuple (key, value, key, value, ...).

    Nodes keep their parameters, inputs and artifacts this way and make a dict when asked:
    a one-item dict is 184 B, the tuple 56 B, and an open run keeps every node.
    """
    return tuple(chain.from_iterable(mapping.items())) if mapping else ()


def unpack(items: tuple[Any, ...]) -> dict[str, Any]:
    return dict(zip(items[::2], items[1::2], strict=True))

Listener = Callable[["RunGraph", "NodeState | None"], None]


class NodeState:
    """What an observer needs to draw one invocation."""

    __slots__ = (
        "invocation_id", "step_name", "status", "upstream", "runtime", "start", "end",
        "attempts", "cached", "error", "traceback", "preview", "log_tail", "_outputs", "_inputs",
        "_parameters", "order", "_artifacts", "queued_at", "loaded_from", "where",
    )

    def __init__(
        self, invocation_id: str, step_name: str, upstream: Sequence[str], runtime: str, order: int
    ) -> None:
        self.invocation_id = invocation_id
        self.step_name = step_name
        self.status = ExecutionStatus.QUEUED
        self.queued_at = time.time()  # submitted: the queue time ends where ``start`` begins
        self.upstream = upstream
        self.runtime = runtime
        self.start: float | None = None
        self.end: float | None = None
        self.attempts = 0
        self.cached = False
        self.error: str | None = None
        self.traceback: str | None = None
        self.preview: str | None = None
        # Created on the first log line: most steps print nothing, and an empty
        # deque costs ~600 bytes per node in a 10,000-step run.
        self.log_tail: deque[str] | tuple[()] = ()
        # Packed (``pack``); read and set through the properties below.
        self._outputs: tuple[str, ...] | None = None
        self._inputs: tuple[Any, ...] = ()
        self._parameters: tuple[Any, ...] = ()
        self._artifacts: tuple[Any, ...] = ()
        self.order = order
        # Upstream steps whose loaded value (``future.load()``) this step received, so the
        # view can draw those edges apart (they are in ``upstream`` too).
        self.loaded_from: Sequence[str] = ()
        #: Where the latest attempt runs or ran, as its runtime says it ("pid 1234",
        #: "dask tcp://10.0.0.5:40123 (host node-5, pid 1234)"); None: inline, or not known.
        self.where: str | None = None

    @property
    def outputs(self) -> list[str]:
        """The step's output names: its artifacts' names (kept apart only if they differ)."""
        names = self._outputs
        return list(self._artifacts[::2] if names is None else names)

    @outputs.setter
    def outputs(self, names: Sequence[str]) -> None:
        names = tuple(names)
        self._outputs = None if names == self._artifacts[::2] else names

    @property
    def inputs(self) -> dict[str, Any]:
        """Input name -> artifact version id (a list of them for a list input)."""
        return unpack(self._inputs)

    @inputs.setter
    def inputs(self, inputs: Mapping[str, Any]) -> None:
        self._inputs = pack(inputs)

    @property
    def parameters(self) -> dict[str, Any]:
        return unpack(self._parameters)

    @parameters.setter
    def parameters(self, parameters: Mapping[str, Any]) -> None:
        self._parameters = pack(parameters)

    @property
    def artifacts(self) -> dict[str, str]:
        """Output name -> artifact version id, once the step has produced (or reused) them."""
        return unpack(self._artifacts)

    @artifacts.setter
    def artifacts(self, artifacts: Mapping[str, str]) -> None:
        self._artifacts = pack(artifacts)
        if self._outputs == self._artifacts[::2]:
            self._outputs = None  # the same names: read from the artifacts

    @property
    def duration(self) -> float | None:
        if self.start is None:
            return None
        return (self.end or time.time()) - self.start

    @property
    def queue_time(self) -> float | None:
        """Seconds between submission and the start of its first attempt (None: not started)."""
        if self.start is None:
            return None
        return max(0.0, self.start - self.queued_at)

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.invocation_id,
            "step": self.step_name,
            "status": self.status,
            "upstream": list(self.upstream),
            "loaded_from": list(self.loaded_from),
            "queue_time": self.queue_time,
            "runtime": self.runtime,
            "where": self.where,
            "duration": self.duration,
            "attempts": self.attempts,
            "cached": self.cached,
            "error": self.error,
            "traceback": self.traceback,
            "preview": self.preview,
            "logs": list(self.log_tail),
            "outputs": self.outputs,
            "inputs": self.inputs,
            "parameters": {k: short_repr(v) for k, v in self.parameters.items()},
        }


def short_repr(value: Any, limit: int = 80) -> str:
    """``repr`` cut to ``limit`` characters (for details and error messages)."""
    try:
        text = repr(value)
    except Exception as exc:  # noqa: BLE001 - a raising __repr__ must not break a message or view
        text = f"<{type(value).__name__}: repr() raised {type(exc).__name__}>"
    return text if len(text) <= limit else text[: limit - 1] + "…"


class RunGraph:
    """Nodes in call order plus the run's own status; thread-safe."""

    def __init__(self, run_id: str, run_name: str, pipeline_name: str) -> None:
        self.run_id = run_id
        self.run_name = run_name
        self.pipeline_name = pipeline_name
        self.status = ExecutionStatus.RUNNING
        self.nodes: dict[str, NodeState] = {}
        self._lock = threading.Lock()
        self._listeners: list[Listener] = []
        self.version = 0

    def add_node(self, invocation_id: str, step_name: str, upstream: Sequence[str], runtime: str) -> NodeState:
        with self._lock:
            node = NodeState(invocation_id, step_name, upstream, runtime, len(self.nodes))
            self.nodes[invocation_id] = node
        self._notify(node)
        return node

    def update(self, node: NodeState, **changes: Any) -> None:
        for key, value in changes.items():
            setattr(node, key, value)
        self._notify(node)

    # The two updates every step makes, as plain attribute writes: ``update`` builds a keyword
    # dict and calls ``setattr`` (and the packing setters) per field, ~150 bytecodes a call.
    def set_running(self, node: NodeState, attempts: int, start: float | None = None) -> None:
        """``update(node, status=RUNNING, attempts=..., start=...)`` (``start``: first attempt)."""
        node.status = ExecutionStatus.RUNNING
        node.attempts = attempts
        if start is not None:
            node.start = start
        self._notify(node)

    def set_outputs(
        self, node: NodeState, status: ExecutionStatus, end: float, artifacts: Mapping[str, str],
        preview: str | None, attempts: int | None = None, start: float | None = None,
    ) -> None:
        """A step that produced (or reused) ``artifacts``: their names are its outputs.

        Completed: ``attempts`` given, its error cleared; cached: ``start`` given, ``cached`` set.
        """
        node.status = status
        node.end = end
        node.preview = preview
        node._artifacts = pack(artifacts)
        node._outputs = None  # its outputs are its artifacts' names
        if attempts is not None:
            node.attempts = attempts
            node.error = None
        if start is not None:
            node.start = start
            node.cached = True
        self._notify(node)

    def add_log_line(self, node: NodeState, line: str) -> None:
        tail = node.log_tail
        if not isinstance(tail, deque):
            tail = node.log_tail = deque(maxlen=LOG_LINES)
        tail.append(line)
        self._notify(node)

    def set_status(self, status: ExecutionStatus) -> None:
        self.status = status
        self._notify(None)

    def subscribe(self, listener: Listener) -> Callable[[], None]:
        with self._lock:
            self._listeners.append(listener)

        def unsubscribe() -> None:
            with self._lock:
                if listener in self._listeners:
                    self._listeners.remove(listener)

        return unsubscribe

    def snapshot(self) -> list[NodeState]:
        with self._lock:
            return list(self.nodes.values())

    def counts(self) -> dict[str, int]:
        result: dict[str, int] = {}
        for node in self.snapshot():
            result[node.status] = result.get(node.status, 0) + 1
        return result

    def _notify(self, node: NodeState | None) -> None:
        self.version += 1
        if not self._listeners:
            return
        for listener in list(self._listeners):
            try:
                listener(self, node)
            except Exception:  # noqa: BLE001 - an observer must never break a run
                pass
