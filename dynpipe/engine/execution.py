"""Running one invocation: upstream check, inputs, cache lookup, attempts with retries.

Every status change goes through ``transitions.transition``; this module decides which
change comes next. ``call_sync`` is the direct (non-submitted) call: it waits for the
step's inputs in the caller's thread, interruptibly.
"""

from __future__ import annotations

import time
import traceback as tb
from collections.abc import Mapping
from typing import Any

from ..errors import StepSkippedError, StepStoppedError
from ..outputs import OutputArtifact
from ..runtimes.task import InputRef
from ..status import ExecutionStatus
from ..store.artifacts import DB_PREFIX
from ..store.models import ArtifactVersion, load_artifacts
from ..store.records import ArtifactRecord
from ..tracebacks import user_error
from .cache import cache_key
from .context import RunContext
from .invocation import NO_INPUTS, FutureOutput, Invocation
from .tasks import build_task
from .transitions import transition

S = ExecutionStatus


def run_invocation(inv: Invocation) -> None:
    """Run ``inv`` to its end in the current thread; the outcome lands on ``inv.future``."""
    try:
        _run(inv)
    except BaseException as exc:
        if not inv.future.done():
            if isinstance(exc, KeyboardInterrupt):
                transition(inv, S.STOPPED, reason="interrupted", attempt=max(inv.node.attempts, 1))
            else:
                trace = "".join(tb.format_exception(type(exc), exc, exc.__traceback__))
                transition(inv, S.FAILED, exc=exc, traceback=trace, attempt=max(inv.node.attempts, 1))
        if isinstance(exc, KeyboardInterrupt):
            raise
    finally:
        inv.ctx.untrack(inv)
        if inv.future.done():  # else an abandoning thread may still record it
            inv.release_inputs()


def _run(inv: Invocation) -> None:
    ctx = inv.ctx
    inv.started = True
    # Upstream outcomes decide whether this step may run at all.
    for dep in inv.deps:
        upstream_error = dep.future.exception()
        if upstream_error is not None:
            reason = f"upstream step {dep.invocation_id!r} did not complete ({dep.status})"
            error = _skipped_error(inv, dep.invocation_id, upstream_error, reason)
            transition(inv, S.SKIPPED, reason=reason, error=error)
            return
    if ctx.stopping:
        first = ctx.first_failure[0] if ctx.first_failure else None
        why = f"step {first!r} failed ({ctx.mode.value})" if first else "the run was stopped"
        transition(inv, S.SKIPPED, reason=f"not started: {why}")
        return
    inputs, input_hashes, input_ids = _resolve_inputs(inv)
    inv.input_refs = inputs
    inv.input_ids = input_ids
    if input_ids:  # else the node keeps its own empty dict
        inv.node.inputs = {k: (v if isinstance(v, str) else list(v)) for k, v in input_ids.items()}
    key = None
    cfg = inv.cfg
    if cfg.enable_cache:
        key = cache_key(
            step_name=inv.step.name,
            code_hash=inv.step.code_hash,
            parameters=inv.parameters,
            input_hashes=input_hashes,
            input_ids=input_ids,
            config_fingerprint=cfg.fingerprint,
            policy=cfg.cache_policy,
        )
        if _try_cache(inv, key):
            return
    _execute_attempts(inv, inputs, key)


def _skipped_error(inv: Invocation, dep_id: str, upstream: BaseException, reason: str) -> StepSkippedError:
    """The skip error carries the failed step's own error, which a waiting caller raises."""
    error = StepSkippedError(f"step {inv.invocation_id!r} was skipped: {reason}")
    if isinstance(upstream, StepSkippedError):
        if upstream.root_error is not None:  # skipped itself: keep the first failure
            error.root_error, error.root_step = upstream.root_error, upstream.root_step
            error.skipped = (*upstream.skipped, inv.invocation_id)
    elif not isinstance(upstream, StepStoppedError):
        error.root_error, error.root_step, error.skipped = upstream, dep_id, (inv.invocation_id,)
    return error


