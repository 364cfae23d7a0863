"""The static output that replaces a live DAG widget once a cell's work is done.

A MIME bundle any viewer can show without a kernel or widget manager: ``image/svg+xml``
of the DAG (or an HTML table without ``dot``), plus a ``text/plain`` summary that holds no
timings, run ids or paths, so saved notebooks diff cleanly and nbval can compare it.

The picture keeps what the live widget showed: the header (run name, status, counts,
active time), each node's duration, and the click-for-details as hover text. No PNG: the
front ends that matter (JupyterLab, nbconvert HTML, GitHub) all render SVG, and a PNG
per cell made up most of a saved notebook's size. Beside the SVG sits
``application/vnd.dynpipe.dag+json`` (``server/dag_payload.py``): JupyterLab with the
dynpipe extension ranks it above the SVG and draws a clickable, zoomable DAG from it.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from ..display import format_duration, format_status_counts
from ..engine.dag import NodeState
from ..server.dag_payload import MIME_TYPE, nodes_payload
from . import render
from .layouts import Layouts


def text_summary(name: str, nodes: list[NodeState], run_state: str) -> str:
    """Stable plain text: one line per step (siblings counted together), no timings or ids."""
    counts = Counter(n.status for n in nodes)
    parts = format_status_counts(counts, empty="")
    steps = f"{len(nodes)} step" + ("" if len(nodes) == 1 else "s")
    lines = [f"dynpipe run {name!r} ({run_state}): {steps}" + (f" — {parts}" if parts else "")]
    by_step: dict[str, list[NodeState]] = {}
    for node in nodes:
        by_step.setdefault(node.step_name, []).append(node)
    width = max((len(s) + 6 for s in by_step), default=0)
    for step_name, members in by_step.items():
        label = step_name if len(members) == 1 else f"{step_name} ×{len(members)}"
        state: str
        if len(members) == 1:
            state = members[0].status
        else:
            state = format_status_counts(Counter(m.status for m in members))
        lines.append(f"  {label:<{width}} {state}")
    return "\n".join(lines)


def tooltip(item: render.Item) -> str:
    """A node's details as hover text (the static picture cannot be clicked)."""
    if item.group is not None:
        return f"{item.group} ×{len(item.members)}: " + format_status_counts(Counter(m.status for m in item.members))
    node = item.members[0]
    lines = [f"{node.invocation_id} ({node.step_name}, {node.runtime}): {node.status}"]
    if node.start is not None and node.status != "cached":
        lines.append("duration: " + format_duration(node.duration))
    if node.where:
        lines.append("ran on: " + node.where)
    if node.parameters:
        lines.append("parameters: " + ", ".join(f"{k}={v!r}" for k, v in node.parameters.items()))
    for output, artifact in (getattr(node, "artifacts", {}) or {}).items():
        lines.append(f"{output}: Client().get_artifact_version({artifact!r})")
    if node.error:
        lines.append(node.error.splitlines()[0] if node.error.strip() else node.error)
    return "\n".join(line[:300] for line in lines)


def snapshot_bundle(
    name: str, nodes: list[NodeState], run_state: str, run_name: str = "", run_id: str = "",
    layouts: Layouts | None = None,
) -> dict[str, Any]:
    """The MIME bundle of a cell's final DAG: stable text, an SVG with the header,
    durations and hover details, and the DAG payload that the JupyterLab extension draws
    interactively without a kernel (other front ends skip the type they do not know).

    With the run's ``layouts`` the picture reuses the live widget's last layout of the
    same graph (the cell does not wait for another dot run)."""
    items, edges = render.layout_items(nodes)
    bundle: dict[str, Any] = {"text/plain": text_summary(name, nodes, run_state)}
    if not items:
        return bundle
    # Durations are kept: the SVG beside it shows them too, so the bundle changes per run anyway.
    bundle[MIME_TYPE] = nodes_payload(
        nodes, run_id=run_id, run_name=run_name or name, pipeline=name, status=run_state
    )
    header = render.header_text(run_name or name, nodes, run_state)
    svg = render.render_svg(items, edges, header, {item.dom_id: tooltip(item) for item in items}, layouts)
    if svg is None:
        bundle["text/html"] = render.html_table(items, header=header)
        return bundle
    bundle["image/svg+xml"] = svg
    return bundle


def current_parent() -> dict[str, Any] | None:
    """The kernel request now running (the cell that is about to show a DAG), if any."""
    from IPython import get_ipython

    shell = get_ipython()
    publisher = getattr(shell, "display_pub", None)
    header = getattr(publisher, "parent_header", None)
    return {"header": dict(header)} if header else None


def replace_output(bundle: dict[str, Any], display_id: str, parent: dict[str, Any] | None) -> None:
    """Replace a cell's display with ``bundle`` wherever the frontend tracks display ids.

    JupyterLab applies ``update_display_data`` only in the output area of the request the
    message answers (each cell keeps its own display-id map), so it is sent as a reply to
    the cell's own request; nbclient (nbconvert, nbval) reads only the messages of the
    request it is running, so it is sent with the current request's header too (once when
    they are the same). Sent with only one of them, the live widget would stay in the
    saved notebook of the other frontend.
    """
    from IPython import get_ipython
    from IPython.display import update_display

    update_display(bundle, display_id=display_id, raw=True)
    publisher = getattr(get_ipython(), "display_pub", None)
    set_parent = getattr(publisher, "set_thread_parent", None)
    now = getattr(publisher, "parent_header", None) or {}
    if parent is None or set_parent is None or now.get("msg_id") == parent["header"].get("msg_id"):
        return
    token = set_parent(parent)
    try:
        update_display(bundle, display_id=display_id, raw=True)
    finally:
        publisher.reset_thread_parent(token)  # type: ignore[union-attr]
