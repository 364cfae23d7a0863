"""Draw a run's DAG: DOT built with the ``graphviz`` package, laid out by ``dot``.

The kernel does the layout so the widget front-end only shows an SVG string. Sibling
invocations of one step collapse into a group node (with a progress count) once there
are more than ``group_threshold`` of them, so a 10,000-way fan-out stays one node.
Without the ``dot`` executable the view degrades to an HTML table with a one-line hint.
"""

from __future__ import annotations

from ..status import FINISHED

import html
import os
import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from ..engine.dag import NodeState

GROUP_THRESHOLD = int(os.environ.get("DYNPIPE_GROUP_THRESHOLD", "12"))
#: An expanded group larger than this stays collapsed (dot on thousands of nodes is slow).
MAX_EXPANDED = 300
#: Members listed in a group's details (failed and unfinished first).
MAX_GROUP_MEMBERS = 200

COLOURS: dict[str, str] = {
    "initializing": "#e0e0e0",
    "running": "#ffcc80",
    "retrying": "#fff59d",
    "completed": "#a5d6a7",
    "cached": "#90caf9",
    "failed": "#ef9a9a",
    "skipped": "#eeeeee",
    "stopped": "#bcaaa4",
}
TERMINAL = FINISHED  # str-enum members compare equal to the status strings
DOT_HINT = (
    "Graphviz 'dot' not found: showing a table. Install it to see the graph"
    " (apt-get install graphviz / brew install graphviz / conda install graphviz)."
)


@dataclass
class Item:
    """One drawn node: a single invocation or a group of sibling invocations."""

    dom_id: str
    label: str
    status: str
    members: list[NodeState] = field(default_factory=list)
    group: str | None = None  # the step name, for group nodes


@dataclass
class View:
    """What a renderer produces for one frame."""

    svg: str = ""
    html: str = ""
    details: dict[str, Any] = field(default_factory=dict)
    summary: str = ""
    items: list[Item] = field(default_factory=list)
    edges: list[tuple[str, str]] = field(default_factory=list)


def dom_id(invocation_id: str) -> str:
    """An SVG/HTML-safe element id for an invocation (stable across frames)."""
    return "dp-n-" + re.sub(r"[^A-Za-z0-9_-]", lambda m: f".{ord(m.group()):x}.", invocation_id)


def group_id(step_name: str) -> str:
    return "dp-g-" + re.sub(r"[^A-Za-z0-9_-]", lambda m: f".{ord(m.group()):x}.", step_name)


def fmt_duration(seconds: float | None) -> str:
    if seconds is None:
        return ""
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 120:
        return f"{seconds:.1f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


def group_status(counts: Counter[str]) -> str:
    """The colour-giving status of a group: the most urgent one present."""
    for status in ("failed", "running", "retrying", "initializing", "stopped", "skipped", "cached"):
        if counts.get(status):
            return status
    return "completed"


def progress_text(counts: Counter[str], total: int) -> str:
    done = sum(n for s, n in counts.items() if s in TERMINAL)
    extra = [f"{counts[s]} {s}" for s in ("failed", "running", "retrying", "cached") if counts.get(s)]
    return f"{done}/{total} done" + (f" · {', '.join(extra)}" if extra else "")


def node_label(node: NodeState, timings: bool = True) -> str:
    marks = []
    if node.cached:
        marks.append("cached")
    if node.attempts > 1:
        marks.append(f"⟳{node.attempts - 1}")
    second = node.status
    if timings and node.start is not None and node.status != "cached":
        second += " · " + fmt_duration(node.duration)
    if marks:
        second += " · " + " ".join(marks)
    return f"{node.invocation_id}\n{second}"


