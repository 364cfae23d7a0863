"""Draw a run's DAG: DOT built with the ``graphviz`` package, laid out by ``dot``.

The kernel does the layout so the widget front-end only shows an SVG string. Sibling
invocations of one step collapse into a group node (with a progress count) once there
are more than ``group_threshold`` of them, so a 10,000-way fan-out stays one node; an
expanded group is laid out as a grid, not one column thousands of pixels tall.
Without the ``dot`` executable the view degrades to an HTML table with a one-line hint.
"""

from __future__ import annotations

import html
import math
import re
from collections import Counter
from dataclasses import dataclass, field, replace
from typing import Any

from .. import settings
from ..display import escape_control, format_duration, format_status_counts, truncate
from ..engine.dag import NodeState
from ..status import FINISHED
from .layouts import Drawn, Layouts, text_em

#: An expanded group's grid has at least this many rows.
MIN_GRID_ROWS = 12
#: A node's details give its queue time beside its run time from this many seconds on.
QUEUE_SHOWN = 0.1
#: An expanded group larger than this stays collapsed (dot on thousands of nodes is slow).
MAX_EXPANDED = 300
#: Members listed in a group's details (failed and unfinished first).
MAX_GROUP_MEMBERS = 200
#: Parameters are shown in a node's label only while they fit in this many characters.
PARAM_LABEL_WIDTH = 28
#: Characters of a node's log sent to the details panel (the newest ones when cut).
LOG_CHARS = 100_000
#: The status line an unfinished node's box is laid out to hold (see ``room_label``).
ROOM_STATUS = "completed · 888 ms"

