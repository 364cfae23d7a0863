"""The ``StepTask`` a runtime executes for one attempt of an invocation."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..runtimes.task import StepTask
from .invocation import Invocation


def build_task(inv: Invocation, inputs: Mapping[str, Any], attempt: int) -> StepTask:
    # Most of a task is the same for every call of the step in its run: those fields are
    # gathered once (in its run's effective config) and only the rest is read per attempt
    # (reading all twenty was ~100 bytecodes, a few per cent of an inline step).
    fields = inv.cfg.task_fields or _task_fields(inv)
    return StepTask(
        step_run_id=inv.step_run_id,
        invocation_id=inv.invocation_id,
        parameters=inv.parameters,
        inputs=dict(inputs),  # its own dict: a task may be pickled to a worker
        attempt=attempt,
        **fields,
    )


def _task_fields(inv: Invocation) -> dict[str, Any]:
    ctx, step, cfg = inv.ctx, inv.step, inv.cfg
    cfg.task_fields.update(
        run_id=ctx.run_id,
        run_name=ctx.run_name,
        pipeline_name=ctx.pipeline_name,
        step_name=step.name,
        func=step.entrypoint,
        input_annotations=step.input_annotations,
        outputs=step.outputs,
        materializers=cfg.materializers,
        store_root=str(ctx.store.root),
        echo_logs=cfg.echo_logs,
        capture_logs=cfg.capture_logs,
        settings=cfg.runtime_settings,
        resources=cfg.resources,
        artifact_store=ctx.store.artifact_url or "",  # "": the store's own folder
        dask=cfg.dask,
    )
    return cfg.task_fields
