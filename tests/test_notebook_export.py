"""Export: a notebook's setup cells + its %%pipeline NAME cells become a runnable module."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from dynpipe.notebook.export import export_notebook

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"


def test_exported_quickstart_runs_as_a_script(tmp_path: Path) -> None:
    module = tmp_path / "quickstart_pipeline.py"
    module.write_text(export_notebook(NOTEBOOKS / "quickstart.ipynb"))
    source = module.read_text()
    assert "%load_ext" not in source and "@pipeline(dynamic=True, name='quickstart')" in source
    assert "futures[0].result()" in source and "await" not in source
    proc = subprocess.run([sys.executable, str(module)], capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "best score: 0.833" in proc.stdout and ": completed" in proc.stdout


def test_cells_of_other_runs_and_before_new_are_left_out(tmp_path: Path) -> None:
    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_code_cell("%load_ext dynpipe\nfrom dynpipe import step"),
        nbformat.v4.new_code_cell("%%pipeline a\nold = 1"),
        nbformat.v4.new_code_cell("%%pipeline b --mode fail_fast\nother = 2"),
        nbformat.v4.new_code_cell("%%pipeline a --new --mode continue_on_failure\nfresh = 3"),
        nbformat.v4.new_code_cell("print('inspection after the run')"),
        nbformat.v4.new_code_cell("%%pipeline a\nmore = 4"),
    ]
    path = tmp_path / "nb.ipynb"
    nbformat.write(nb, path)
    source = export_notebook(path, "a")
    assert "fresh = 3" in source and "more = 4" in source
    assert "old = 1" not in source and "other = 2" not in source and "inspection" not in source
    assert "execution_mode='continue_on_failure'" in source
    compile(source, "exported.py", "exec")
    with pytest.raises(ValueError, match="no %%pipeline zzz"):
        export_notebook(path, "zzz")


def test_dynpipe_export_command_writes_a_module(tmp_path: Path) -> None:
    out = tmp_path / "caching_pipeline.py"
    proc = subprocess.run(
        [sys.executable, "-m", "dynpipe.cli", "export", str(NOTEBOOKS / "caching.ipynb"), "-o", str(out)],
        capture_output=True, text=True, timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert "@pipeline(dynamic=True, name='caching')" in out.read_text()
    missing = subprocess.run(
        [sys.executable, "-m", "dynpipe.cli", "export", str(tmp_path / "missing.ipynb")],
        capture_output=True, text=True, timeout=60,
    )
    assert missing.returncode == 1 and "missing.ipynb" in missing.stderr