COLOURS: dict[str, str] = {
    "queued": "#fafafa",
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
    grid: str | None = None  # the step name, for members of an expanded group


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


def group_status(counts: Counter[Any]) -> str:
    """The colour-giving status of a group: the most urgent one present."""
    for status in ("failed", "running", "retrying", "initializing", "queued", "stopped", "skipped", "cached"):
        if counts.get(status):
            return status
    return "completed"


def progress_text(counts: Counter[Any], total: int) -> str:
    done = sum(n for s, n in counts.items() if s in TERMINAL)
    extra = [f"{counts[s]} {s}" for s in ("failed", "running", "retrying", "queued", "cached") if counts.get(s)]
    return f"{done}/{total} done" + (f" · {', '.join(extra)}" if extra else "")


def param_text(parameters: dict[str, Any], width: int = PARAM_LABEL_WIDTH) -> str:
    """``lr=0.03 depth=4`` when it fits in ``width`` characters, else empty (details have them)."""
    text = " ".join(f"{k}={v!r}" for k, v in parameters.items())
    return escape_control(text) if len(text) <= width else ""


def node_label(node: NodeState, timings: bool = True) -> str:
    """``train lr=0.03`` over ``completed · 1.2 s``; a cached node reads just ``cached``."""
    first = escape_control(node.invocation_id)
    params = param_text(node.parameters)
    if params:
        first += " " + params
    second = str(node.status)
    if timings and node.start is not None and node.status != "cached":
        second += " · " + format_duration(node.duration)
    if node.attempts > 1:
        second += f" · ⟳{node.attempts - 1}"
    return f"{first}\n{second}"


def related_part(nodes: list[NodeState], before: set[str] | frozenset[str]) -> list[NodeState]:
    """The steps started after ``before`` plus everything upstream of them (the whole run
    when nothing new started): earlier, unrelated steps are not drawn as floating nodes."""
    new = [n for n in nodes if n.invocation_id not in before]
    if not before or not new:
        return nodes
    by_id = {n.invocation_id: n for n in nodes}
    keep = {n.invocation_id for n in new}
    stack = [u for n in new for u in n.upstream]
    while stack:
        up = stack.pop()
        if up not in keep and up in by_id:
            keep.add(up)
            stack.extend(by_id[up].upstream)
    return [n for n in nodes if n.invocation_id in keep]


def layout_items(
    nodes: list[NodeState], expanded: set[str] | frozenset[str] = frozenset(),
    threshold: int | None = None, timings: bool = True,
) -> tuple[list[Item], list[tuple[str, str]]]:
    """Group siblings, map every invocation to the item that draws it, derive edges.

    ``threshold`` defaults to ``DYNPIPE_GROUP_THRESHOLD``, read now (a notebook may change it).
    """
    if threshold is None:
        threshold = settings.group_threshold()
    by_step: dict[str, list[NodeState]] = {}
    for node in nodes:
        by_step.setdefault(node.step_name, []).append(node)
    items: list[Item] = []
    owner: dict[str, str] = {}
    big = {s for s, members in by_step.items() if len(members) > threshold}
    grouped_steps = {s for s in big if s not in expanded or len(by_step[s]) > MAX_EXPANDED}
    seen_groups: set[str] = set()
    for node in nodes:
        if node.step_name in grouped_steps:
            gid = group_id(node.step_name)
            owner[node.invocation_id] = gid
            if node.step_name not in seen_groups:
                seen_groups.add(node.step_name)
                members = by_step[node.step_name]
                counts = Counter(m.status for m in members)
                label = f"{escape_control(node.step_name)} ×{len(members)}\n{progress_text(counts, len(members))}"
                items.append(Item(gid, label, group_status(counts), members, node.step_name))
            continue
        did = dom_id(node.invocation_id)
        owner[node.invocation_id] = did
        grid = node.step_name if node.step_name in big else None
        items.append(Item(did, node_label(node, timings), node.status, [node], grid=grid))
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


def grid_rows(count: int) -> int:
    """Rows of an expanded group's grid: about twice as many rows as columns, since a
    node is about twice as wide as it is tall."""
    return max(MIN_GRID_ROWS, math.ceil(math.sqrt(count * 2.5)))


def to_dot(
    items: list[Item], edges: list[tuple[str, str]], header: str = "", tooltips: dict[str, str] | None = None,
) -> Any:
    import graphviz

    graph_attr = {"rankdir": "LR", "bgcolor": "transparent", "nodesep": "0.25", "ranksep": "0.4", "compound": "true"}
    if header:
        graph_attr.update(
            label=header, labelloc="t", labeljust="l", fontname="Helvetica", fontsize="12", fontcolor="#424242",
        )
    dot = graphviz.Digraph(
        graph_attr=graph_attr,
        node_attr={
            "shape": "box", "style": "rounded,filled", "fontname": "Helvetica", "fontsize": "11",
            "color": "#616161", "penwidth": "1",
        },
        edge_attr={"color": "#9e9e9e", "arrowsize": "0.7"},
    )
    grids: dict[str, list[Item]] = {}
    for item in items:
        if item.grid is not None:
            grids.setdefault(item.grid, []).append(item)
        else:
            dot.node(item.dom_id, label=item.label, **_node_attrs(item, tooltips))
    for step, members in grids.items():
        _draw_grid(dot, step, members, tooltips)
    grid_of = {m.dom_id: step for step, members in grids.items() for m in members}
    drawn: set[tuple[str, str]] = set()
    for src, dst in edges:
        # Edges into or out of an expanded group are drawn once, to the group's frame:
        # 300 members fed by one step would otherwise be 300 crossing lines.
        attrs = {}
        src_grid, dst_grid = grid_of.get(src), grid_of.get(dst)
        if dst_grid is not None and src_grid != dst_grid:
            dst, attrs["lhead"] = grids[dst_grid][0].dom_id, "cluster_" + group_id(dst_grid)
        if src_grid is not None and src_grid != dst_grid:
            src, attrs["ltail"] = grids[src_grid][-1].dom_id, "cluster_" + group_id(src_grid)
        if (src, dst) not in drawn:
            drawn.add((src, dst))
            dot.edge(src, dst, **attrs)
    return dot


def _node_attrs(item: Item, tooltips: dict[str, str] | None) -> dict[str, str]:
    # The live widget shows details on click, so no browser tooltip; a static picture
    # has no clicks, and keeps the details as a hover text.
    tip = (tooltips or {}).get(item.dom_id, " ")
    attrs = {"fillcolor": COLOURS.get(item.status, "#e0e0e0"), "id": item.dom_id, "tooltip": tip}
    if item.group is not None:
        attrs["shape"] = "box3d"
        attrs["style"] = "filled"
    elif _isolated(item):
        attrs["penwidth"] = "2.5"  # isolated: its own worker process
        attrs["color"] = "#37474f"
    if item.status == "queued":
        attrs["style"] = attrs.get("style", "rounded,filled") + ",dashed"  # a group stays a box3d
    return attrs


def _isolated(item: Item) -> bool:
    return item.group is None and bool(item.members) and item.members[0].runtime != "inline"


def _draw_grid(dot: Any, step: str, members: list[Item], tooltips: dict[str, str] | None) -> None:
    """An expanded group in a frame, its members in columns of ``grid_rows``: each member
    is chained to the one a column further on by an invisible edge, so dot puts them in
    consecutive ranks instead of one column tens of thousands of pixels tall."""
    rows = grid_rows(len(members))
    with dot.subgraph(name="cluster_" + group_id(step)) as frame:
        frame.attr(label=f"{escape_control(step)} ×{len(members)}", style="rounded,dashed", color="#9e9e9e")
        for item in members:
            frame.node(item.dom_id, label=item.label, **_node_attrs(item, tooltips))
        for i in range(len(members) - rows):
            frame.edge(members[i].dom_id, members[i + rows].dom_id, style="invis")


def node_details(node: NodeState) -> dict[str, Any]:
    """The details the front-end shows on click (pushed with each frame)."""
    data = node.as_dict()
    data["duration"] = format_duration(data["duration"], missing="") or None
    queued = node.queue_time  # waiting for its inputs, a thread or a worker: not run time
    if data["duration"] and queued is not None and queued >= QUEUE_SHOWN:
        data["duration"] += f" (queued {format_duration(queued)} before)"
    data["error"] = truncate(data["error"], 2000) if data["error"] else None
    data["traceback"] = _cut_head(data["traceback"], 3000)
    data["preview"] = truncate(data["preview"], 500) if data["preview"] else None
    data["logs"] = _log_text(_without_attempt_errors(node, data["logs"]))
    data["inputs"] = {k: _input_text(v) for k, v in data["inputs"].items()}
    data["artifacts"] = dict(getattr(node, "artifacts", {}) or {})
    data["kind"] = "node"
    # Epoch seconds: the browser advances a running node's duration from its start.
    data["start"] = node.start
    data["end"] = node.end
    return data


#: A line of the note a step failed on several attempts ends with (engine/execution.py).
_ATTEMPTS_LINE = re.compile(r"^  attempts? \d+(?:, \d+)*: (.+)$")


def _without_attempt_errors(node: NodeState, lines: list[str]) -> list[str]:
    """A failed step's log without the one-line echo of each attempt's error: the panel's error
    section shows the traceback and lists each distinct error once with its attempt numbers."""
    if node.status != "failed" or not node.error:
        return lines  # while it runs or retries, the echo is the news
    shown = {node.error}
    for line in (node.traceback or "").splitlines():
        match = _ATTEMPTS_LINE.match(line)
        if match:
            shown.add(match.group(1))
    return [line for line in lines if line not in shown]


def _log_text(lines: list[str]) -> str:
    """The node's log as one text (the newest ``LOG_CHARS`` characters if it is huge)."""
    text = "\n".join(lines)
    return _cut_head(text, LOG_CHARS) or ""


_ARTIFACT_ID = re.compile(r"^[0-9a-f]{32}$")


def _input_text(value: Any) -> str:
    """Artifact ids mean nothing to a reader: say 'artifact' (the producer is in upstream)."""
    if isinstance(value, str) and _ARTIFACT_ID.match(value):
        return "artifact"
    if isinstance(value, (list, tuple)) and value and all(isinstance(v, str) and _ARTIFACT_ID.match(v) for v in value):
        return f"[{len(value)} artifacts]"
    return truncate(value if isinstance(value, str) else repr(value), 120)


def _cut_head(text: str | None, limit: int) -> str | None:
    """Keep the end of a traceback or log (where the error is) when it is too long."""
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
            [m.invocation_id, m.status, format_duration(m.duration, missing=""), truncate(m.error or "", 200)]
            for m in listed
        ],
    }


