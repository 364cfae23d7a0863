"""Open runs in the kernel, one per ``%%pipeline NAME``, and the outputs of their cells.

A session keeps its ``RunContext`` open across cells so later cells add to the same DAG.
Each cell shows a live widget under a display id; once the cell has returned and every
step it started has finished, the widget is swapped for a static snapshot — the newest
cell of an open run too.

Why the newest cell does not stay live: a notebook keeps whatever its outputs hold when
it is saved, and JupyterLab's widget renderer wins over every other MIME type in a bundle.
Reopened without its kernel (or after a restart), an output holding
``application/vnd.jupyter.widget-view+json`` finds no model and the renderer prints
"Error displaying widget: model not found" instead of falling back to the SVG/PNG beside
it; clearing the saved ``widget-state`` changes nothing (the model is missing either
way), and only a view whose ``model_id`` is empty is hidden — with nothing shown. So the
widget view must be out of the output before the notebook is saved: each cell's display
is replaced (``update_display_data``, sent as a reply to the cell's own request, so
JupyterLab applies it) by the static bundle, which nbconvert and GitHub read too. When
the run ends, its last cell's picture is stamped again with how the run ended.
"""

from __future__ import annotations

import threading
from typing import Any

from ..config import PipelineConfig
from ..display import format_status_counts
from ..engine.context import RunContext
from ..engine.dag import NodeState
from ..engine.run import finish_run, start_run, summary_line
from ..store.store import open_store
from .layouts import Layouts
from .render import TERMINAL, related_part
from .snapshot import current_parent, replace_output, snapshot_bundle
from .widget import DagWidget, LiveFeed

WIDGET_MIME = "application/vnd.jupyter.widget-view+json"
#: Layouts a kernel keeps (each up to ~200 KB for a 300-node expanded group).
SHARED_LAYOUTS = 16


def _own_part(cell: CellView, nodes: list[NodeState]) -> list[NodeState]:
    """The steps a cell started, plus the steps that fed them."""
    feeding = {u for n in nodes if n.invocation_id in cell.node_ids for u in n.upstream}
    return [n for n in nodes if n.invocation_id in cell.node_ids or n.invocation_id in feeding]


class CellView:
    """The output of one ``%%pipeline`` cell: a live widget until its work is done."""

    def __init__(
        self, display_id: str, widget: DagWidget, before: set[str], parent: dict[str, Any] | None = None,
    ) -> None:
        self.display_id = display_id
        self.widget = widget
        self.before = before
        self.parent = parent  # the cell's request: display updates must answer it
        self.node_ids: set[str] = set()
        self.returned = False
        self.static = False
        self.shown_state: str | None = None  # the run state its static picture names
        self.shown_nodes: list[NodeState] = []
        self.whole_run = False  # frozen as the newest cell: its picture shows all it depends on


