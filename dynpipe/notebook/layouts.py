"""Reuse one ``dot`` layout for every frame of a DAG whose shape did not change.

``dot`` is a subprocess: 50–130 ms of wall time per frame on a busy 2-core machine (most
of it process start-up), competing with the steps for the cores. A live run mostly
changes statuses and timings, not its shape, so a layout is kept per structure (node ids
and kinds, line counts, edges) and a frame is that layout's SVG with each node's text,
fill colour, dash, hover text and the picture's header written in. ``dot`` runs again
only when the structure changes or a label outgrows the box it was laid out in; the
static picture at the end of a cell is the last live layout with its header (a band
drawn here, not dot's graph label, so both kinds of picture share a layout), not a second
``dot`` run. A kernel's runs share one ``Layouts``, so a cell run again draws without
``dot``. Frames drawn in the background run ``dot`` at a lower CPU priority, so it yields
to the steps.
"""

from __future__ import annotations

import html
import re
import shutil
import subprocess
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass

#: Layouts kept by default: the live frame, an expanded variant, static pictures of older cells.
KEEP = 8
#: Seconds ``dot`` may take before the frame is given up (a frame must never hang a cell).
DOT_DEADLINE = 120.0
#: Niceness of a background ``dot`` run (the steps come first).
BACKGROUND_NICE = 10
#: A label may grow this much (in ems) past the widest line laid out in its box: dot
#: leaves about 0.7 em of margin on each side.
SLACK_EM = 0.4
#: dot's minimum node width (0.75 in) less its margins, in ems of the 11 pt label font.
MIN_TEXT_EM = 3.4
#: The header of a static picture (points): font size and the band it adds on top.
HEADER_FONT = 12.0
HEADER_BAND = 21.0

_NARROW = frozenset("ijlI.,:;'|!·()[]/ -ftr")
_WIDE = frozenset("mwMW@%×⟳")


def text_em(text: str) -> float:
    """The rough width of ``text`` in ems (a Helvetica-like estimate). It decides whether
    a new label still fits the box of one laid out before (compared with the same estimate
    of the text that box was made for) and how wide a header band is (generously)."""
    return sum(0.3 if c in _NARROW else 0.85 if c in _WIDE else 0.68 if c.isupper() else 0.56 for c in text)


@dataclass(frozen=True)
class Drawn:
    """What a frame writes into one node of a layout; ``room`` is the text its box is
    laid out for when it needs a new layout (wider than ``lines`` while the step is
    unfinished, so its timings and progress fit later frames without another layout)."""

    dom_id: str
    lines: tuple[str, ...]
    fill: str
    dashed: bool = False
    tooltip: str = " "
    room: tuple[str, ...] = ()


class DotFailed(RuntimeError):
    """``dot`` exited with an error (its message says why)."""


@dataclass
class Layout:
    """A laid-out SVG cut into literal text and the slots a frame fills in."""

    pieces: list[str | tuple[str, str, int]]
    width: float  # points
    height: float
    origin_x: str  # the graph's translate() as dot wrote it
    rooms: dict[str, float]  # dom id -> widest line (ems) its box holds

    def fits(self, nodes: list[Drawn]) -> bool:
        return all(
            n.dom_id in self.rooms and max(map(text_em, n.lines), default=0.0) <= self.rooms[n.dom_id]
            for n in nodes
        )

    def fill(self, nodes: list[Drawn], header: str = "") -> str:
        """The SVG with the nodes' texts, colours, dashes and hover texts, and the header."""
        by_id = {n.dom_id: n for n in nodes}
        out: list[str] = []
        for piece in self.pieces:
            if isinstance(piece, str):
                out.append(piece)
                continue
            kind, dom_id, index = piece
            if kind == "head":
                out.append(self._head(header))
                continue
            node = by_id[dom_id]
            if kind == "text":
                out.append(html.escape(node.lines[index], quote=False))
            elif kind == "fill":
                out.append(html.escape(node.fill))
            elif kind == "dash":
                out.append(' stroke-dasharray="5,2"' if node.dashed else "")
            elif kind == "tip":
                out.append(html.escape(node.tooltip).replace("\n", "&#10;"))
        return "".join(out)

    def _head(self, header: str) -> str:
        """``<svg …>`` and the graph's transform; with a header, a band on top holding it."""
        width, height, band = self.width, self.height, ""
        if header:
            height += HEADER_BAND
            width = max(width, round(text_em(header) * HEADER_FONT * 1.05 + 16))
            band = (
                f'<text text-anchor="start" x="4" y="{-(height - 8) + HEADER_FONT + 1:.2f}"'
                f' font-family="Helvetica,sans-Serif" font-size="{HEADER_FONT:.2f}" fill="#424242">'
                f"{html.escape(header, quote=False)}</text>\n"
            )
        transform = f"scale(1 1) rotate(0) translate({self.origin_x} {height - 4:g})"
        return (
            f'<svg width="{width:.0f}pt" height="{height:.0f}pt"\n viewBox="0.00 0.00 {width:.2f} {height:.2f}"'
            ' xmlns="http://www.w3.org/2000/svg" xmlns:xlink="http://www.w3.org/1999/xlink">\n'
            f'<g id="graph0" class="graph" transform="{transform}">\n{band}'
        )


_SVG_HEAD = re.compile(
    r'<svg width="[\d.]+pt" height="[\d.]+pt"\s+viewBox="[\d.]+ [\d.]+ ([\d.]+) ([\d.]+)"[^>]*>\s*'
    r'<g id="graph0" class="graph" transform="scale\(1 1\) rotate\(0\) translate\(([\d.]+) [\d.]+\)">\n?'
)
_GROUP = re.compile(r'<g id="([^"]*)" class="(node|edge|cluster)">')
_TIP = re.compile(r'xlink:title="([^"]*)"')
_SHAPE = re.compile(r'<(?:path|polygon|polyline|ellipse) fill="([^"]*)" stroke="[^"]*"((?: stroke-width="[^"]*")?)'
                    r'(?: stroke-dasharray="[^"]*")?')