def summary_text(name: str, nodes: list[NodeState], run_status: str) -> str:
    counts = Counter(n.status for n in nodes)
    parts = format_status_counts(counts, empty="")
    state = "open run" if run_status == "running" else f"run {run_status}"
    return f"{name}: {state} — {len(nodes)} steps" + (f" ({parts})" if parts else "")


def header_text(run_name: str, nodes: list[NodeState], run_state: str) -> str:
    """``demo-2026_01_01 · completed · 3 steps (3 completed) · active 4.2 s``: the live
    widget's header, kept in the static picture."""
    counts = Counter(n.status for n in nodes)
    steps = f"{len(nodes)} step" + ("" if len(nodes) == 1 else "s")
    parts = format_status_counts(counts, empty="")
    text = f"{escape_control(run_name)} · {run_state} · {steps}" + (f" ({parts})" if parts else "")
    starts = [n.start for n in nodes if n.start is not None]
    ends = [n.end for n in nodes if n.end is not None]
    if starts and ends:
        text += " · active " + format_duration(max(ends) - min(starts))
    return text


def html_table(items: list[Item], hint: bool = True, header: str = "") -> str:
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
    head = f"<div class='dp-head'>{html.escape(header)}</div>" if header else ""
    return (
        f"{head}{note}<table class='dynpipe-table' style='border-collapse:collapse'>"
        f"<tr><th>status</th><th>invocation</th></tr>{''.join(rows)}</table>"
    )


