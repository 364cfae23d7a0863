"""Frames of a graph that kept its shape reuse one dot layout (in-process, real ``dot``).

What is compared is what a reader sees (``svg_structure``: nodes, their text lines and
status colours, edges) against a picture laid out from scratch; ``Layouts.dot_runs`` counts
the dot subprocesses, so "no new layout" is a count, not a timing.
"""

from __future__ import annotations

import html
import os
import stat
import time
from pathlib import Path

import pytest
from helpers import svg_structure
from test_widget_render import fan_graph

from dynpipe.engine.dag import RunGraph
from dynpipe.notebook import render
from dynpipe.notebook.layouts import BACKGROUND_NICE, Layouts, parse
from dynpipe.notebook.snapshot import snapshot_bundle
from dynpipe.notebook.widget import DagWidget, LiveFeed


def running_fan(n: int) -> RunGraph:
    graph = fan_graph(n, status="running", t0=time.time())
    for node in list(graph.nodes.values())[1:]:
        graph.update(node, status="queued", start=None, end=None)
    return graph


def fresh(graph: RunGraph, **kwargs: object) -> str:
    return render.render("demo", graph.snapshot(), "running", **kwargs).svg  # type: ignore[arg-type]


def test_status_changes_reuse_the_layout_and_draw_what_a_new_layout_draws() -> None:
    graph = running_fan(4)  # under the group threshold: one box per step
    layouts = Layouts()
    first = render.render("demo", graph.snapshot(), "running", layouts=layouts).svg
    assert layouts.dot_runs == 1 and svg_structure(first) == svg_structure(fresh(graph))
    queued = render.dom_id("train_2")
    assert "stroke-dasharray" in html.unescape(first).split(f'id="{queued}"')[1].split("</g>")[0]
    # Queued -> running -> completed, the run's steps ticking: the same layout every frame.
    for status in ("running", "completed"):
        now = time.time()
        for node in list(graph.nodes.values())[1:-1]:
            graph.update(node, status=status, start=now - 1.5, end=now if status == "completed" else None)
        frame = render.render("demo", graph.snapshot(), "running", layouts=layouts).svg
        assert svg_structure(frame) == svg_structure(fresh(graph)), status
    assert layouts.dot_runs == 1
    markup = html.unescape(frame).split(f'id="{queued}"')[1].split("</g>")[0]
    assert "stroke-dasharray" not in markup and "completed · 1.5 s" in markup
    # A new step changes the shape: a new layout, with the new node in it.
    graph.add_node("report", "report", ["pick_best"], "inline")
    frame = render.render("demo", graph.snapshot(), "running", layouts=layouts).svg
    assert layouts.dot_runs == 2 and render.dom_id("report") in svg_structure(frame)["nodes"]  # type: ignore[operator]


def test_a_label_that_outgrows_its_box_gets_a_new_layout() -> None:
    graph = RunGraph("run-id", "demo-1", "demo")
    node = graph.add_node("x", "x", [], "inline")
    graph.update(node, status="completed", start=1000.0, end=1000.5)
    layouts = Layouts()
    render.render("demo", graph.snapshot(), "running", layouts=layouts)
    graph.update(node, status="failed", attempts=4, end=1000.0 + 7000)  # "failed · 1.9 h · ⟳3": wider
    frame = render.render("demo", graph.snapshot(), "running", layouts=layouts).svg
    assert layouts.dot_runs == 2 and svg_structure(frame) == svg_structure(fresh(graph))


def test_a_group_keeps_its_layout_while_its_members_finish() -> None:
    graph = running_fan(30)
    layouts = Layouts()
    render.render("demo", graph.snapshot(), "running", layouts=layouts)
    for i, node in enumerate(list(graph.nodes.values())[1:-1]):
        graph.update(node, status="completed", start=1000.0, end=1000.0 + i)
        if i % 7 == 0:
            render.render("demo", graph.snapshot(), "running", layouts=layouts)
    last = render.render("demo", graph.snapshot(), "running", layouts=layouts).svg
    assert layouts.dot_runs == 1
    assert svg_structure(last)["nodes"]["dp-g-train"] == (("train ×30", "30/30 done"), "completed")  # type: ignore[index]


