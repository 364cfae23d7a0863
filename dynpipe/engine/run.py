"""Run lifecycle shared by pipelines and notebook sessions: start, finish, summarise."""

from __future__ import annotations

import contextlib
import traceback as tb
import warnings

from .. import settings
from ..config import ExecutionMode, PipelineConfig
from ..errors import StoreError
from ..runtimes.logs import attach_log_capture, detach_log_capture
from ..runtimes.stop_signals import STOP_SIGNALS
from ..status import ExecutionStatus
from ..store.models import PipelineRun, load_pipeline_run
from ..store.store import Store
from .context import RunContext
from .scheduling import abandon_held, abandon_outstanding

#: Seconds an interrupted run waits for stopped steps before recording them as stopped.
STOP_GRACE = 2.0


def start_run(
    pipeline_name: str,
    config: PipelineConfig,
    store: Store,
    *,
    known_steps: set[str] | None = None,
    parent: RunContext | None = None,
    unlisted: bool = False,
) -> RunContext:
    settings.check_run_settings()  # a bad DYNPIPE_* value fails here, before any step exists
    ctx = RunContext(
        pipeline_name=pipeline_name,
        config=config,
        store=store,
        known_steps=known_steps,
        parent_run_id=parent.run_id if parent else None,
        unlisted=unlisted,
    )
    ctx.begin()
    if parent is None:  # SIGTERM/SIGHUP stop a script's run like Ctrl-C (not in a kernel)
        STOP_SIGNALS.acquire(ctx.run_id)
    attach_log_capture()
    hook = config.on_init
    if hook is not None:
        try:
            hook()
        except Exception as exc:
            finish_run(ctx, exc)
            raise
    return ctx


def finish_run(
    ctx: RunContext, body_error: BaseException | None = None, stop_reason: str | None = None
) -> ExecutionStatus:
    """Wait for outstanding steps, record the final status, run on_cleanup; idempotent.

    ``stop_reason`` (or a KeyboardInterrupt as ``body_error``) stops the run instead: running
    steps are stopped, waited for at most ``STOP_GRACE`` seconds, and the run ends ``stopped``.
    """
    if ctx.finished:
        return ctx.status
    if isinstance(body_error, KeyboardInterrupt):
        stop_reason = str(body_error) or "interrupted"  # e.g. "stopped by SIGTERM"
    if ctx.held:
        abandon_held(ctx, "the pipeline function failed before the DAG was started")
    if stop_reason is not None:
        ctx.stop_running(stop_reason)
    elif body_error is not None and ctx.mode is ExecutionMode.FAIL_FAST:
        ctx.stop_running(f"pipeline function raised {type(body_error).__name__}")
    elif body_error is not None and ctx.mode is not ExecutionMode.CONTINUE_ON_FAILURE:
        ctx.stop_event.set()  # no new steps start; running ones finish
    try:
        settled = ctx.wait_idle(timeout=STOP_GRACE if stop_reason is not None else None)
    except KeyboardInterrupt as exc:
        stop_reason = str(exc) or "interrupted"
        ctx.stop_running(stop_reason)
        settled = ctx.wait_idle(timeout=STOP_GRACE)
    if not settled:
        # Isolated steps are killed by now; inline ones cannot be: record them as stopped
        # and discard whatever they return, rather than hold the interrupted caller.
        abandon_outstanding(ctx, stop_reason or "stopped")
    if stop_reason is not None:
        status = ExecutionStatus.STOPPED
    elif ctx.failed_steps or body_error is not None:
        status = ExecutionStatus.FAILED
    else:
        status = ExecutionStatus.COMPLETED
    error = None
    if stop_reason is not None and body_error is None:
        error = f"stopped: {stop_reason}"
    elif body_error is not None:
        error = "".join(tb.format_exception_only(type(body_error), body_error)).strip()
    elif ctx.first_failure is not None:
        error = f"step {ctx.first_failure[0]!r} failed: {type(ctx.first_failure[1]).__name__}: {ctx.first_failure[1]}"
    if ctx.heartbeat is not None:
        ctx.heartbeat.stop()
    with contextlib.suppress(Exception):  # starts still pending, so finish_run marks them stopped
        ctx.starts.flush()
    store_error = _commit_batched(ctx)
    if store_error is not None:  # steps reported finished are not stored: the run failed
        status, error = ExecutionStatus.FAILED, f"{type(store_error).__name__}: {store_error}"
    ctx.store.metadata.finish_run(ctx.run_id, status, error)
    ctx.status = status
    ctx.finished = True
    ctx.loaded.close()
    STOP_SIGNALS.release(ctx.run_id)
    detach_log_capture()
    ctx.graph.set_status(status)
    ctx.shutdown_pools(wait=stop_reason is None)
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
    if store_error is not None and body_error is None:  # else the caller raises the body's error
        raise store_error
    return status


def _commit_batched(ctx: RunContext) -> StoreError | None:
    """Commit the run's batched step records (store/write_batch.py); the error if any batch failed."""
    try:
        ctx.store.metadata.flush(ctx.run_id)
    except StoreError as exc:
        return exc
    return None


def load_run(ctx: RunContext) -> PipelineRun:
    return load_pipeline_run(ctx.store, ctx.run_id)


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


