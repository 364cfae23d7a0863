"""The one way a step run changes status: store, live DAG node and future move together.

``transition(inv, to, ...)`` checks the move against ``ALLOWED`` (anything else is a bug and
raises ``InvalidTransition``), records it in the store (one transaction), updates the DAG
node, runs the step's hook and, for a final status, resolves the invocation's future.

If recording itself raises (a full disk, a value JSON cannot encode, a raising hook or
``__repr__``, a DAG observer), the step is failed with a ``StepRecordingError`` that says
what happened, and its future is resolved all the same: nobody waits forever on
``result()``.
"""

from __future__ import annotations

import time
import traceback as tb
from concurrent.futures import InvalidStateError
from typing import Any

from ..errors import InvalidTransition, StepExecutionError, StepRecordingError, StepSkippedError, StepStoppedError
from ..outputs import OutputArtifact
from ..runtimes.task import TaskResult
from ..signatures import OutputSpec
from ..status import FINISHED, ExecutionStatus
from ..store.records import AttemptRecord, CachedStepRun, NewArtifact, StepOutcome
from ..tracebacks import add_note, safe_text, user_traceback
from .hooks import run_hook
from .invocation import Invocation

S = ExecutionStatus

#: Which status may follow which. Final statuses (``FINISHED``) are never left.
ALLOWED: dict[ExecutionStatus, frozenset[ExecutionStatus]] = {
    # QUEUED: submitted, waiting for its inputs, a thread or a worker; RUNNING once the
    # attempt starts there (for an isolated step: when a worker takes it).
    S.QUEUED: frozenset({S.RUNNING, S.CACHED, S.FAILED, S.SKIPPED, S.STOPPED}),
    S.RUNNING: frozenset({S.RETRYING, S.COMPLETED, S.FAILED, S.STOPPED}),
    S.RETRYING: frozenset({S.RUNNING, S.FAILED, S.STOPPED}),
}


def transition(inv: Invocation, to: ExecutionStatus, **details: Any) -> bool:
    """Move ``inv`` to ``to``; True if it is there now, False if it ended otherwise.

    False means the step was abandoned meanwhile (an interrupted run recorded it stopped)
    or recording failed and the step is failed: either way its future is resolved and the
    caller stops working on it.
    """
    with inv.ctx.status_lock:  # ``inv.lock``, without the property call
        previous = inv.status
        if to not in ALLOWED.get(previous, ()):
            if previous in FINISHED and inv.abandoned:
                return False  # its thread came back after the run gave up on it
            raise InvalidTransition(
                f"step {inv.invocation_id!r}: {previous.value} -> {to.value} is not a valid transition"
            )
        inv.status = to
    try:
        _RECORDERS[to](inv, previous, **details)
        return True
    except Exception as exc:  # noqa: BLE001 - whatever broke, the future gets resolved
        _recording_failed(inv, to, exc)
        return False
    except BaseException:  # KeyboardInterrupt mid-recording: resolve, then let it through
        _force_end(inv, S.STOPPED, StepStoppedError(f"step {inv.invocation_id!r} was stopped: interrupted"))
        raise


# -- recorders: one per target status ---------------------------------------------------


def _to_running(inv: Invocation, previous: ExecutionStatus, *, start: float | None = None, attempt: int = 1) -> None:
    ctx = inv.ctx
    if previous is S.QUEUED:
        start = time.time() if start is None else start
        ctx.starts.add(inv.record(), start)  # committed with its end, or after starts.WINDOW
        ctx.graph.set_running(inv.node, 1, start)
    else:
        ctx.store.metadata.record_retry_started(inv.step_run_id, attempt)
        ctx.graph.set_running(inv.node, attempt)


def _to_retrying(
    inv: Invocation, previous: ExecutionStatus, *, result: TaskResult, attempt: int, attempt_start: float
) -> None:
    inv.ctx.starts.flush(inv.step_run_id)  # the row this updates
    inv.ctx.store.metadata.record_attempt(
        inv.step_run_id,
        AttemptRecord(attempt, S.FAILED, attempt_start, time.time(), result.error_type, result.error_message),
    )
    inv.ctx.graph.update(inv.node, status=S.RETRYING, error=f"{result.error_type}: {result.error_message}")


