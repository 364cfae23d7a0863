"""The test helpers themselves: a helper that cannot fail would make the tests using it
prove nothing, so each one is shown failing (quickly, with its message) as well as passing."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from helpers import barrier, file_barrier, meet, svg_structure, wait_until

from dynpipe.notebook import render


def test_wait_until_returns_the_value_or_fails_naming_what_never_happened() -> None:
    calls = iter([0, [], "ready"])
    assert wait_until(lambda: next(calls), timeout=5, what="a value") == "ready"
    with pytest.raises(AssertionError, match=r"timed out after 0.05s waiting for the moon"):
        wait_until(lambda: False, timeout=0.05, what="the moon")


def test_barrier_opens_only_when_all_parties_are_inside_at_once() -> None:
    together = barrier(3)
    threads = [threading.Thread(target=meet, args=(together, "three threads")) for _ in range(2)]
    for t in threads:
        t.start()
    meet(together, "three threads")  # the third party: all three were waiting together
    for t in threads:
        t.join(5)
    alone = barrier(2, timeout=0.05)
    with pytest.raises(AssertionError, match="lonely step: the 2 parties .* did not run at the same time"):
        meet(alone, "lonely step")


def test_file_barrier_counts_parties_across_callers(tmp_path: Path) -> None:
    done: list[bool] = []

    def party() -> None:
        file_barrier(tmp_path / "b", 2, timeout=10)
        done.append(True)

    other = threading.Thread(target=party)
    other.start()
    party()
    other.join(10)
    assert done == [True, True]
    with pytest.raises(AssertionError, match="only 1 of 2 parties"):
        file_barrier(tmp_path / "alone", 2, timeout=0.05)


def _items(status: str) -> tuple[list[render.Item], list[tuple[str, str]]]:
    items = [
        render.Item("dp-n-load", "load\ncompleted", "completed"),
        render.Item("dp-n-train", f"train\n{status}", status),
    ]
    return items, [("dp-n-load", "dp-n-train")]


def test_svg_structure_ignores_layout_and_sees_nodes_labels_statuses_and_edges() -> None:
    items, edges = _items("running")
    svg = render.render_svg(items, edges)
    assert svg is not None
    assert svg_structure(svg) == {
        "nodes": {"dp-n-load": (("load", "completed"), "completed"), "dp-n-train": (("train", "running"), "running")},
        "edges": {("dp-n-load", "dp-n-train")},
    }
    # Another layout of the same graph (as another graphviz version may draw it).
    moved = svg.replace('transform="scale(1 1)', 'transform="scale(2 2)')
    for i in range(10):
        moved = moved.replace(f'x="{i}', f'x="1{i}')
    assert moved != svg and svg_structure(moved) == svg_structure(svg)
    # A different status, label or edge is a different picture.
    failed = render.render_svg(*_items("failed"))
    assert failed is not None and svg_structure(failed) != svg_structure(svg)
    recoloured = render.render_svg([items[0], render.Item("dp-n-train", "train\nrunning", "failed")], edges)
    assert recoloured is not None  # same text, another fill: the status comes from the colour
    assert svg_structure(recoloured)["nodes"]["dp-n-train"] == (("train", "running"), "failed")  # type: ignore[index]
    unlinked = render.render_svg(items, [])
    assert unlinked is not None and svg_structure(unlinked)["edges"] == set()
