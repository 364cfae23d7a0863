"""The runtime interface: where a step's code runs.

The engine hands a runtime a ``StepTask`` and gets back a ``Launch``: a handle to watch
(``done``), wait for (``result``) and stop (``cancel``) one attempt. Inline, local
processes and Kubernetes implement the same two methods, so a new runtime is a new
module, not a change to the engine.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable

from .task import StepTask, TaskResult

LogCallback = Callable[[str], None]


class Launch(ABC):
    """One attempt of one step, started by a runtime."""

    @abstractmethod
    def result(self, timeout: float | None = None) -> TaskResult:
        """Block until the attempt ends; errors of the step are in the TaskResult."""

    @abstractmethod
    def done(self) -> bool: ...

    @abstractmethod
    def cancel(self) -> bool:
        """Stop the attempt now if the runtime can (True), else False (it runs to its end)."""


class StepRuntime(ABC):
    """Starts step attempts somewhere: a thread, a worker process, a pod."""

    name: str = "runtime"

    @abstractmethod
    def launch(self, task: StepTask, on_log_line: LogCallback | None = None) -> Launch: ...

    def attempts_at_once(self) -> int | None:
        """How many attempts run at once, if the runtime bounds it (the engine keeps a few
        waiting threads per attempt, not one per step in flight); None: no known bound."""
        return None

    def shutdown(self) -> None:  # noqa: B027 - optional: runtimes without workers keep nothing to release
        """Release workers; called when the runtime is no longer needed."""


class CompletedLaunch(Launch):
    """A launch whose result is already known (inline runtime)."""

    def __init__(self, result: TaskResult) -> None:
        self._result = result

    def result(self, timeout: float | None = None) -> TaskResult:
        return self._result

    def done(self) -> bool:
        return True

    def cancel(self) -> bool:
        return False