class Session:
    """One open dynamic run named by the notebook (``%%pipeline NAME``)."""

    def __init__(self, name: str, config: PipelineConfig, layouts: Layouts | None = None) -> None:
        self.name = name
        self.config = config
        self.layouts = layouts if layouts is not None else Layouts()
        self.ctx: RunContext = start_run(name, config, open_store())
        self.cells: list[CellView] = []
        self.feed: LiveFeed | None = None
        self._lock = threading.RLock()

    @property
    def graph(self) -> Any:
        return self.ctx.graph

    # -- cells -----------------------------------------------------------------------
    def open_cell(self, widget: bool = True) -> CellView | None:
        """Show a live widget for the cell about to run (and freeze finished older ones)."""
        self.sweep()
        if not widget:
            return None
        from IPython.display import display

        if self.feed is None:
            self.feed = LiveFeed(
                self.name, self.graph, after_frame=self.sweep, lock=self._lock, layouts=self.layouts,
            )
        before = set(self.graph.nodes)
        view = DagWidget(before=frozenset(before))
        handle = display(
            {
                WIDGET_MIME: {"version_major": 2, "version_minor": 1, "model_id": view.model_id},
                "text/plain": f"dynpipe live DAG of run {self.name!r}",
            },
            raw=True,
            display_id=True,
        )
        cell = CellView(handle.display_id, view, before, current_parent())
        with self._lock:
            self.cells.append(cell)
        self.feed.attach(view)  # the feed's thread draws its first frame (no dot run in the cell's time)
        return cell

    def close_cell(self, cell: CellView | None) -> None:
        """The cell body returned: remember which steps it started; freeze what is done.

        A cell without a widget (``--no-widget``) prints the run's progress in one line.
        """
        if cell is None:
            print(self.progress())
        else:
            with self._lock:  # a frame drawn meanwhile holds an older snapshot of the graph
                cell.node_ids = set(self.graph.nodes) - cell.before
                cell.returned = True
        # A cell whose work is all done becomes its picture now (from the live widget's last
        # layout: no dot run in the cell's time); other live widgets get their frame from
        # the feed's thread.
        self.sweep()
        if self.feed is not None:
            self.feed.poke()

    def sweep(self, nodes: list[NodeState] | None = None) -> None:
        """Freeze every returned cell whose steps (and the steps feeding them) are done."""
        with self._lock:
            if nodes is None:
                nodes = self.graph.snapshot()
            newest = self.cells[-1] if self.cells else None
            for cell in self.cells:
                if cell.whole_run and cell is not newest:
                    # A newer cell took over the run's picture: keep only this cell's own part.
                    cell.whole_run = False
                    cell.shown_nodes = _own_part(cell, nodes)
                    self._stamp(cell, force=True)
            live = [c for c in self.cells if not c.static]
            if not live:
                return
            present = {n.invocation_id for n in nodes}
            for cell in live:
                if not cell.returned or not cell.node_ids <= present:
                    continue  # still running, or ``nodes`` predates steps the cell started
                if cell is newest:
                    known = [n for n in nodes if n.invocation_id in cell.before or n.invocation_id in cell.node_ids]
                    shown = related_part(known, cell.before)
                else:
                    shown = _own_part(cell, nodes)
                if any(n.status not in TERMINAL for n in shown):
                    continue
                cell.whole_run = cell is newest
                self._freeze(cell, shown)

    def _freeze(self, cell: CellView, nodes: list[NodeState]) -> None:
        """Replace the cell's widget with a static picture, every step in it finished.

        The newest cell shows its steps and everything upstream of them (the whole run
        when it started none; unrelated earlier steps are left out); an older cell shows
        the steps it started and the steps feeding them, so saved notebooks stay small (no
        picture repeats the whole run) and each picture shows the same graph on every run.
        """
        cell.static = True
        cell.shown_nodes = nodes
        self._stamp(cell)
        if self.feed is not None:
            self.feed.detach(cell.widget)
        cell.widget.clear()  # a saved notebook keeps closed widgets' state: leave none behind
        cell.widget.close()

    def _stamp(self, cell: CellView, force: bool = False) -> None:
        """Show the cell's static picture; only the run's last cell names how it ended."""
        last = cell is self.cells[-1]
        state = self.ctx.status.value if self.ctx.finished and last else "open"
        if state == cell.shown_state and not force:
            return
        cell.shown_state = state
        bundle = snapshot_bundle(self.name, cell.shown_nodes, state, self.ctx.run_name, layouts=self.layouts)
        replace_output(bundle, cell.display_id, cell.parent)

    # -- the run -----------------------------------------------------------------------
    def progress(self) -> str:
        counts = self.graph.counts()
        total = sum(counts.values())
        done = sum(n for s, n in counts.items() if s in TERMINAL)
        parts = format_status_counts(counts, empty="")
        line = f"{self.name}: run {self.ctx.run_name!r}, {done}/{total} steps done" + (f" ({parts})" if parts else "")
        if self.ctx.stopping:
            line += f" — {self.stopping_reason()}; the next %%pipeline {self.name} cell starts a new run"
        return line

    def stopping_reason(self) -> str:
        first = self.ctx.first_failure
        if first is not None:
            return f"step {first[0]!r} failed ({self.ctx.mode.value})"
        return "the run was stopped"

    def finish(self, stop_reason: str | None = None) -> str:
        """Wait for outstanding steps (or stop them, naming why), record the run, freeze views."""
        finish_run(self.ctx, stop_reason=stop_reason)
        if self.feed is not None:
            self.feed.stop()
            self.feed.refresh(force=True)
        self.sweep()
        with self._lock:
            if self.cells and self.cells[-1].static:
                self._stamp(self.cells[-1])  # frozen while the run was open: now it ended
        return summary_line(self.ctx)


class NotebookSessions:
    """The kernel's open runs by name: one per ``%%pipeline NAME`` until it is ended.

    Owned by the IPython extension instance (stored on the shell, see ``magics``), not by
    this module: a kernel that loads the extension has exactly one, an unloaded extension
    leaves none behind, and two shells in one process (tests) never share runs. The
    extension finishes them at interpreter exit before the worker pool stops.
    """

    def __init__(self) -> None:
        self._sessions: dict[str, Session] = {}
        self._lock = threading.Lock()
        #: Dot layouts by graph shape, shared by the kernel's runs: a cell run again (a new
        #: run of the same shape) draws its live frames and its picture without dot.
        self.layouts = Layouts(keep=SHARED_LAYOUTS)

    def get(self, name: str) -> Session | None:
        return self._sessions.get(name)

    def open_sessions(self) -> list[Session]:
        return [s for s in list(self._sessions.values()) if not s.ctx.finished]

    def session_for(self, name: str, config: PipelineConfig, new: bool = False) -> tuple[Session, str | None]:
        """The open session NAME, or a new one; ``new`` finishes the old one first.

        Returns the session and the summary of a run that ``new`` finished (or None).
        """
        with self._lock:
            old = self._sessions.get(name)
            finished = None
            if old is not None and not old.ctx.finished and not new and not old.ctx.stopping:
                return old, None
            if old is not None and not old.ctx.finished:
                finished = old.finish()
                if not new:
                    # A step failed under stop_on_failure / fail_fast: the run starts nothing new,
                    # so this cell goes to a fresh run instead of having its steps skipped.
                    finished += f"\n{old.stopping_reason()}; this cell starts a new run {name!r}"
            session = Session(name, config, self.layouts)
            self._sessions[name] = session
            return session, finished

    def stop(self, name: str, reason: str) -> str:
        """Stop run NAME now (a cell was interrupted); the next cell with NAME starts a new run."""
        session = self._sessions.get(name)
        if session is None or session.ctx.finished:
            return ""
        return session.finish(stop_reason=reason)

    def end(self, name: str) -> str:
        session = self._sessions.get(name)
        if session is None:
            raise KeyError(name)
        summary = session.finish()
        with self._lock:
            if self._sessions.get(name) is session:
                del self._sessions[name]
        return summary

    def finish_all(self) -> list[str]:
        """Finish every open run (kernel shutdown, extension unloaded): running steps are stopped."""
        out = []
        for name in list(self._sessions):
            session = self._sessions.pop(name, None)
            if session is not None and not session.ctx.finished:
                try:
                    reason = "the kernel shut down" if session.ctx.outstanding else None
                    out.append(session.finish(stop_reason=reason))
                except Exception:  # noqa: BLE001 - best effort at exit
                    pass
        return out
