"""DAG rendering (dot, grouping, fallback), snapshots and the throttled widget feed, in-process."""

from __future__ import annotations

import html
import threading
import time
from pathlib import Path

import pytest
from helpers import DEADLINE, svg_structure, wait_until

from dynpipe import pipeline, step
from dynpipe.engine.dag import RunGraph
from dynpipe.notebook import render
from dynpipe.notebook.snapshot import snapshot_bundle, text_summary
from dynpipe.notebook.widget import FRAME_SHARE, DagWidget, LiveFeed, frame_gap


def fan_graph(n: int, status: str = "completed", t0: float = 1000.0) -> RunGraph:
    graph = RunGraph("run-id-123", "demo-2026_01_01", "demo")
    graph.add_node("load", "load", [], "inline")
    ids = []
    for i in range(n):
        inv = "train" if i == 0 else f"train_{i + 1}"
        ids.append(inv)
        node = graph.add_node(inv, "train", ["load"], "inline")
        graph.update(node, status=status, start=t0 + i, end=t0 + i * 1.5 + 0.3, attempts=1)
    best = graph.add_node("pick_best", "pick_best", ids, "inline")
    graph.update(best, status="running", start=t0)
    graph.update(graph.nodes["load"], status="completed", start=t0, end=t0 + 0.01, preview="[1, 2]")
    return graph


def test_siblings_collapse_into_one_group_node_with_progress() -> None:
    graph = fan_graph(30)
    graph.update(graph.nodes["train_7"], status="failed", error="ValueError: bad")
    graph.update(graph.nodes["train_9"], status="running", end=None)
    view = render.render("demo", graph.snapshot(), "running")
    groups = [i for i in view.items if i.group]
    assert [g.group for g in groups] == ["train"] and len(view.items) == 3
    assert ("dp-g-train", render.dom_id("pick_best")) in view.edges
    assert (render.dom_id("load"), "dp-g-train") in view.edges
    svg = html.unescape(view.svg)  # dot writes '-' as &#45;
    assert svg.startswith("<svg") and 'id="dp-g-train"' in svg
    assert "train ×30" in svg and "29/30 done" in svg
    group = view.details["dp-g-train"]
    assert group["kind"] == "group" and group["total"] == 30 and group["counts"]["failed"] == 1
    # Failed and unfinished members are listed first, so they are visible in a long list.
    assert [m[1] for m in group["members"][:2]] == ["failed", "running"]
    assert group["members"][0][3] == "ValueError: bad"
    node = view.details[render.dom_id("load")]
    assert node["status"] == "completed" and node["preview"] == "[1, 2]"


def test_small_fan_out_and_expanded_groups_draw_every_invocation() -> None:
    small = render.render("demo", fan_graph(5).snapshot(), "running")
    assert not any(i.group for i in small.items) and len(small.items) == 7
    big = fan_graph(30)
    expanded = render.render("demo", big.snapshot(), "running", expanded={"train"})
    assert len(expanded.items) == 32 and 'id="dp-n-train_30"' in html.unescape(expanded.svg)
    huge = fan_graph(render.MAX_EXPANDED + 1)
    still = render.render("demo", huge.snapshot(), "running", expanded={"train"})
    assert len(still.items) == 3 and still.details["dp-g-train"]["expandable"] is False


def test_node_labels_show_duration_and_marks() -> None:
    graph = fan_graph(2)
    graph.update(graph.nodes["train"], attempts=3)
    graph.update(graph.nodes["train_2"], status="cached", cached=True)
    labels = {i.dom_id: i.label for i in render.layout_items(graph.snapshot())[0]}
    assert labels[render.dom_id("train")] == "train\ncompleted · 300 ms · ⟳2"
    assert labels[render.dom_id("train_2")] == "train_2\ncached"  # said once, no duration


