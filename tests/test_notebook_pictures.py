"""What a ``%%pipeline`` cell leaves behind, read from a real kernel's iopub messages: the
static picture keeps the run's header and each node's duration (and no PNG), a later
cell's picture leaves out earlier steps it does not depend on, and ``--no-widget`` cells
print one summary line.
"""

from __future__ import annotations

import html
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from helpers import svg_structure
from test_notebook_kernel import SETUP, WIDGET_MIME, Kernel, displays, stdout, widget_of

from dynpipe.notebook.render import dom_id

pytestmark = pytest.mark.timeout(180)


@pytest.fixture(scope="module")
def kernel(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Kernel]:
    k = Kernel()
    try:
        reply, _ = k.execute(SETUP.format(home=str(tmp_path_factory.mktemp("store")), sleep=0.2))
        assert reply["status"] == "ok", reply
        yield k
    finally:
        k.close()


def final_picture(msgs: list[dict[str, Any]], display_id: str) -> dict[str, Any]:
    updates = [c for c in displays(msgs, "update_display_data") if c["transient"]["display_id"] == display_id]
    assert updates, f"display {display_id} was never replaced by its picture"
    return updates[-1]["data"]  # type: ignore[no-any-return]


def test_the_static_picture_keeps_the_header_and_durations(kernel: Kernel) -> None:
    reply, msgs = kernel.execute("%%pipeline pic_header\nx = slow(1)\ny = add([x, 2])")
    assert reply["status"] == "ok", reply
    _, display_id = widget_of(msgs)
    reply, end = kernel.execute("%pipeline end pic_header")
    data = final_picture(msgs + end, display_id)
    assert WIDGET_MIME not in data and "image/png" not in data
    svg = html.unescape(data["image/svg+xml"])
    run_name = stdout(end).split("'")[1] if "'" in stdout(end) else ""
    assert " · completed · 2 steps (2 completed) · active " in svg, svg[:600]
    assert run_name and run_name in svg, (run_name, stdout(end))
    nodes = svg_structure(data["image/svg+xml"])["nodes"]
    assert nodes[dom_id("slow")][0] == ("slow i=1", "completed · <duration>")
    # The reader's click-for-details, kept as hover text with a copy-able artifact snippet.
    assert "slow (slow, inline): completed" in svg and "Client().get_artifact_version('" in svg


def test_a_later_cell_does_not_draw_unrelated_earlier_steps(kernel: Kernel) -> None:
    reply, _ = kernel.execute("%%pipeline pic_lineage\na = slow(1)\nlonely = slow(2)")
    assert reply["status"] == "ok", reply
    reply, msgs = kernel.execute("%%pipeline pic_lineage\nb = add([a, 1])")
    assert reply["status"] == "ok", reply
    _, display_id = widget_of(msgs)
    reply, end = kernel.execute("%pipeline end pic_lineage")
    data = final_picture(msgs + end, display_id)
    nodes = set(svg_structure(data["image/svg+xml"])["nodes"])
    assert nodes == {dom_id("slow"), dom_id("add")}, nodes  # not the unrelated slow_2
    assert data["text/plain"].startswith("dynpipe run 'pic_lineage' (completed): 2 steps")


def test_a_cell_without_widget_prints_one_summary_line(kernel: Kernel) -> None:
    reply, msgs = kernel.execute("%%pipeline pic_quiet --no-widget\nq = add([1, 2])")
    assert reply["status"] == "ok", reply
    assert not any(WIDGET_MIME in c["data"] for c in displays(msgs))
    lines = stdout(msgs).strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("pic_quiet: run 'pic_quiet-"), lines
    assert "1/1 steps done (1 completed)" in lines[0]
    kernel.execute("%pipeline end pic_quiet")


def test_saved_notebook_keeps_no_png_and_no_widget_code(tmp_path: Path) -> None:
    import nbclient
    import nbformat

    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_code_cell(SETUP.format(home=str(tmp_path / "store"), sleep=0.01)),
        *(nbformat.v4.new_code_cell(f"%%pipeline small\nv{i} = slow({i})") for i in range(3)),
        nbformat.v4.new_code_cell("%pipeline end small"),
    ]
    nbclient.NotebookClient(nb, timeout=120, kernel_name="python3").execute()
    bundles = [o["data"] for c in nb.cells[1:4] for o in c.outputs if o["output_type"] == "display_data"]
    assert len(bundles) == 3 and all("image/svg+xml" in b and "image/png" not in b for b in bundles)
    # nbclient saves closed widgets' state too: it must not carry the front-end module per cell.
    state = json.dumps(nb.metadata.get("widgets", {}))
    assert "AnyModel" in state and "fmtDuration" not in state and "<svg" not in state
