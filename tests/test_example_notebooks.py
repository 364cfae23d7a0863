"""The example notebooks end with the same DAG pictures as the saved ones.

nbval (run on ``notebooks/`` by the test command) executes every notebook and compares the
cells tagged for it, but it reads only a cell's first display of the live DAG: the static
snapshot replaces that display later with ``update_display_data``, which nbval ignores.
nbclient applies display updates as Jupyter does when saving, so here each ``%%pipeline``
cell's final bundle (stable ``text/plain`` summary and SVG) is compared with the saved one.
The SVG is compared by structure (nodes, their text and status, edges), not byte for byte:
another graphviz version lays the same graph out differently.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import nbformat
import pytest
from helpers import svg_structure
from nbclient import NotebookClient

NOTEBOOKS = sorted((Path(__file__).parent.parent / "notebooks").glob("*.ipynb"))
WIDGET_MIME = "application/vnd.jupyter.widget-view+json"

pytestmark = pytest.mark.timeout(240)


def _dag_bundles(nb: nbformat.NotebookNode) -> list[tuple[int, dict]]:
    return [
        (i, out["data"])
        for i, cell in enumerate(nb.cells)
        if cell.cell_type == "code" and cell.source.startswith("%%pipeline")
        for out in cell.outputs
        if out["output_type"] == "display_data"
    ]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_ends_with_the_saved_dag_snapshots(path: Path, tmp_path: Path) -> None:
    saved = nbformat.read(path, as_version=4)
    work = tmp_path / path.name
    shutil.copy(path, work)
    nb = nbformat.read(work, as_version=4)
    NotebookClient(
        nb, timeout=120, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    ).execute()

    expected = _dag_bundles(saved)
    got = _dag_bundles(nb)
    assert expected, f"{path.name}: the saved notebook has no DAG snapshot"
    assert [i for i, _ in got] == [i for i, _ in expected], f"{path.name}: DAG outputs in other cells"
    for (cell, data), (_, want) in zip(got, expected, strict=True):
        # Every live widget was replaced by its static snapshot once the run ended.
        assert WIDGET_MIME not in data, f"{path.name} cell {cell}: still a live widget"
        assert data["text/plain"] == want["text/plain"], f"{path.name} cell {cell}"
        got_svg, want_svg = svg_structure(data["image/svg+xml"]), svg_structure(want["image/svg+xml"])
        assert want_svg["nodes"], f"{path.name} cell {cell}: the saved SVG has no nodes"
        assert got_svg == want_svg, f"{path.name} cell {cell}: the DAG picture shows another graph"
        assert "image/png" not in data, f"{path.name} cell {cell}: a PNG beside the SVG (weight, no gain)"
