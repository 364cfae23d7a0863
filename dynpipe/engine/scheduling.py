"""When invocations start: after their upstream work, on a pool; held, released, abandoned."""

from __future__ import annotations

from concurrent.futures import Future
from typing import Any

from ..status import ExecutionStatus
from .context import RunContext
from .execution import run_invocation
from .invocation import Invocation
from .transitions import transition

S = ExecutionStatus


def schedule(inv: Invocation) -> None:
    """Start ``inv`` on a pool once every upstream invocation has finished."""
    pending = [d for d in inv.deps if not d.future.done()]
    if not pending:
        _dispatch(inv)
        return
    remaining = [len(pending)]
    lock = inv.ctx.lock

    def on_done(_: Future[Any]) -> None:
        with lock:
            remaining[0] -= 1
            ready = remaining[0] == 0
        if ready:
            _dispatch(inv)

    for dep in pending:
        dep.future.add_done_callback(on_done)


def _dispatch(inv: Invocation) -> None:
    pool = inv.ctx.isolated_pool() if inv.cfg.runtime == "isolated" else inv.ctx.inline_pool()
    try:
        pool.submit(run_invocation, inv)
    except RuntimeError:  # pool shut down: the run is over
        transition(inv, S.SKIPPED, reason="the run ended before this step could start")
        inv.ctx.untrack(inv)


def release_held(ctx: RunContext) -> None:
    """Static pipelines: start the compiled DAG."""
    held, ctx.held = ctx.held, []
    for inv in held:
        schedule(inv)


def abandon_held(ctx: RunContext, reason: str) -> None:
    """Compiled but never started (the pipeline function failed): record as skipped."""
    held, ctx.held = ctx.held, []
    for inv in held:
        transition(inv, S.SKIPPED, reason=reason)
        ctx.untrack(inv)


def abandon_outstanding(ctx: RunContext, reason: str) -> None:
    """Record every step still in flight as stopped without waiting for it.

    Used after an interrupt once the grace period is over: an inline step cannot be killed
    inside its thread, so its eventual result is discarded (its thread is a daemon).
    """
    with ctx.lock:
        pending = [inv for inv in ctx.outstanding if not inv.future.done()]
    for inv in pending:
        with inv.lock:
            if inv.status.is_finished:
                continue  # it finished on its own meanwhile
            inv.abandoned = True
        transition(inv, S.STOPPED, reason=reason, attempt=max(inv.node.attempts, 1))
        ctx.untrack(inv)