def test_the_static_picture_reuses_the_last_live_layout_and_adds_header_and_hover_texts() -> None:
    graph = running_fan(3)
    layouts = Layouts()
    render.render("demo", graph.snapshot(), "running", layouts=layouts)
    for node in graph.nodes.values():
        graph.update(node, status="completed", start=1000.0, end=1001.0)
    bundle = snapshot_bundle("demo", graph.snapshot(), "completed", "demo-2026_01_01", layouts=layouts)
    assert layouts.dot_runs == 1
    svg = bundle["image/svg+xml"]
    alone = snapshot_bundle("demo", graph.snapshot(), "completed", "demo-2026_01_01")["image/svg+xml"]
    assert svg_structure(svg) == svg_structure(alone)
    text = html.unescape(svg)
    assert "demo-2026_01_01 · completed · 5 steps (5 completed) · active 1.0 s" in text
    assert "train_2 (train, inline): completed\nduration: 1.0 s" in text  # hover text, newline kept
    # The header band is inside the picture: the view box grew by it, nothing is cut off.
    live = render.render("demo", graph.snapshot(), "running", layouts=layouts).svg
    height = lambda s: float(s.split('viewBox="0.00 0.00 ')[1].split('"')[0].split()[1])  # noqa: E731
    assert height(svg) > height(live) and svg.startswith("<svg") and "<?xml" not in svg


def test_labels_and_hover_texts_are_escaped() -> None:
    graph = RunGraph("run-id", "demo-1", "demo")
    node = graph.add_node("a<b>&c", "a<b>&c", [], "inline")
    graph.update(node, status="failed", start=1.0, end=2.0, error="ValueError: x < y & \"z\"")
    svg = snapshot_bundle("demo", graph.snapshot(), "failed", "r", layouts=Layouts())["image/svg+xml"]
    nodes = svg_structure(svg)["nodes"]  # parses as XML
    assert nodes[render.dom_id("a<b>&c")][0][0] == "a<b>&c"  # type: ignore[index]
    assert 'ValueError: x < y & "z"' in html.unescape(svg)


def test_an_unexpected_svg_is_not_reused() -> None:
    # A future graphviz that writes its SVG differently: frames fall back to one dot run each.
    assert parse("<svg><g></g></svg>", []) is None


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads niceness from /proc")
def test_background_frames_run_dot_at_a_lower_priority(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real = Layouts()._dot
    assert real is not None, "these tests need graphviz's dot"
    log = tmp_path / "nice.log"
    wrapper = tmp_path / "dot"
    # The real dot, run by a script that first notes its own niceness (field 19 of stat).
    wrapper.write_text(f'#!/bin/sh\ncut -d" " -f19 /proc/$$/stat >> {log}\nexec {real} "$@"\n')
    wrapper.chmod(wrapper.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    graph = fan_graph(2)
    render.render("demo", graph.snapshot(), "running", layouts=Layouts(), background=True)
    render.render("demo", graph.snapshot(), "running", layouts=Layouts())
    base = os.getpriority(os.PRIO_PROCESS, 0)
    assert [int(v) for v in log.read_text().split()] == [min(19, base + BACKGROUND_NICE), base]


def test_runs_of_the_same_shape_share_a_layout_through_their_feeds() -> None:
    # A notebook cell run again is a new run drawing the same graph: the kernel's runs
    # share their layouts, so its live frames and its picture need no dot run.
    layouts = Layouts()
    for run in range(2):
        graph = fan_graph(30)
        widget = DagWidget()
        feed = LiveFeed(f"again-{run}", graph, interval=60, layouts=layouts)
        try:
            feed.attach(widget)
            feed.refresh(force=True)
            assert svg_structure(widget.svg)["nodes"]["dp-g-train"][0] == ("train ×30", "30/30 done")  # type: ignore[index]
            bundle = snapshot_bundle("again", graph.snapshot(), "completed", f"again-{run}", layouts=layouts)
            assert f"again-{run} · completed" in html.unescape(bundle["image/svg+xml"])
        finally:
            feed.stop()
            widget.close()
    assert layouts.dot_runs == 1
