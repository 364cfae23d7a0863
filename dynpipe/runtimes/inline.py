"""Inline runtime: the step runs in the calling thread of the orchestrating process."""

from __future__ import annotations

from .base import CompletedLaunch, Launch, LogCallback, StepRuntime
from .task import StepTask, execute_task


class InlineRuntime(StepRuntime):
    """Runs the attempt right away in the caller's thread (the engine picks the thread)."""

    name = "inline"

    def launch(self, task: StepTask, on_log_line: LogCallback | None = None) -> Launch:
        return CompletedLaunch(execute_task(task, on_log_line))
