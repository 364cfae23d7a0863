"""The ``application/vnd.dynpipe.dag+json`` payload: a run's DAG as plain JSON.

The JupyterLab extension renders it without a kernel, so a saved notebook keeps an
interactive DAG. The notebook side puts ``dag_payload(graph)`` into each ``%%pipeline``
output bundle beside the widget view; the REST API sends the same shape for stored runs,
so one renderer serves both. This module imports nothing from jupyter_server or tornado:
kernels call it.

Payload (``version`` 1)::

    {"version": 1,
     "run": {"id": str, "name": str, "pipeline": str, "status": str},
     "nodes": [{"id": str, "label": str, "step": str, "status": str,
                "duration": float | null, "attempts": int, "cached": bool,
                "error": str | null, "upstream": [str, ...]}, ...]}

``nodes`` are in call order; ``upstream`` lists ids of nodes in the same payload (edges
to steps outside it are dropped so the renderer never draws a dangling edge).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..engine.dag import NodeState, RunGraph
    from ..store.models import PipelineRun

MIME_TYPE = "application/vnd.dynpipe.dag+json"
PAYLOAD_VERSION = 1
#: Error texts are cut to this many characters: the payload lives in saved notebooks.
ERROR_LIMIT = 2000


def _cut(text: str | None, limit: int = ERROR_LIMIT) -> str | None:
    if text is None or len(text) <= limit:
        return text
    return text[: limit - 1] + "…"


def _node(
    node_id: str, step: str, status: str, duration: float | None, attempts: int, cached: bool,
    error: str | None, upstream: Sequence[str],
) -> dict[str, Any]:
    return {
        "id": node_id,
        "label": node_id,
        "step": step,
        "status": status,
        "duration": round(duration, 3) if duration is not None else None,
        "attempts": int(attempts),
        "cached": bool(cached),
        "error": _cut(error),
        "upstream": list(upstream),
    }


def _from_nodes(nodes: list[NodeState]) -> list[dict[str, Any]]:
    return [
        _node(n.invocation_id, n.step_name, n.status, n.duration, n.attempts, n.cached, n.error, n.upstream)
        for n in nodes
    ]


def _finish(run: dict[str, Any], nodes: list[dict[str, Any]], timings: bool) -> dict[str, Any]:
    known = {n["id"] for n in nodes}
    for n in nodes:
        n["upstream"] = [u for u in n["upstream"] if u in known]
        if not timings:
            n["duration"] = None
    return {"version": PAYLOAD_VERSION, "run": run, "nodes": nodes}


def nodes_payload(
    nodes: list[NodeState], *, run_id: str, run_name: str, pipeline: str, status: str, timings: bool = True
) -> dict[str, Any]:
    """The payload of some nodes of a live run, e.g. the part of the DAG one notebook cell shows."""
    run = {"id": run_id, "name": run_name, "pipeline": pipeline, "status": status}
    return _finish(run, _from_nodes(nodes), timings)


def _from_run(run: PipelineRun) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    head = {"id": run.id, "name": run.name, "pipeline": run.pipeline_name, "status": run.status.value}
    return head, [
        _node(
            s.invocation_id, s.step_name, s.status.value, s.duration, s.attempts, s.cached_from is not None,
            s.error, s.upstream,
        )
        for s in run.steps.values()
    ]


def dag_payload(run_or_graph: PipelineRun | RunGraph, *, timings: bool = True) -> dict[str, Any]:
    """The DAG payload of a stored run (``PipelineRun``) or a live one (``RunGraph``).

    ``timings=False`` leaves every duration ``null``, for outputs saved in notebooks that
    should not change on every re-run (like the text snapshot).
    """
    subject: Any = run_or_graph  # duck-typed: importing the engine here would load it in kernels early
    if hasattr(subject, "snapshot"):
        return nodes_payload(
            subject.snapshot(), run_id=subject.run_id, run_name=subject.run_name,
            pipeline=subject.pipeline_name, status=subject.status, timings=timings,
        )
    if hasattr(subject, "steps"):
        run, nodes = _from_run(subject)
    else:
        raise TypeError(
            f"dag_payload: expected a PipelineRun or a RunGraph, got {type(run_or_graph).__name__}"
        )
    return _finish(run, nodes, timings)
