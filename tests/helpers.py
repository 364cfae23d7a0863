"""Test helpers that prove things without depending on how fast a loaded machine is.

Every wait here has a deadline that fails the test with a message naming what never
happened; concurrency is proven by barriers that only open when N parties are inside at
once, never by comparing elapsed time with a guess.
"""

from __future__ import annotations

import os
import re
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")

#: Generous on purpose: a deadline only ends a test that would otherwise hang, so it must
#: never be reached on a slow, shared machine when the behaviour is right.
DEADLINE = 30.0


def wait_until(
    predicate: Callable[[], T], timeout: float = DEADLINE, what: str = "the condition", interval: float = 0.01
) -> T:
    """Poll ``predicate`` until it returns something truthy and return that; after
    ``timeout`` seconds fail with an AssertionError that says ``what`` never happened."""
    end = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= end:
            raise AssertionError(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(interval)


def meet(barrier: threading.Barrier, what: str) -> None:
    """Wait at ``barrier`` (created with a timeout); if the other parties never arrive,
    fail with a message saying that ``what`` did not run at the same time."""
    try:
        barrier.wait()
    except threading.BrokenBarrierError:
        raise AssertionError(
            f"{what}: the {barrier.parties} parties of the barrier were not all there before its"
            " timeout, so they did not run at the same time"
        ) from None


def barrier(parties: int, timeout: float = DEADLINE) -> threading.Barrier:
    """A thread barrier that breaks (instead of hanging) after ``timeout`` seconds."""
    return threading.Barrier(parties, timeout=timeout)


def file_barrier(directory: str | os.PathLike[str], parties: int, timeout: float = DEADLINE) -> None:
    """A barrier across processes (isolated steps run in worker processes).

    Each caller drops a file into ``directory`` and waits until ``parties`` files are
    there, so it returns only if ``parties`` callers were inside at the same time; a caller
    still alone after ``timeout`` seconds raises, which fails the step that called it.
    """
    folder = Path(directory)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{os.getpid()}-{uuid.uuid4().hex}").touch()
    end = time.monotonic() + timeout
    while (arrived := len(list(folder.iterdir()))) < parties:
        if time.monotonic() >= end:
            raise AssertionError(
                f"only {arrived} of {parties} parties reached the barrier in {folder} within {timeout:g}s:"
                " they did not run at the same time"
            )
        time.sleep(0.01)


_SVG = "{http://www.w3.org/2000/svg}"
_DURATION = re.compile(r"\b\d+(?:\.\d)? (?:ms|s|min|h)\b")


def svg_structure(svg: str) -> dict[str, object]:
    """What a DAG picture shows, independent of the graphviz version that drew it.

    Layout (coordinates, sizes, path data, ids graphviz numbers itself) differs between
    graphviz releases; what must not differ is the set of nodes (their DOM ids), each
    node's text lines and status (its fill colour, mapped back to the status name the
    renderer drew it for) and the set of edges between node ids.
    """
    import xml.etree.ElementTree as ET

    from dynpipe.notebook.render import COLOURS

    status_of = {colour.lower(): status for status, colour in reversed(list(COLOURS.items()))}
    root = ET.fromstring(svg)
    nodes: dict[str, tuple[tuple[str, ...], str]] = {}
    edges: set[tuple[str, str]] = set()
    for group in root.iter(f"{_SVG}g"):
        kind = group.get("class")
        if kind == "node":
            # Durations differ on every run: compared as a placeholder, not by value.
            texts = tuple(_DURATION.sub("<duration>", (t.text or "").strip()) for t in group.iter(f"{_SVG}text"))
            fills = [
                e.get("fill", "").lower() for e in group.iter()
                if e.tag in (f"{_SVG}path", f"{_SVG}polygon", f"{_SVG}ellipse")
                and e.get("fill", "none").lower() not in ("none", "transparent")
            ]
            status = status_of.get(fills[0], fills[0]) if fills else "unfilled"
            nodes[group.get("id", "")] = (texts, status)
        elif kind == "edge":
            title = group.find(f"{_SVG}title")
            src, _, dst = (title.text or "" if title is not None else "").partition("->")
            edges.add((src.strip(), dst.strip()))
    return {"nodes": nodes, "edges": edges}