def _resolve_inputs(inv: Invocation) -> tuple[Mapping[str, Any], dict[str, Any], Mapping[str, Any]]:
    if not inv.sources:
        return NO_INPUTS, {}, NO_INPUTS
    refs: dict[str, Any] = {}
    hashes: dict[str, Any] = {}
    ids: dict[str, Any] = {}
    for name, src in inv.sources.items():
        if isinstance(src, list):
            arts = [_artifact_of(s) for s in src]
            refs[name] = [InputRef(a.id, a.uri, a.materializer, a.data_type or "", a.size) for a in arts]
            hashes[name] = [a.content_hash for a in arts]
            ids[name] = [a.id for a in arts]
        else:
            a = _artifact_of(src)
            refs[name] = InputRef(a.id, a.uri, a.materializer, a.data_type or "", a.size)
            hashes[name] = a.content_hash
            ids[name] = a.id
    return refs, hashes, ids


def _artifact_of(src: Any) -> ArtifactVersion:
    if isinstance(src, FutureOutput):
        return src.artifact()
    return src


def _intact(ctx: RunContext, art: ArtifactRecord | ArtifactVersion) -> bool:
    """A cached output is reused only if its file is there, ours and of its recorded size.

    A small output kept in the metadata database (``db:<hash>``) needs no read: its bytes were
    committed in the transaction that wrote its artifact row, and loading it checks its hash.
    """
    if art.uri == DB_PREFIX + art.content_hash:
        return True
    if art.size is None or not art.content_hash:  # recorded before sizes were: existence only
        return ctx.store.files.exists(art.uri)
    return ctx.store.verify(art.uri, art.size, art.content_hash)


def _try_cache(inv: Invocation, key: str) -> bool:
    """True if a stored run's outputs were reused (the invocation is then cached)."""
    ctx = inv.ctx
    max_age = inv.cfg.cache_policy.max_age_seconds
    cached = ctx.store.metadata.find_cached(key, time.time() - max_age if max_age else None)
    if cached is None:
        return False
    arts: Mapping[str, ArtifactRecord | ArtifactVersion]
    if cached.artifacts is not None:  # read with the lookup
        arts = {r.id: r for r in cached.artifacts}
    else:
        arts = load_artifacts(ctx.store, set(cached.outputs.values()))
    if len(arts) != len(cached.outputs) or not all(_intact(ctx, a) for a in arts.values()):
        return False  # recomputed: the new put replaces a damaged file under its address
    outputs = {
        name: OutputArtifact(ctx.store, inv.invocation_id, ctx.run_id, **_fields(arts[aid]))
        for name, aid in cached.outputs.items()
    }
    for art in outputs.values():
        art.loaded_into = ctx.loaded
    transition(inv, S.CACHED, cached=cached, cache_key=key, outputs=outputs)
    return True


def _fields(art: ArtifactRecord | ArtifactVersion) -> dict[str, Any]:
    fields = getattr(art, "__dict__", None)  # a record's attributes are its fields (passed on, not changed)
    if fields is not None:
        return fields
    return {k: getattr(art, k) for k in ArtifactVersion.__slots__[:-1]}


