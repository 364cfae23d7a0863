"""The live DAG widget and the throttled feed that keeps it current.

The kernel lays the graph out (``render``) and pushes an SVG string plus a compact
per-node details dict into widget traitlets; the front-end (a few dozen lines of ESM,
shipped in the widget state, no bundle) only swaps the SVG in and shows details on click.
Browser-to-kernel messages wait while a cell is busy, so clicks never need the kernel;
the only message the browser sends is the set of expanded groups.

Engine threads call the graph listener on every change, so the listener only sets a
flag; one timer thread per run renders at most ``1 / interval`` frames a second,
coalescing everything that happened in between.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import anywidget
import traitlets

from . import render

if TYPE_CHECKING:
    from ..engine.dag import NodeState, RunGraph

#: Seconds between frames at most: 0.25 s = at most 4 updates a second per run.
UPDATE_INTERVAL = float(os.environ.get("DYNPIPE_WIDGET_INTERVAL", "0.25"))

_ESM = r"""
function render({ model, el }) {
  el.classList.add("dynpipe-dag");
  const head = document.createElement("div"); head.className = "dp-head";
  const pic = document.createElement("div"); pic.className = "dp-pic";
  const info = document.createElement("div"); info.className = "dp-info";
  el.append(head, pic, info);
  let selected = null;
  let pending = null;  // a group whose expand/collapse the kernel has not drawn yet
  const bar = document.createElement("div"); bar.className = "dp-bar"; head.after(bar);
  const line = (k, v) => { const d = document.createElement("div");
    const b = document.createElement("b"); b.textContent = k + ": "; d.append(b, String(v)); return d; };
  const pre = (t) => { const p = document.createElement("pre"); p.textContent = t; return p; };
  function show() {
    info.replaceChildren();
    const d = selected && model.get("details")[selected];
    if (!d) return;
    if (d.kind === "group") {
      info.append(line("step", d.step + " ×" + d.total), line("progress", d.progress));
      if (d.expandable) { const a = document.createElement("button");
        a.textContent = "expand"; a.onclick = () => toggle(d.step); info.append(a); }
      if (pending === d.step) info.append(line("expanding", "drawn as soon as the kernel is free (a busy cell delays it)"));
      const ul = document.createElement("ul"); ul.className = "dp-members";
      for (const [id, st, dur, err] of d.members) { const li = document.createElement("li");
        li.dataset.dpStatus = st; li.textContent = id + " — " + st + (dur ? " · " + dur : "") + (err ? " — " + err : "");
        ul.append(li); }
      if (d.hidden) { const li = document.createElement("li"); li.textContent = "… and " + d.hidden + " more"; ul.append(li); }
      info.append(ul); return;
    }
    info.append(line("step", d.id + " (" + d.step + ", " + d.runtime + ")"), line("status", d.status));
    if (d.duration) info.append(line("duration", d.duration));
    if (d.attempts > 1) info.append(line("attempts", d.attempts));
    if (d.cached) info.append(line("cached", "yes"));
    if (d.upstream.length) info.append(line("upstream", d.upstream.join(", ")));
    const ins = Object.entries(d.inputs).concat(Object.entries(d.parameters));
    if (ins.length) info.append(line("inputs", ins.map(([k, v]) => k + "=" + v).join(", ")));
    if (d.outputs.length) info.append(line("outputs", d.outputs.join(", ")));
    if (d.preview) info.append(line("preview", d.preview));
    if (d.error) info.append(pre(d.traceback || d.error));
    if (d.logs.length) info.append(pre(d.logs.join("\n")));
  }
  function toggle(step) {
    pending = step;
    const cur = model.get("expanded"); const i = cur.indexOf(step);
    model.set("expanded", i < 0 ? cur.concat([step]) : cur.filter((s) => s !== step));
    model.save_changes();
  }
  function draw() {
    head.textContent = model.get("summary");
    bar.replaceChildren();
    for (const step of model.get("expanded")) { const b = document.createElement("button");
      b.textContent = "collapse " + step; b.onclick = () => toggle(step); bar.append(b); }
    el.dataset.dpRun = model.get("run_status");
    const svg = model.get("svg");
    pic.innerHTML = svg || model.get("html");
    const details = model.get("details");
    if (pending !== null) {  // done once the picture matches the request
      const grouped = Object.values(details).some((d) => d.kind === "group" && d.step === pending);
      if (model.get("expanded").includes(pending) !== grouped) pending = null;
    }
    for (const g of pic.querySelectorAll("g.node")) {
      const d = details[g.id]; if (!d) continue;
      g.dataset.dpStatus = d.kind === "group" ? d.progress : d.status;
      g.style.cursor = "pointer";
      if (g.id === selected) g.classList.add("dp-selected");
    }
    show();
  }
  pic.addEventListener("click", (e) => {
    const g = e.target.closest("g.node, tr[id]"); if (!g) return;
    selected = g.id; draw();
  });
  pic.addEventListener("dblclick", (e) => {
    const g = e.target.closest("g.node"); const d = g && model.get("details")[g.id];
    if (d && d.kind === "group" && d.expandable) toggle(d.step);
  });
  for (const k of ["svg", "html", "details", "summary", "run_status", "expanded"]) model.on("change:" + k, draw);
  draw();
}
export default { render };
"""

_CSS = r"""
.dynpipe-dag { font-family: var(--jp-ui-font-family, sans-serif); font-size: 12px; }
.dynpipe-dag .dp-head { margin: 2px 0 4px; color: var(--jp-ui-font-color1, #333); }
.dynpipe-dag .dp-pic { overflow: auto; max-height: 480px; }
.dynpipe-dag .dp-pic svg { max-width: 100%; height: auto; }
.dynpipe-dag .dp-selected polygon, .dynpipe-dag .dp-selected path { stroke-width: 3; stroke: #1e88e5; }
.dynpipe-dag .dp-info { border-left: 3px solid #90caf9; padding: 0 6px; margin-top: 4px; }
.dynpipe-dag .dp-info pre { max-height: 200px; overflow: auto; margin: 2px 0; font-size: 11px; }
.dynpipe-dag .dp-members { max-height: 200px; overflow: auto; margin: 2px 0; }
.dynpipe-dag .dp-bar button { margin: 0 4px 4px 0; font-size: 11px; }
"""


class DagWidget(anywidget.AnyWidget):  # type: ignore[misc]
    """The view: state only; layout happens in the kernel, clicks in the browser."""

    _esm = traitlets.Unicode(_ESM).tag(sync=True)
    _css = traitlets.Unicode(_CSS).tag(sync=True)
    svg = traitlets.Unicode("").tag(sync=True)
    html = traitlets.Unicode("").tag(sync=True)
    details = traitlets.Dict({}).tag(sync=True)
    summary = traitlets.Unicode("").tag(sync=True)
    run_status = traitlets.Unicode("running").tag(sync=True)
    expanded = traitlets.List(traitlets.Unicode(), []).tag(sync=True)

    def clear(self) -> None:
        """Drop the picture and details (before closing: saved state stays small)."""
        with self.hold_sync():
            self.svg = ""
            self.html = ""
            self.details = {}

    def show_frame(self, frame: render.View, run_status: str) -> None:
        with self.hold_sync():
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
        self, name: str, graph: RunGraph, interval: float = UPDATE_INTERVAL,
        after_frame: Callable[[list[NodeState]], None] | None = None,
        lock: threading.RLock | None = None,
    ) -> None:
        self.name = name
        self.graph = graph
        self.interval = interval
        self.after_frame = after_frame
        self.widgets: list[DagWidget] = []
        self._dirty = True
        self._lock = lock or threading.RLock()  # shared with the session: one lock order
        self._wake = threading.Event()
        self._stopped = threading.Event()
        self._unsubscribe = graph.subscribe(self._on_change)
        self.frames = 0
        self._thread = threading.Thread(target=self._loop, name=f"dynpipe-widget-{name}", daemon=True)
        self._thread.start()

    def _on_change(self, graph: Any, node: Any) -> None:
        # Called synchronously from engine threads on every change: keep it O(1).
        self._dirty = True

    def poke(self) -> None:
        """Ask for a frame soon (e.g. after a click changed the expanded groups)."""
        self._dirty = True
        self._wake.set()

    def attach(self, widget: DagWidget) -> None:
        with self._lock:
            self.widgets.append(widget)
        widget.observe(lambda _change: self.poke(), names="expanded")
        self.poke()

    def detach(self, widget: DagWidget) -> None:
        with self._lock:
            if widget in self.widgets:
                self.widgets.remove(widget)

    def _loop(self) -> None:
        last = 0.0
        while not self._stopped.is_set():
            self._wake.wait(self.interval)
            self._wake.clear()
            # Never more than one frame per interval, however many events arrived.
            gap = self.interval - (time.monotonic() - last)
            if gap > 0 and self._stopped.wait(gap):
                break
            if self._stopped.is_set():
                break
            try:
                self.refresh()
            except Exception:  # noqa: BLE001 - a broken frame must not kill the feed
                pass
            last = time.monotonic()

    def refresh(self, force: bool = False) -> None:
        """Render one frame into every widget if anything changed; then run the hook."""
        with self._lock:
            nodes = self.graph.snapshot()
            if self._dirty or force:
                self._dirty = False
                status = self.graph.status
                frames: dict[tuple[str, ...], render.View] = {}
                for widget in list(self.widgets):
                    key = tuple(sorted(widget.expanded))
                    if key not in frames:
                        frames[key] = render.render(self.name, nodes, status, set(key))
                    widget.show_frame(frames[key], status)
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