def dot_available() -> bool:
    from shutil import which

    return which("dot") is not None


def render(
    name: str, nodes: list[NodeState], run_status: str, expanded: set[str] | frozenset[str] = frozenset(),
    timings: bool = True, threshold: int | None = None, layouts: Layouts | None = None, background: bool = False,
) -> View:
    """One frame: SVG (or an HTML table without dot), node details, a summary line.

    ``layouts`` keeps the run's dot layouts (a frame whose graph kept its shape reuses
    one); ``background`` frames run dot at a lower priority than the steps."""
    items, edges = layout_items(nodes, expanded, threshold, timings)
    view = View(items=items, edges=edges, summary=summary_text(name, nodes, run_status))
    for item in items:
        view.details[item.dom_id] = group_details(item) if item.group is not None else node_details(item.members[0])
    if not items:
        view.html = "<i>no steps yet</i>"
        return view
    svg = render_svg(items, edges, layouts=layouts, background=background)
    if svg is None:
        view.html = html_table(items)
    else:
        view.svg = svg
    return view


def room_label(item: Item) -> str:
    """The label a box is laid out for: an unfinished node's box holds a typical finished
    status line, a group's its count with every member done, so the timings and progress
    of later frames fit the same layout."""
    if item.status in TERMINAL:
        return item.label
    first, _, second = item.label.partition("\n")
    if item.group is not None:
        second = re.sub(r"^\d+/", f"{len(item.members)}/", second)
    elif text_em(second) < text_em(ROOM_STATUS):
        second = ROOM_STATUS
    return f"{first}\n{second}"


def render_svg(
    items: list[Item], edges: list[tuple[str, str]], header: str = "", tooltips: dict[str, str] | None = None,
    layouts: Layouts | None = None, background: bool = False,
) -> str | None:
    """The SVG of ``items`` (None without dot): the layout of the same structure when
    ``layouts`` has one whose boxes hold the labels, else a new dot layout."""
    tips = tooltips or {}
    rooms = [room_label(i) for i in items]
    drawn = [
        Drawn(i.dom_id, tuple(i.label.split("\n")), COLOURS.get(i.status, "#e0e0e0"), i.status == "queued",
              tips.get(i.dom_id, " "), tuple(room.split("\n")))
        for i, room in zip(items, rooms, strict=True)
    ]
    # What decides dot's layout besides the label sizes (checked by the layout itself).
    key = (
        tuple((i.dom_id, i.label.count("\n"), i.grid, _isolated(i)) for i in items),
        tuple(edges),
    )

    def source(full: bool) -> str:
        if full:
            return str(to_dot(items, edges, header, tooltips).source)
        sized = [replace(i, label=room) for i, room in zip(items, rooms, strict=True)]
        return str(to_dot(sized, edges).source)

    return (layouts or Layouts()).svg(key, drawn, source, header, background)