def _execute_attempts(inv: Invocation, inputs: Mapping[str, Any], key: str | None) -> None:
    ctx = inv.ctx
    node = inv.node
    runtime = ctx.runtime(inv.cfg.runtime)
    # An inline attempt runs inside launch(): it is running from here. Elsewhere the step
    # stays queued until a worker takes the attempt (its duration starts there).
    queued = runtime.name != "inline"
    if not queued and not transition(inv, S.RUNNING):
        return
    retry = inv.cfg.retry
    max_attempts = 1 + (retry.max_retries if retry else 0)
    logs_so_far: list[str] = []
    errors: list[str] = []  # one "Type: message" per failed attempt, for the final note
    attempt = 1
    graph = ctx.graph

    def on_line(line: str) -> None:
        graph.add_log_line(node, line)

    while True:
        attempt_start = time.time()
        task = build_task(inv, inputs, attempt)
        if inv.stop_reason is not None:
            transition(inv, S.STOPPED, reason=inv.stop_reason, logs="".join(logs_so_far), attempt=attempt)
            return
        launch = runtime.launch(task, on_line)
        inv.launch = launch
        if inv.stop_reason is not None:
            # request_stop ran while the launch was starting and saw no launch to cancel.
            launch.cancel()
        try:
            if queued:
                queued = False
                if not _started(inv, launch):
                    launch.cancel()
                    return
            result = launch.result()
            node.where = result.where or node.where  # where this attempt ran, if its runtime says
        except BaseException:
            launch.cancel()
            raise
        finally:
            inv.launch = None
        if len(result.logs) > 0:
            logs_so_far.append(result.logs if max_attempts == 1 else f"--- attempt {attempt} ---\n{result.logs}")
        logs = "".join(logs_so_far)
        if inv.stop_reason is not None:
            transition(inv, S.STOPPED, reason=inv.stop_reason, logs=logs, attempt=attempt)
            return
        if result.error is None and result.error_type is None:  # a worker's error may come as type/message only
            transition(
                inv, S.COMPLETED, result=result, logs=logs, attempt=attempt, cache_key=key,
                attempt_start=attempt_start,
            )
            return
        errors.append(f"{result.error_type}: {result.error_message}")
        if attempt < max_attempts and not ctx.fail_fast_stopping:
            assert retry is not None
            node.where = None  # re-queued: the next attempt's place is not the failed one's worker
            if not transition(inv, S.RETRYING, result=result, attempt=attempt, attempt_start=attempt_start):
                return
            if _wait_unless_stopped(inv, retry.wait_before(attempt)):
                reason = inv.stop_reason or "run stopped while waiting to retry"
                transition(inv, S.STOPPED, reason=reason, logs=logs, attempt=attempt)
                return
            attempt += 1
            if not transition(inv, S.RUNNING, attempt=attempt):
                return
            continue
        transition(
            inv, S.FAILED, result=result, logs=logs, attempt=attempt, attempt_start=attempt_start,
            note=attempts_note(inv.invocation_id, errors) if attempt > 1 else None,
        )
        return


def _started(inv: Invocation, launch: Any) -> bool:
    """Wait until the runtime starts the first attempt, then record the step running.

    A launch that can tell (the local pool's ``wait_started``) gives the moment a worker
    took it; otherwise the attempt counts as started when launched. Stopped meanwhile: the
    step stays queued and the stop below records it.
    """
    wait_started = getattr(launch, "wait_started", None)
    start = wait_started() if wait_started is not None else None
    inv.node.where = getattr(launch, "where", None)  # shown while it runs (a worker pid, a Dask worker)
    if inv.stop_reason is not None:
        return True
    return transition(inv, S.RUNNING, start=start)


def attempts_note(invocation_id: str, errors: list[str]) -> str:
    """Each distinct error of a step's attempts once, with the attempts that raised it."""
    seen: dict[str, list[int]] = {}
    for number, error in enumerate(errors, 1):
        seen.setdefault(error, []).append(number)
    lines = [f"dynpipe: step {invocation_id!r} failed {len(errors)} attempts:"]
    for error, numbers in seen.items():
        label = "attempt" if len(numbers) == 1 else "attempts"
        lines.append(f"  {label} {', '.join(map(str, numbers))}: {error}")
    return "\n".join(lines)


def _wait_unless_stopped(inv: Invocation, delay: float) -> bool:
    """Sleep ``delay`` before a retry; True as soon as this invocation is stopped.

    The run's stop event alone is not enough: under STOP_ON_FAILURE it is set by any
    failure, yet a step that is already running (or retrying) keeps its full delay.
    """
    end = time.monotonic() + delay
    while inv.stop_reason is None:
        left = end - time.monotonic()
        if left <= 0:
            return False
        if not inv.ctx.stop_event.wait(left):
            return False
        time.sleep(min(left, 0.02))
    return True


def call_sync(inv: Invocation) -> Any:
    """Run ``inv`` now in the caller's thread and return its outputs (or raise its error).

    Waiting for the step's inputs is interruptible: a KeyboardInterrupt stops the run and
    propagates (a failed input is not an error here: the step is then skipped).
    """
    for dep in inv.deps:
        try:
            dep.future.exception()
        except KeyboardInterrupt:
            inv.ctx.stop_running("interrupted")
            try:
                transition(inv, S.STOPPED, reason="interrupted while waiting for its inputs")
            finally:
                inv.ctx.untrack(inv)
            raise
    __tracebackhide__ = True
    run_invocation(inv)
    exc = inv.future.exception()
    if exc is not None:
        raise user_error(exc)
    return inv.outputs_to_return(inv.future.result())
