"""The ``StepTask`` a runtime executes for one attempt of an invocation."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..runtimes.task import StepTask
from .invocation import Invocation


def build_task(inv: Invocation, inputs: Mapping[str, Any], attempt: int) -> StepTask:
    # Most of a task is the same for every call of the step in its run: those fields are
    # gathered once, with its run's effective config, and only the rest is read per attempt
    # (reading all twenty was ~100 bytecodes, a few per cent of an inline step).
    fields = inv.cfg.task_fields
    return StepTask(
        step_run_id=inv.step_run_id,
        invocation_id=inv.invocation_id,
        parameters=inv.parameters,
        inputs=dict(inputs),  # its own dict: a task may be pickled to a worker
        attempt=attempt,
        **fields,
    )