def test_labels_show_short_parameters_and_mark_queued_and_isolated_nodes() -> None:
    graph = RunGraph("run-id", "demo-1", "demo")
    short = graph.add_node("train", "train", [], "isolated")
    graph.update(short, parameters={"lr": 0.03}, status="queued")
    long = graph.add_node("train_2", "train", [], "inline")
    graph.update(long, parameters={"lr": 0.03, "layers": [64, 64, 64, 64], "name": "a long name"})
    graph.update(long, status="running", start=1000.0)
    labels = {i.dom_id: i.label for i in render.layout_items(graph.snapshot())[0]}
    assert labels[render.dom_id("train")] == "train lr=0.03\nqueued"
    assert labels[render.dom_id("train_2")].startswith("train_2\nrunning · ")  # too long: in details only
    svg = html.unescape(render.render("demo", graph.snapshot(), "running").svg)
    nodes = {n: (texts, status) for n, (texts, status) in svg_structure(svg)["nodes"].items()}
    assert nodes[render.dom_id("train")][1] == "queued" and nodes[render.dom_id("train_2")][1] == "running"
    # Queued is drawn dashed, isolated with a heavy border; a running inline node has neither.
    queued = _node_markup(svg, render.dom_id("train"))
    running = _node_markup(svg, render.dom_id("train_2"))
    assert "stroke-dasharray" in queued and 'stroke-width="2.5"' in queued
    assert "stroke-dasharray" not in running and 'stroke-width="2.5"' not in running


def _node_markup(svg: str, node_id: str) -> str:
    start = svg.index(f'id="{node_id}"')
    return svg[start:svg.index("</g>", start)]


def test_details_carry_artifact_ids_the_full_log_and_the_runtime() -> None:
    graph = RunGraph("run-id", "demo-1", "demo")
    node = graph.add_node("train", "train", [], "isolated")
    for i in range(500):
        graph.add_log_line(node, f"epoch {i}")
    graph.update(node, status="completed", start=1.0, end=2.0, artifacts={"output": "ab" * 16})
    details = render.render("demo", graph.snapshot(), "running").details[render.dom_id("train")]
    assert details["artifacts"] == {"output": "ab" * 16} and details["runtime"] == "isolated"
    assert details["logs"].splitlines()[0] == "epoch 0" and details["logs"].splitlines()[-1] == "epoch 499"


def test_an_expanded_group_is_laid_out_as_a_grid_not_one_column() -> None:
    import re

    graph = fan_graph(render.MAX_EXPANDED)
    view = render.render("demo", graph.snapshot(), "running", expanded={"train"})
    assert len(view.items) == render.MAX_EXPANDED + 2
    width, height = (float(v) for v in re.search(r'viewBox="0\.00 0\.00 ([\d.]+) ([\d.]+)"', view.svg).groups())
    # One column of 300 nodes would be ~40 times taller than wide; a grid is about square.
    assert height < 3 * width, (width, height)
    assert len(svg_structure(view.svg)["nodes"]) == render.MAX_EXPANDED + 2


def test_a_later_picture_leaves_out_earlier_unrelated_steps() -> None:
    graph = RunGraph("run-id", "demo-1", "demo")
    graph.add_node("a", "a", [], "inline")
    graph.add_node("b", "b", ["a"], "inline")
    graph.add_node("lonely", "lonely", [], "inline")
    before = frozenset(graph.nodes)
    graph.add_node("c", "c", ["b"], "inline")
    shown = [n.invocation_id for n in render.related_part(graph.snapshot(), before)]
    assert shown == ["a", "b", "c"]  # all of c's lineage, not the unrelated 'lonely'
    # A cell that started nothing (a status cell) still shows the whole run.
    assert len(render.related_part(graph.snapshot(), frozenset(graph.nodes))) == 4