def _to_completed(
    inv: Invocation, previous: ExecutionStatus, *, result: TaskResult, logs: str, attempt: int,
    cache_key: str | None, attempt_start: float,
) -> None:
    ctx = inv.ctx
    end = time.time()
    artifacts: list[NewArtifact] = []
    outputs: dict[str, OutputArtifact] = {}
    ids: dict[str, str] = {}  # read by the store and kept by the DAG node; nobody changes it
    blobs: list[tuple[str, bytes]] = []  # small outputs' bytes commit with the step row
    specs = inv.step.output_specs
    for name, saved in result.outputs.items():
        spec = specs.get(name)
        art_cfg = spec.artifact_config if spec else None
        art_name = (
            art_cfg.name if art_cfg and art_cfg.name
            else _custom_name(spec) or f"{ctx.pipeline_name}::{inv.invocation_id}::{name}"
        )
        # None when there are none (most outputs): OutputArtifact keeps none as None
        tags = [*saved.tags, *art_cfg.tags] if art_cfg else list(saved.tags) if saved.tags else None
        artifacts.append(
            NewArtifact(
                id=saved.id, name=art_name, uri=saved.uri, content_hash=saved.content_hash,
                data_type=saved.data_type, materializer=saved.materializer,
                producer_step_run_id=inv.step_run_id, run_id=ctx.run_id, output_name=name,
                size=saved.size, metadata=saved.metadata, tags=tags or None,
            )
        )
        art = outputs[name] = OutputArtifact(
            ctx.store, inv.invocation_id, ctx.run_id, id=saved.id, name=art_name, version=None,
            uri=saved.uri, content_hash=saved.content_hash, data_type=saved.data_type,
            materializer=saved.materializer, producer_step_run_id=inv.step_run_id,
            run_id=ctx.run_id, output_name=name, size=saved.size, metadata=saved.metadata, tags=tags,
        )
        art.loaded_into = ctx.loaded
        ids[name] = saved.id
        if saved.inline is not None:
            blobs.append((saved.content_hash, saved.inline))
    start = ctx.starts.take(inv.step_run_id)
    ctx.store.metadata.finish_step_run(
        inv.final_record(),
        StepOutcome(
            status=S.COMPLETED, end=end, attempts=attempt, logs=logs, cache_key=cache_key,
            outputs=ids, artifacts=artifacts, attempt=AttemptRecord(attempt, S.COMPLETED, attempt_start, end),
            blobs=blobs, start=start,
        ),
        batched=start is not None,  # ended within starts.WINDOW, first try: may commit that much later
    )
    ctx.graph.set_outputs(inv.node, S.COMPLETED, end, ids, result.preview, attempts=attempt)
    on_success = inv.cfg.on_success
    if on_success is not None:  # most steps have none: no call
        report = run_hook(inv, on_success, None)
        if report:
            ctx.store.metadata.append_step_log(inv.step_run_id, report)
    inv.future.set_result(outputs)


def _custom_name(spec: OutputSpec | None) -> str | None:
    if spec is None or spec.name.startswith("output"):
        return None
    return spec.name


def _to_cached(
    inv: Invocation, previous: ExecutionStatus, *, cached: CachedStepRun, cache_key: str,
    outputs: dict[str, OutputArtifact],
) -> None:
    ctx = inv.ctx
    now = time.time()
    ctx.store.metadata.record_cache_hit(inv.final_record(), now, cache_key, cached, batched=True)
    ctx.graph.set_outputs(inv.node, S.CACHED, now, cached.outputs, None, start=now)
    inv.future.set_result(outputs)


def _to_failed(
    inv: Invocation, previous: ExecutionStatus, *, exc: BaseException | None = None,
    result: TaskResult | None = None, traceback: str = "", logs: str = "", attempt: int = 1,
    attempt_start: float | None = None, note: str | None = None,
) -> None:
    ctx = inv.ctx
    error_type = error_message = None
    failed_attempt = None
    if result is not None:  # the step's own error, as its attempt reported it
        error_type, error_message = result.error_type, result.error_message
        traceback = result.traceback or ""
        exc = result.error or StepExecutionError(f"{error_type}: {error_message}")
        failed_attempt = AttemptRecord(attempt, S.FAILED, attempt_start, time.time(), error_type, error_message)
    assert exc is not None, "a failure needs an error"
    if note:  # the cell's error, the stored traceback and the DAG details say the same
        add_note(exc, note)
        traceback = f"{traceback.rstrip()}\n{note}\n"
    error_type = error_type or type(exc).__name__
    error_message = error_message if error_message is not None else safe_text(exc)
    report = run_hook(inv, inv.cfg.on_failure, exc)
    end = time.time()
    ctx.store.metadata.finish_step_run(
        inv.final_record(),
        StepOutcome(
            status=S.FAILED, end=end, attempts=attempt, logs=logs + report, attempt=failed_attempt,
            error_type=error_type, error_message=error_message, traceback=traceback,
            start=ctx.starts.take(inv.step_run_id),
        ),
    )
    ctx.graph.update(
        inv.node, status=S.FAILED, end=end, attempts=attempt, error=f"{error_type}: {error_message}",
        traceback=user_traceback(traceback),
    )
    ctx.record_failure(inv.invocation_id, exc)
    inv.future.set_exception(exc)