def layout_items(
    nodes: list[NodeState], expanded: set[str] | frozenset[str] = frozenset(),
    threshold: int = GROUP_THRESHOLD, timings: bool = True,
) -> tuple[list[Item], list[tuple[str, str]]]:
    """Group siblings, map every invocation to the item that draws it, derive edges."""
    by_step: dict[str, list[NodeState]] = {}
    for node in nodes:
        by_step.setdefault(node.step_name, []).append(node)
    items: list[Item] = []
    owner: dict[str, str] = {}
    grouped_steps = {
        s for s, members in by_step.items()
        if len(members) > threshold and (s not in expanded or len(members) > MAX_EXPANDED)
    }
    seen_groups: set[str] = set()
    for node in nodes:
        if node.step_name in grouped_steps:
            gid = group_id(node.step_name)
            owner[node.invocation_id] = gid
            if node.step_name not in seen_groups:
                seen_groups.add(node.step_name)
                members = by_step[node.step_name]
                counts = Counter(m.status for m in members)
                label = f"{node.step_name} ×{len(members)}\n{progress_text(counts, len(members))}"
                items.append(Item(gid, label, group_status(counts), members, node.step_name))
            continue
        did = dom_id(node.invocation_id)
        owner[node.invocation_id] = did
        items.append(Item(did, node_label(node, timings), node.status, [node]))
    edges: list[tuple[str, str]] = []
    seen_edges: set[tuple[str, str]] = set()
    for node in nodes:
        dst = owner[node.invocation_id]
        for up in node.upstream:
            src = owner.get(up)
            if src is None or src == dst or (src, dst) in seen_edges:
                continue
            seen_edges.add((src, dst))
            edges.append((src, dst))
    return items, edges


def to_dot(items: list[Item], edges: list[tuple[str, str]]) -> Any:
    import graphviz

    dot = graphviz.Digraph(
        graph_attr={"rankdir": "LR", "bgcolor": "transparent", "nodesep": "0.25", "ranksep": "0.4"},
        node_attr={
            "shape": "box", "style": "rounded,filled", "fontname": "Helvetica", "fontsize": "11",
            "color": "#616161", "penwidth": "1",
        },
        edge_attr={"color": "#9e9e9e", "arrowsize": "0.7"},
    )
    for item in items:
        attrs = {"fillcolor": COLOURS.get(item.status, "#e0e0e0"), "id": item.dom_id, "tooltip": " "}
        if item.group is not None:
            attrs["shape"] = "box3d"
            attrs["style"] = "filled"
        dot.node(item.dom_id, label=item.label, **attrs)
    for src, dst in edges:
        dot.edge(src, dst)
    return dot


def node_details(node: NodeState) -> dict[str, Any]:
    """The compact details the front-end shows on click (pushed with each frame)."""
    data = node.as_dict()
    data["duration"] = fmt_duration(data["duration"]) or None
    data["error"] = _cut(data["error"], 2000)
    data["traceback"] = _cut_head(data["traceback"], 3000)
    data["preview"] = _cut(data["preview"], 500)
    data["logs"] = [_cut(line, 300) for line in data["logs"][-20:]]
    data["inputs"] = {k: _input_text(v) for k, v in data["inputs"].items()}
    data["kind"] = "node"
    # Epoch seconds: the browser advances a running node's duration from its start.
    data["start"] = node.start
    data["end"] = node.end
    return data


_ARTIFACT_ID = re.compile(r"^[0-9a-f]{32}$")


def _input_text(value: Any) -> str:
    """Artifact ids mean nothing to a reader: say 'artifact' (the producer is in upstream)."""
    if isinstance(value, str) and _ARTIFACT_ID.match(value):
        return "artifact"
    if isinstance(value, (list, tuple)) and value and all(isinstance(v, str) and _ARTIFACT_ID.match(v) for v in value):
        return f"[{len(value)} artifacts]"
    return _cut(value if isinstance(value, str) else repr(value), 120) or ""


def _cut_head(text: str | None, limit: int) -> str | None:
    """Keep the end of a traceback (where the error is) when it is too long."""
    if text is None or len(text) <= limit:
        return text
    return "…" + text[-(limit - 1):]


