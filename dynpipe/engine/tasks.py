"""The ``StepTask`` a runtime executes for one attempt of an invocation."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..runtimes.task import StepTask
from .invocation import Invocation


def build_task(inv: Invocation, inputs: Mapping[str, Any], attempt: int) -> StepTask:
    ctx = inv.ctx
    return StepTask(
        run_id=ctx.run_id,
        run_name=ctx.run_name,
        pipeline_name=ctx.pipeline_name,
        step_run_id=inv.step_run_id,
        invocation_id=inv.invocation_id,
        step_name=inv.step.name,
        func=inv.step.entrypoint,
        parameters=inv.parameters,
        inputs=dict(inputs),  # its own dict: a task may be pickled to a worker
        input_annotations=inv.step.input_annotations,
        outputs=inv.step.outputs,
        materializers=inv.cfg.materializers,
        store_root=str(ctx.store.root),
        attempt=attempt,
        echo_logs=inv.cfg.echo_logs,
        capture_logs=inv.cfg.capture_logs,
        settings=inv.cfg.runtime_settings,
        resources=inv.cfg.resources,
        artifact_store=ctx.store.artifact_url or "",  # "": the store's own folder
        dask=inv.cfg.dask,
    )
