"""The live DAG widget and the throttled feed that keeps it current.

The kernel lays the graph out (``render``) and pushes an SVG string plus a compact
per-node details dict into widget traitlets; the front-end (``static/dag_widget.js``, plain
ESM shipped in the widget state, no bundle) swaps the SVG in, shows details on click and
ticks running durations and the run's elapsed time itself, once a second, from the start
stamps in the details (no kernel traffic, no new layout).
Browser-to-kernel messages wait while a cell is busy, so clicks never need the kernel;
the only message the browser sends is the set of expanded groups.

Engine threads call the graph listener on every change, so the listener only sets a
flag; one timer thread per run renders at most ``1 / interval`` frames a second,
coalescing everything that happened in between.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anywidget
import traitlets

from .. import settings
from . import render
from .layouts import Layouts

if TYPE_CHECKING:
    from ..engine.dag import NodeState, RunGraph

#: Seconds between frames at most: 0.25 s = at most 4 updates a second per run.
#: A frame may take at most this share of the feed thread's time: after a frame that took
#: ``c`` seconds the next waits at least ``c / FRAME_SHARE`` (a 100,000-step run's frames
#: cost ~0.3 s each; drawn every interval they would compete with the steps for the GIL).
FRAME_SHARE = 0.1


def frame_gap(interval: float, frame_cost: float) -> float:
    """Seconds from one frame to the next: the interval, or longer after a costly frame."""
    return max(interval, frame_cost / FRAME_SHARE)

#: The front end, real files shipped as package data (linted by ESLint, formatted by Prettier).
STATIC = Path(__file__).with_name("static")
#: The module a closed widget keeps: draws nothing (its output shows the static picture).
CLOSED_ESM = "export default { render() {} };"


class DagWidget(anywidget.AnyWidget):
    """The view: state only; layout happens in the kernel, clicks in the browser."""

    # anywidget reads a Path once when the class is defined (it only watches the file
    # for changes with ANYWIDGET_HMR=1), so the browser gets the text as before.
    _esm = STATIC / "dag_widget.js"
    _css = STATIC / "dag_widget.css"
    svg = traitlets.Unicode("").tag(sync=True)
    html = traitlets.Unicode("").tag(sync=True)
    details = traitlets.Dict({}).tag(sync=True)
    summary = traitlets.Unicode("").tag(sync=True)
    run_status = traitlets.Unicode("running").tag(sync=True)
    run_name = traitlets.Unicode("").tag(sync=True)
    #: The kernel's ``time.time()`` when the frame was drawn: the browser ticks running
    #: durations from the details' start stamps and corrects its own clock by this.
    clock = traitlets.Float(0.0).tag(sync=True)
    expanded = traitlets.List(traitlets.Unicode(), []).tag(sync=True)
    #: The Dask dashboard of the cluster running the run's isolated steps ("": none): a header link.
    dashboard = traitlets.Unicode("").tag(sync=True)

    def __init__(self, before: frozenset[str] = frozenset(), **kwargs: Any) -> None:
        super().__init__(**kwargs)
        #: The run's steps when the cell started: those not feeding this cell's steps are
        #: left out of its picture (kernel side only, never synced).
        self.before = before

    def clear(self) -> None:
        """Drop the picture, details and code (before closing: saved state stays small).

        nbclient saves every widget model's last state, closed ones too, so each cell would
        carry the whole front-end module; a closed view needs none. (``_css`` stays: it is
        one style sheet shared by every widget of the class.)
        """
        with self.hold_sync():
            self.svg = ""
            self.html = ""
            self.details = {}
            self.set_trait("_esm", CLOSED_ESM)  # an instance trait (the class holds a Path)

    def show_frame(self, frame: render.View, run_status: str, run_name: str = "", dashboard: str = "") -> None:
        with self.hold_sync():
            self.clock = time.time()
            self.run_name = run_name
            self.dashboard = dashboard
            self.svg = frame.svg
            self.html = frame.html
            self.details = frame.details
            self.summary = frame.summary
            self.run_status = run_status


class LiveFeed:
    """Owns the data feed of one run: a dirty flag set by graph events, a timer thread
    that renders coalesced frames into every attached widget, and a hook called after
    each frame (the session uses it to swap finished cells for snapshots)."""

    def __init__(
        self, name: str, graph: RunGraph, interval: float | None = None,
        after_frame: Callable[[list[NodeState]], None] | None = None,
        lock: threading.RLock | None = None, layouts: Layouts | None = None,
    ) -> None:
        self.name = name
        self.graph = graph
        self.interval = settings.widget_interval() if interval is None else interval
        self._gap = self.interval  # grows after costly frames (``frame_gap``)
        self._asked = False  # a frame was asked for (``poke``): the interval applies
        self.after_frame = after_frame
        self.widgets: list[DagWidget] = []
        self._dirty = True
        self._lock = lock or threading.RLock()  # shared with the session: one lock order
        self._drawing = threading.Lock()  # one frame at a time, drawn outside ``_lock``
        #: Dot layouts by graph shape (the kernel's, shared by its runs): frames of an
        #: unchanged shape, and the static pictures that replace the widgets, reuse them
        #: instead of running dot again.
        self.layouts = layouts if layouts is not None else Layouts()
        self._wake = threading.Event()
        self._stopped = threading.Event()
        self._unsubscribe = graph.subscribe(self._on_change)
        self.frames = 0
        self._last = 0.0  # monotonic time of the last frame
        self._thread = threading.Thread(target=self._loop, name=f"dynpipe-widget-{name}", daemon=True)
        self._thread.start()

    def _on_change(self, graph: Any, node: Any) -> None:
        # Called synchronously from engine threads on every change: keep it O(1).
        self._dirty = True

    def poke(self) -> None:
        """Ask for a frame soon (a click changed the expanded groups, a cell returned): it
        comes one interval after the last frame, however costly that frame was."""
        self._dirty = True
        self._asked = True
        self._wake.set()

    def attach(self, widget: DagWidget) -> None:
        """Feed a new widget; its first frame comes one interval later, not at once: a
        cell's first moments add steps fastest, and a frame then would be a dot layout
        of a graph about to change shape (a fan-out not yet grouped)."""
        with self._lock:
            self.widgets.append(widget)
            self._last = time.monotonic()
        widget.observe(lambda _change: self.poke(), names="expanded")
        self.poke()

    def detach(self, widget: DagWidget) -> None:
        with self._lock:
            if widget in self.widgets:
                self.widgets.remove(widget)

    def _loop(self) -> None:
        while not self._stopped.is_set():
            self._wake.wait(self.interval)
            self._wake.clear()
            # Never more than one frame per gap, however many events arrived; a frame asked
            # for (``poke``, also during the wait) waits only the interval.
            while not self._stopped.is_set():
                gap = (self.interval if self._asked else self._gap) - (time.monotonic() - self._last)
                if gap <= 0:
                    break
                self._wake.wait(gap)
                self._wake.clear()
            if self._stopped.is_set():
                break
            started = time.monotonic()
            self._asked = False
            try:
                self.refresh()
            except Exception:  # noqa: BLE001 - a broken frame must not kill the feed
                pass
            self._last = time.monotonic()
            self._gap = frame_gap(self.interval, self._last - started)

    def refresh(self, force: bool = False) -> None:
        """Render one frame into every widget if anything changed; then run the hook.

        The frame is drawn without holding the session's lock (a new layout runs dot), so
        a cell that returns meanwhile freezes its widget at once; a widget detached while
        its frame was drawn is left alone."""
        with self._drawing:
            with self._lock:
                nodes = self.graph.snapshot()
                draw = self._dirty or force
                self._dirty = False
                widgets = list(self.widgets) if draw else []
                status = self.graph.status
            plan = [(widget, (tuple(sorted(widget.expanded)), widget.before)) for widget in widgets]
            frames: dict[tuple[tuple[str, ...], frozenset[str]], render.View] = {}
            for _, key in plan:
                if key not in frames:
                    shown = render.related_part(nodes, key[1])
                    frames[key] = render.render(
                        self.name, shown, status, set(key[0]), layouts=self.layouts, background=True,
                    )
            with self._lock:
                if draw:
                    dashboard = dask_dashboard(nodes)
                    for widget, key in plan:
                        if widget in self.widgets:
                            widget.show_frame(frames[key], status, self.graph.run_name, dashboard)
                    self.frames += 1
                if self.after_frame is not None:
                    self.after_frame(nodes)

    def stop(self) -> None:
        """Final frame, then stop the timer thread and the graph subscription."""
        self._unsubscribe()
        self._stopped.set()
        self._wake.set()
        if self._thread is not threading.current_thread():
            self._thread.join(timeout=5)


def dask_dashboard(nodes: list[NodeState]) -> str:
    """The Dask dashboard link of a run with isolated steps on Dask ("" otherwise)."""
    if not any(n.runtime == "isolated" for n in nodes):
        return ""
    from ..runtimes.dask_client import DASK  # loaded by ``import dynpipe`` (``use_dask``): no distributed

    try:
        return DASK.dashboard_link() or ""
    except Exception:  # noqa: BLE001 - e.g. a bad DYNPIPE_ISOLATED_BACKEND: the step says so, not the view
        return ""