def group_details(item: Item) -> dict[str, Any]:
    members = item.members
    counts = Counter(m.status for m in members)
    urgent = [m for m in members if m.status not in ("completed", "cached")]
    listed = (urgent + [m for m in members if m.status in ("completed", "cached")])[:MAX_GROUP_MEMBERS]
    starts = [m.start for m in members if m.start is not None]
    ends = [m.end for m in members if m.end is not None]
    return {
        # The run header's elapsed time in the browser starts at the earliest start.
        "start": min(starts) if starts else None,
        "end": max(ends) if ends else None,
        "kind": "group",
        "step": item.group,
        "total": len(members),
        "counts": dict(counts),
        "progress": progress_text(counts, len(members)),
        "expandable": len(members) <= MAX_EXPANDED,
        "hidden": len(members) - len(listed),
        "members": [
            [m.invocation_id, m.status, fmt_duration(m.duration), _cut(m.error, 200) or ""] for m in listed
        ],
    }


def _cut(text: str | None, limit: int) -> str | None:
    if text is None:
        return None
    return text if len(text) <= limit else text[: limit - 1] + "…"


def summary_text(name: str, nodes: list[NodeState], run_status: str) -> str:
    counts = Counter(n.status for n in nodes)
    parts = ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))
    state = "open run" if run_status == "running" else f"run {run_status}"
    return f"{name}: {state} — {len(nodes)} steps" + (f" ({parts})" if parts else "")


def html_table(items: list[Item], hint: bool = True) -> str:
    """The dot-less fallback: a readable table of invocations (groups as one row)."""
    rows = []
    for item in items:
        colour = COLOURS.get(item.status, "#e0e0e0")
        label = html.escape(item.label).replace("\n", " — ")
        rows.append(
            f"<tr id='{item.dom_id}' data-dp-status='{item.status}'>"
            f"<td style='background:{colour};padding:2px 8px'>{html.escape(item.status)}</td>"
            f"<td style='padding:2px 8px'>{label}</td></tr>"
        )
    note = f"<div style='font-size:90%;opacity:.75'>{html.escape(DOT_HINT)}</div>" if hint else ""
    return (
        f"{note}<table class='dynpipe-table' style='border-collapse:collapse'>"
        f"<tr><th>status</th><th>invocation</th></tr>{''.join(rows)}</table>"
    )


def dot_available() -> bool:
    from shutil import which

    return which("dot") is not None


def render(
    name: str, nodes: list[NodeState], run_status: str, expanded: set[str] | frozenset[str] = frozenset(),
    timings: bool = True, threshold: int = GROUP_THRESHOLD,
) -> View:
    """One frame: SVG (or an HTML table without dot), node details, a summary line."""
    items, edges = layout_items(nodes, expanded, threshold, timings)
    view = View(items=items, edges=edges, summary=summary_text(name, nodes, run_status))
    for item in items:
        view.details[item.dom_id] = group_details(item) if item.group is not None else node_details(item.members[0])
    if not items:
        view.html = "<i>no steps yet</i>"
        return view
    svg = render_svg(items, edges)
    if svg is None:
        view.html = html_table(items)
    else:
        view.svg = svg
    return view


def render_svg(items: list[Item], edges: list[tuple[str, str]]) -> str | None:
    import graphviz

    try:
        raw = to_dot(items, edges).pipe(format="svg", encoding="utf-8")
    except (graphviz.ExecutableNotFound, OSError):
        return None
    return _strip_svg_prolog(raw)


def render_png(items: list[Item], edges: list[tuple[str, str]]) -> bytes | None:
    import graphviz

    if not items:
        return None
    try:
        return to_dot(items, edges).pipe(format="png", engine="dot")  # type: ignore[no-any-return]
    except (graphviz.ExecutableNotFound, OSError):
        return None


def _strip_svg_prolog(svg: str) -> str:
    """Drop the XML prolog, doctype and generator comments (noise when embedded)."""
    start = svg.find("<svg")
    svg = svg[start:] if start >= 0 else svg
    return re.sub(r"<!--.*?-->\s*", "", svg, flags=re.S)