def test_without_dot_a_table_with_a_hint_replaces_the_picture(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # no `dot` anywhere
    graph = fan_graph(3)
    view = render.render("demo", graph.snapshot(), "running")
    assert view.svg == "" and "dot&#x27; not found: showing a table" in view.html
    assert "data-dp-status='running'" in view.html and "train_3" in view.html
    bundle = snapshot_bundle("demo", graph.snapshot(), "completed")
    assert "image/svg+xml" not in bundle and "image/png" not in bundle
    assert "<table" in bundle["text/html"]
    assert bundle["text/plain"].startswith("dynpipe run 'demo' (completed): 5 steps")


def test_snapshot_keeps_header_and_durations_and_its_text_is_stable() -> None:
    a = fan_graph(20, t0=1000.0)
    b = fan_graph(20, t0=5555.5)
    b.run_id, b.run_name = "other-id", "demo-2030_12_31"
    bundle_a = snapshot_bundle("demo", a.snapshot(), "completed", a.run_name)
    bundle_b = snapshot_bundle("demo", b.snapshot(), "completed", b.run_name)
    assert bundle_a["text/plain"] == bundle_b["text/plain"] == (
        "dynpipe run 'demo' (completed): 22 steps — 21 completed, 1 running\n"
        "  load            completed\n"
        "  train ×20       20 completed\n"
        "  pick_best       running"
    )
    # The same graph, though each picture keeps its own durations, run name and header.
    svg_a, svg_b = bundle_a["image/svg+xml"], bundle_b["image/svg+xml"]
    assert svg_structure(svg_a) == svg_structure(svg_b)
    assert "<?xml" not in svg_a and "image/png" not in bundle_a  # SVG is enough: no PNG weight
    assert "demo-2026_01_01 · completed · 22 steps (21 completed, 1 running) · active" in html.unescape(svg_a)
    assert "demo-2030_12_31 · completed" in html.unescape(svg_b)
    load = svg_structure(svg_a)["nodes"][render.dom_id("load")][0]
    assert load == ("load", "completed · <duration>") and "completed · 10 ms" in html.unescape(svg_a)
    # The static picture cannot be clicked: a node's details are its hover text.
    assert "load (load, inline): completed" in html.unescape(svg_a)
    assert text_summary("x", [], "open") == "dynpipe run 'x' (open): 0 steps"


def test_feed_coalesces_a_flood_of_events_into_few_frames() -> None:
    graph = fan_graph(0)
    nodes = [graph.add_node(f"s_{i}", "s", [], "inline") for i in range(2000)]
    widget = DagWidget()
    feed = LiveFeed("flood", graph, interval=0.1)
    feed.attach(widget)
    start = time.monotonic()

    def worker(part: list) -> None:  # type: ignore[type-arg]
        for node in part:
            graph.update(node, status="running", start=time.time())
            graph.add_log_line(node, "working")
            graph.update(node, status="completed", end=time.time())

    threads = [threading.Thread(target=worker, args=(nodes[i::4],)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    # The timer thread draws the last frame on its own.
    wait_until(
        lambda: widget.details.get("dp-g-s", {}).get("counts") == {"completed": 2000},
        what="the feed to draw the frame with every step completed",
    )
    elapsed = time.monotonic() - start
    feed.stop()
    events = 2000 * 3
    assert feed.frames < events / 100
    # At most one frame per interval: an upper bound that a slow machine only loosens
    # (it makes `elapsed` longer), so it does not depend on speed.
    assert feed.frames <= elapsed / 0.1 + 3, (feed.frames, elapsed)
    assert widget.summary.startswith("flood: open run — 2002 steps")


def test_feed_follows_a_real_dynamic_run_to_the_end() -> None:
    gate = threading.Event()

    @step(enable_cache=False)
    def slow(i: int) -> int:
        assert gate.wait(DEADLINE), "the test never opened the gate"
        return i

    @step(enable_cache=False)
    def total(xs: list[int]) -> int:
        return sum(xs)

    @pipeline(dynamic=True)
    def fan() -> None:
        total([slow.submit(i) for i in range(4)])

    run = fan.submit()
    widget = DagWidget()
    feed = LiveFeed("fan", run.graph, interval=0.05)
    feed.attach(widget)
    try:
        # The steps hold at the gate, so the live widget must show them running.
        wait_until(
            lambda: sum(d["status"] == "running" for d in widget.details.values()) == 4,
            what="the widget to show the four submitted steps running",
        )
        assert not run.done()
    finally:
        gate.set()
    assert run.result(timeout=DEADLINE).status == "completed"
    feed.refresh(force=True)
    feed.stop()
    assert widget.run_status == "completed"
    statuses = {d["id"]: d["status"] for d in widget.details.values()}
    assert statuses == {"slow": "completed", "slow_2": "completed", "slow_3": "completed",
                        "slow_4": "completed", "total": "completed"}
    assert widget.details[render.dom_id("total")]["upstream"] == ["slow", "slow_2", "slow_3", "slow_4"]
    assert widget.details[render.dom_id("total")]["preview"] == "6"


def test_front_end_code_stays_small() -> None:
    # Shipped in every widget's state: plain formatted ESM + CSS, no bundle (the limit grew
    # from 8,000 when the code moved to Prettier-formatted files and gained the ticking clock,
    # then to 20,000 with zoom/pan and the themed details panel).
    widget = DagWidget()
    assert len(widget._esm) + len(widget._css) < 20_000


def test_a_later_cells_live_widget_leaves_out_unrelated_earlier_steps() -> None:
    graph = RunGraph("run-id", "demo-1", "demo")
    graph.add_node("a", "a", [], "inline")
    graph.add_node("lonely", "lonely", [], "inline")
    first, later = DagWidget(), DagWidget(before=frozenset(graph.nodes))
    graph.add_node("b", "b", ["a"], "inline")
    feed = LiveFeed("demo", graph, interval=0.05)
    feed.attach(first)
    feed.attach(later)
    try:
        feed.refresh(force=True)
        assert {d["id"] for d in first.details.values()} == {"a", "lonely", "b"}
        assert {d["id"] for d in later.details.values()} == {"a", "b"}
        assert 'id="dp-n-lonely"' not in html.unescape(later.svg)
    finally:
        feed.stop()
        first.close()
        later.close()


def test_details_keep_queue_time_apart_and_a_failed_log_leaves_errors_to_the_error_section(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    graph = RunGraph("run-id", "demo-1", "demo")
    waited = graph.add_node("train", "train", [], "isolated")
    waited.queued_at = 1000.0  # waited 3 s for a worker, then ran 1.2 s
    graph.update(waited, status="completed", start=1003.0, end=1004.2)
    assert render.node_details(waited)["duration"] == "1.2 s (queued 3.0 s before)"
    flaky = graph.add_node("flaky", "flaky", [], "inline")
    for line in ("working", "KeyError: 'first kind'", "working", "KeyError: 'first kind'", "RuntimeError: second kind"):
        graph.add_log_line(flaky, line)
    graph.update(flaky, status="retrying", error="KeyError: 'first kind'")
    assert render.node_details(flaky)["logs"].count("KeyError") == 2  # while it retries, the echo is the news
    note = (
        "dynpipe: step 'flaky' failed 3 attempts:\n"
        "  attempts 1, 2: KeyError: 'first kind'\n  attempt 3: RuntimeError: second kind"
    )
    graph.update(flaky, status="failed", error="RuntimeError: second kind",
                 traceback=f"Traceback (most recent call last):\nRuntimeError: second kind\n{note}\n")
    assert render.node_details(flaky)["logs"] == "working\nworking"  # the error section lists each once
    # The group threshold is read when drawing, not frozen when dynpipe was imported.
    monkeypatch.setenv("DYNPIPE_GROUP_THRESHOLD", "3")
    assert [i.group for i in render.layout_items(fan_graph(4).snapshot())[0] if i.group] == ["train"]


def test_costly_frames_space_out_the_next_ones() -> None:
    # Cheap frames keep the interval; a frame that took 0.3 s (a 100,000-step run) waits
    # ten times that, so drawing takes at most a tenth of the feed thread's time.
    assert frame_gap(0.25, 0.005) == 0.25
    assert frame_gap(0.25, 0.3) == pytest.approx(3.0)
    assert frame_gap(0.25, 0.3) * FRAME_SHARE == pytest.approx(0.3)


def test_the_feed_reads_its_interval_when_made_and_refuses_a_bad_one(monkeypatch: pytest.MonkeyPatch) -> None:
    from dynpipe.errors import SettingError

    monkeypatch.setenv("DYNPIPE_WIDGET_INTERVAL", "2.5")
    feed = LiveFeed("paced", fan_graph(0))
    try:
        assert feed.interval == 2.5
    finally:
        feed.stop()
    monkeypatch.setenv("DYNPIPE_WIDGET_INTERVAL", "soon")
    with pytest.raises(SettingError, match="DYNPIPE_WIDGET_INTERVAL"):
        LiveFeed("bad", fan_graph(0))