_TEXT = re.compile(r"(<text [^>]*>)(.*?)(</text>)", re.S)


def parse(svg: str, nodes: list[Drawn]) -> Layout | None:
    """Cut dot's SVG into a template; None when it is not shaped as expected (then every
    frame gets its own ``dot`` run, as before)."""
    start = svg.find("<svg")
    svg = re.sub(r"<!--.*?-->\s*", "", svg[start:] if start >= 0 else svg, flags=re.S)
    head = _SVG_HEAD.match(svg)
    if head is None:
        return None
    pieces: list[str | tuple[str, str, int]] = [("head", "", 0)]
    wanted = {n.dom_id: n for n in nodes}
    rooms: dict[str, float] = {}
    groups = list(_GROUP.finditer(svg, head.end()))
    pos = head.end()
    for i, group in enumerate(groups):
        dom_id = html.unescape(group.group(1))
        if group.group(2) != "node":
            continue
        node = wanted.get(dom_id)
        end = groups[i + 1].start() if i + 1 < len(groups) else len(svg)
        if node is None:
            return None
        chunk_pieces = _node_pieces(svg, group.end(), end, node)
        if chunk_pieces is None:
            return None
        pieces.append(svg[pos:group.end()])
        pieces.extend(chunk_pieces)
        pos = end
        rooms[dom_id] = max(max(map(text_em, node.room or node.lines), default=0.0), MIN_TEXT_EM) + SLACK_EM
    pieces.append(svg[pos:])
    if set(rooms) != set(wanted):
        return None
    return Layout(pieces, float(head.group(1)), float(head.group(2)), head.group(3), rooms)


def _node_pieces(svg: str, start: int, end: int, node: Drawn) -> list[str | tuple[str, str, int]] | None:
    """The slots of one node's group: hover text, the fill of its shape, the dash of every
    line drawing it (a group's box3d has three), its text lines."""
    chunk = svg[start:end]
    tip = _TIP.search(chunk)
    shapes = list(_SHAPE.finditer(chunk))
    texts = list(_TEXT.finditer(chunk))
    if tip is None or not shapes or len(texts) != len(node.lines) or shapes[0].start() < tip.end():
        return None
    d = node.dom_id
    out: list[str | tuple[str, str, int]] = [chunk[:tip.start(1)], ("tip", d, 0)]
    pos = tip.end(1)
    for i, shape in enumerate(shapes):
        if i == 0:
            out += [chunk[pos:shape.start(1)], ("fill", d, 0)]
            pos = shape.end(1)
        out += [chunk[pos:shape.end(2)], ("dash", d, 0)]
        pos = shape.end()
    for i, text in enumerate(texts):
        out += [chunk[pos:text.end(1)], ("text", d, i)]
        pos = text.start(3)
    out.append(chunk[pos:])
    return out


class Layouts:
    """The layouts of one run's pictures, newest last, by structure (thread-safe)."""

    def __init__(self, keep: int = KEEP) -> None:
        self.keep = keep
        self.dot_runs = 0
        self._layouts: OrderedDict[Hashable, Layout] = OrderedDict()
        self._lock = threading.Lock()
        self._dot = shutil.which("dot")
        self._nice = shutil.which("nice")

    def svg(
        self, key: Hashable, nodes: list[Drawn], source: Callable[[bool], str], header: str = "",
        background: bool = False,
    ) -> str | None:
        """The picture of ``nodes``; None without ``dot``. ``source(full)`` is the DOT text:
        for a layout (boxes sized for each node's ``room``), or the picture itself with
        header and hover texts (``full``) when dot's SVG cannot be cut into a template."""
        with self._lock:
            layout = self._layouts.get(key)
            if layout is not None:
                self._layouts.move_to_end(key)
        if layout is None or not layout.fits(nodes):
            raw = self.run_dot(source(False), background)
            if raw is None:
                return None
            layout = parse(raw, nodes)
            if layout is None:
                full = self.run_dot(source(True), background)  # the real labels, header and hover texts
                return None if full is None else strip_prolog(full)
            with self._lock:
                self._layouts[key] = layout
                while len(self._layouts) > self.keep:
                    self._layouts.popitem(last=False)
        return layout.fill(nodes, header)

    def run_dot(self, source: str, background: bool) -> str | None:
        """``dot -Tsvg`` on ``source`` (niced in the background); None when dot is missing."""
        if self._dot is None:
            return None
        cmd = [self._dot, "-Tsvg"]
        if background and self._nice is not None:
            cmd = [self._nice, "-n", str(BACKGROUND_NICE), *cmd]
        with self._lock:
            self.dot_runs += 1
        try:
            done = subprocess.run(cmd, input=source.encode(), capture_output=True, timeout=DOT_DEADLINE, check=False)
        except OSError:
            return None
        except subprocess.TimeoutExpired:
            raise DotFailed(f"dot took longer than {DOT_DEADLINE:g} s to lay out the DAG (stopped)") from None
        if done.returncode != 0:
            raise DotFailed(f"dot failed: {done.stderr.decode(errors='replace').strip()[:500]}")
        return done.stdout.decode()


def strip_prolog(svg: str) -> str:
    """Drop the XML prolog, doctype and generator comments (noise when embedded)."""
    start = svg.find("<svg")
    svg = svg[start:] if start >= 0 else svg
    return re.sub(r"<!--.*?-->\s*", "", svg, flags=re.S)
