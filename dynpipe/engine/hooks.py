"""Step hooks (``on_success`` / ``on_failure``): run with the step's context, never fatal."""

from __future__ import annotations

import inspect
import traceback as tb
import warnings
from typing import Any

from ..runtimes.task import StepContext, reset_step_context, set_step_context
from .invocation import Invocation
from .tasks import build_task


def run_hook(inv: Invocation, hook: Any, exc: BaseException | None) -> str:
    """Run a success/failure hook with the step context set; return a report if it raised."""
    if hook is None:
        return ""
    task = build_task(inv, inv.input_refs, inv.node.attempts or 1)
    step_ctx = StepContext(task, _hook_inputs(inv))
    step_ctx.exception = exc
    token = set_step_context(step_ctx)
    try:
        if exc is not None and _takes_argument(hook):
            hook(exc)
        else:
            hook()
        return ""
    except Exception as hook_exc:  # noqa: BLE001 - a hook must not corrupt the run record
        kind = "on_failure" if exc is not None else "on_success"
        message = (
            f"dynpipe: {kind} hook {getattr(hook, '__name__', hook)!r} of step"
            f" {inv.invocation_id!r} raised {type(hook_exc).__name__}: {hook_exc}"
        )
        warnings.warn(message, RuntimeWarning, stacklevel=2)
        return "\n" + message + "\n" + "".join(tb.format_exception(type(hook_exc), hook_exc, hook_exc.__traceback__))
    finally:
        reset_step_context(token)


def _hook_inputs(inv: Invocation) -> dict[str, Any]:
    """The step's input values for ``get_step_context().inputs`` inside a hook (loaded again)."""
    store = inv.ctx.store
    values: dict[str, Any] = {}
    for name, ref in inv.input_refs.items():
        try:
            if isinstance(ref, list):
                values[name] = [store.load_value(r.uri, r.materializer, r.data_type, r.size) for r in ref]
            else:
                values[name] = store.load_value(ref.uri, ref.materializer, ref.data_type, ref.size)
        except Exception:  # noqa: BLE001 - a hook still runs without an unreadable input
            continue
    return values


def _takes_argument(fn: Any) -> bool:
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return False
    return any(p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD, p.VAR_POSITIONAL) for p in params)