def _to_stopped(
    inv: Invocation, previous: ExecutionStatus, *, reason: str, logs: str = "", attempt: int = 1
) -> None:
    if previous is S.QUEUED:
        _not_run(inv, S.STOPPED, reason, StepStoppedError(f"step {inv.invocation_id!r} was stopped: {reason}"))
        return
    ctx = inv.ctx
    end = time.time()
    ctx.store.metadata.finish_step_run(
        inv.final_record(),
        StepOutcome(
            status=S.STOPPED, end=end, attempts=attempt, logs=logs, error_type="Stopped",
            error_message=reason, start=ctx.starts.take(inv.step_run_id),
        ),
    )
    ctx.graph.update(inv.node, status=S.STOPPED, end=end, error=reason)
    inv.future.set_exception(StepStoppedError(f"step {inv.invocation_id!r} was stopped: {reason}"))


def _to_skipped(
    inv: Invocation, previous: ExecutionStatus, *, reason: str, error: StepSkippedError | None = None
) -> None:
    _not_run(inv, S.SKIPPED, reason, error or StepSkippedError(f"step {inv.invocation_id!r} was skipped: {reason}"))


def _not_run(inv: Invocation, status: ExecutionStatus, reason: str, exc: BaseException) -> None:
    inv.ctx.starts.take(inv.step_run_id)  # nothing there from a queued step; never written later
    inv.ctx.store.metadata.record_not_run(inv.final_record(), status, time.time(), reason)
    inv.ctx.graph.update(inv.node, status=status, error=reason)
    inv.future.set_exception(exc)


_RECORDERS: dict[ExecutionStatus, Any] = {
    S.RUNNING: _to_running,
    S.RETRYING: _to_retrying,
    S.COMPLETED: _to_completed,
    S.CACHED: _to_cached,
    S.FAILED: _to_failed,
    S.STOPPED: _to_stopped,
    S.SKIPPED: _to_skipped,
}


# -- when recording itself fails ----------------------------------------------------------


def _recording_failed(inv: Invocation, to: ExecutionStatus, cause: Exception) -> None:
    """Fail the step with an error naming what broke; every step here is best effort."""
    message = f"recording step {inv.invocation_id!r} as {to.value} failed: {type(cause).__name__}: {safe_text(cause)}"
    error = StepRecordingError(message)
    error.__cause__ = cause
    _force_end(inv, S.FAILED, error)


def _force_end(inv: Invocation, status: ExecutionStatus, error: BaseException) -> None:
    """End ``inv`` in ``status`` whatever else fails; the future is resolved last, always."""
    with inv.lock:
        inv.status = status
    ctx = inv.ctx
    text = safe_text(error)
    trace = "".join(tb.format_exception(type(error), error, error.__traceback__))
    try:
        ctx.store.metadata.finish_step_run(
            inv.final_record(),
            StepOutcome(
                status=status, end=time.time(), attempts=max(inv.node.attempts, 1), logs="",
                error_type=type(error).__name__, error_message=text, traceback=trace,
                start=ctx.starts.take(inv.step_run_id),
            ),
        )
    except Exception:  # noqa: BLE001 - the store is what failed; the run end marks it
        pass
    try:
        ctx.graph.update(inv.node, status=status, end=time.time(), error=f"{type(error).__name__}: {text}")
    except Exception:  # noqa: BLE001 - an observer failing must not keep the future open
        pass
    try:
        if status is S.FAILED:
            ctx.record_failure(inv.invocation_id, error)
    finally:
        try:
            inv.future.set_exception(error)
        except InvalidStateError:
            pass  # resolved already: the recording failed after the future was set
