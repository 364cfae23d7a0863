"""The static output that replaces a live DAG widget once a cell's work is done.

A MIME bundle any viewer can show without a kernel or widget manager: ``image/svg+xml``
and ``image/png`` of the DAG (or an HTML table without ``dot``), plus a ``text/plain``
summary that holds no timings, run ids or paths, so saved notebooks diff cleanly and
nbval can compare it.
"""

from __future__ import annotations

import base64
from collections import Counter
from typing import Any

from ..engine.dag import NodeState
from . import render


#: Drawn items (nodes and group nodes) up to which a snapshot also carries a PNG.
PNG_MAX_ITEMS = 60


def text_summary(name: str, nodes: list[NodeState], run_state: str) -> str:
    """Stable plain text: one line per step (siblings counted together), no timings or ids."""
    counts = Counter(n.status for n in nodes)
    parts = ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))
    steps = f"{len(nodes)} step" + ("" if len(nodes) == 1 else "s")
    lines = [f"dynpipe run {name!r} ({run_state}): {steps}" + (f" — {parts}" if parts else "")]
    by_step: dict[str, list[NodeState]] = {}
    for node in nodes:
        by_step.setdefault(node.step_name, []).append(node)
    width = max((len(s) + 6 for s in by_step), default=0)
    for step_name, members in by_step.items():
        label = step_name if len(members) == 1 else f"{step_name} ×{len(members)}"
        if len(members) == 1:
            state = members[0].status
        else:
            c = Counter(m.status for m in members)
            state = ", ".join(f"{n} {s}" for s, n in sorted(c.items()))
        lines.append(f"  {label:<{width}} {state}")
    return "\n".join(lines)


def snapshot_bundle(name: str, nodes: list[NodeState], run_state: str) -> dict[str, Any]:
    """The MIME bundle of the final DAG (no durations, so it is the same on every run)."""
    items, edges = render.layout_items(nodes, timings=False)
    bundle: dict[str, Any] = {"text/plain": text_summary(name, nodes, run_state)}
    if not items:
        return bundle
    svg = render.render_svg(items, edges)
    if svg is None:
        bundle["text/html"] = render.html_table(items)
        return bundle
    bundle["image/svg+xml"] = svg
    # The PNG is for viewers without SVG; past a size it would weigh megabytes in the
    # saved notebook (and cairo refuses huge canvases), so large DAGs keep the SVG only.
    png = render.render_png(items, edges) if len(items) <= PNG_MAX_ITEMS else None
    if png is not None:
        bundle["image/png"] = base64.b64encode(png).decode("ascii")
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
