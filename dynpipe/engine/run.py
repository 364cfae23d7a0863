"""Run lifecycle shared by pipelines and notebook sessions: start, finish, summarise."""

from __future__ import annotations

import traceback as tb
import warnings
from typing import Any

from ..config import ExecutionMode, PipelineConfig
from ..store.models import ExecutionStatus, PipelineRun
from ..store.store import Store
from .context import RunContext


def start_run(
    pipeline_name: str,
    config: PipelineConfig,
    store: Store,
    *,
    known_steps: set[str] | None = None,
    parent: RunContext | None = None,
    unlisted: bool = False,
) -> RunContext:
    ctx = RunContext(
        pipeline_name=pipeline_name,
        config=config,
        store=store,
        known_steps=known_steps,
        parent_run_id=parent.run_id if parent else None,
        unlisted=unlisted,
    )
    ctx.begin()
    hook = config.on_init
    if hook is not None:
        try:
            hook()
        except Exception as exc:
            finish_run(ctx, exc)
            raise
    return ctx


def finish_run(ctx: RunContext, body_error: BaseException | None = None) -> ExecutionStatus:
    """Wait for outstanding steps, record the final status, run on_cleanup; idempotent."""
    if ctx.finished:
        return ctx.status
    interrupted = isinstance(body_error, KeyboardInterrupt)
    if ctx.held:
        from .launcher import abandon_held

        abandon_held(ctx, "the pipeline function failed before the DAG was started")
    if interrupted:
        ctx.stop_running("interrupted")
    elif body_error is not None and ctx.mode is ExecutionMode.FAIL_FAST:
        ctx.stop_running(f"pipeline function raised {type(body_error).__name__}")
    elif body_error is not None:
        ctx.stop_event.set()  # no new steps start; running ones finish
    try:
        ctx.wait_idle()
    except KeyboardInterrupt:
        ctx.stop_running("interrupted")
        ctx.wait_idle(timeout=10)
        interrupted = True
    if interrupted:
        status = ExecutionStatus.STOPPED
    elif ctx.failed_steps or body_error is not None:
        status = ExecutionStatus.FAILED
    else:
        status = ExecutionStatus.COMPLETED
    error = None
    if body_error is not None:
        error = "".join(tb.format_exception_only(type(body_error), body_error)).strip()
    elif ctx.first_failure is not None:
        error = f"step {ctx.first_failure[0]!r} failed: {type(ctx.first_failure[1]).__name__}: {ctx.first_failure[1]}"
    ctx.store.metadata.finish_run(ctx.run_id, status.value, error)
    ctx.status = status
    ctx.finished = True
    ctx.graph.set_status(status.value)
    ctx.shutdown_pools(wait=not interrupted)
    hook = ctx.config.on_cleanup
    if hook is not None:
        try:
            hook()
        except Exception as exc:  # noqa: BLE001 - reported, the run record stays as it is
            warnings.warn(
                f"dynpipe: on_cleanup hook of pipeline {ctx.pipeline_name!r} raised"
                f" {type(exc).__name__}: {exc}",
                RuntimeWarning,
                stacklevel=2,
            )
    return status


def load_run(ctx: RunContext) -> PipelineRun:
    from ..store.client import Client

    return Client(ctx.store.root).get_pipeline_run(ctx.run_id)


def failure_to_raise(ctx: RunContext) -> BaseException | None:
    """The exception a caller of a failed run receives: the first failed step's own error."""
    if ctx.first_failure is None:
        return None
    invocation_id, exc = ctx.first_failure
    note = f"dynpipe: step {invocation_id!r} failed; run {ctx.run_name!r} is 'failed'"
    if hasattr(exc, "add_note") and note not in getattr(exc, "__notes__", []):
        exc.add_note(note)
    return exc


def summary_line(ctx: RunContext) -> str:
    counts = ctx.graph.counts()
    parts = ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))
    return f"run {ctx.run_name!r} ({ctx.pipeline_name}): {ctx.status.value}; {parts or 'no steps'}"


