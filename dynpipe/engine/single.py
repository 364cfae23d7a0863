"""A step called outside any pipeline: an unlisted one-step run of its own."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..config import PipelineConfig
from ..store.store import open_store
from .binding import prepare
from .execution import call_sync
from .run import finish_run, start_run

if TYPE_CHECKING:
    from ..steps import Step


def run_single_step(step: Step[Any, Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    """Run ``step`` in an unlisted one-step run; return the loaded output(s)."""
    store = open_store()
    ctx = start_run(step.name, PipelineConfig(dynamic=True), store, unlisted=True)
    ctx.activate()
    body_error: BaseException | None = None
    result: Any = None
    try:
        inv = prepare(ctx, step, args, kwargs)
        result = call_sync(inv)
    except BaseException as exc:  # noqa: BLE001 - finish_run records it; re-raised below
        body_error = exc
    finally:
        ctx.deactivate()
    finish_run(ctx, body_error)
    if body_error is not None:
        raise body_error
    if isinstance(result, tuple):
        return tuple(a.load() for a in result)
    return result.load() if result is not None else None
