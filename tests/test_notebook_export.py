"""Export: a notebook's set-up cells + its %%pipeline NAME cells become a module that behaves
like the notebook, or the export stops naming the cell and line it cannot translate."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from dynpipe.errors import TargetError
from dynpipe.notebook.export import export_notebook

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = ROOT / "notebooks"
AWKWARD = ROOT / "tests" / "notebooks" / "awkward.ipynb"


def notebook(tmp_path: Path, *cells: str | tuple[str, list[str]]) -> Path:
    """A notebook of code cells; a (source, tags) pair gets tags."""
    nb = nbformat.v4.new_notebook()
    for cell in cells:
        source, tags = cell if isinstance(cell, tuple) else (cell, [])
        nb.cells.append(nbformat.v4.new_code_cell(source, metadata={"tags": tags} if tags else {}))
    path = tmp_path / "nb.ipynb"
    nbformat.write(nb, path)
    return path


def test_exported_quickstart_runs_as_a_script(tmp_path: Path) -> None:
    module = tmp_path / "quickstart_pipeline.py"
    module.write_text(export_notebook(NOTEBOOKS / "quickstart.ipynb"))
    source = module.read_text()
    assert "%load_ext" in source and "@pipeline(dynamic=True, name='quickstart')" in source
    assert "# %load_ext dynpipe  [notebook only, left out by export]" in source
    assert "first = _run_await(futures[0])" in source and "await futures" not in source
    assert "time.sleep(0.2)          # pretend to work" in source  # comments and spacing kept
    proc = subprocess.run(
        [sys.executable, str(module)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
        env={**os.environ, "DYNPIPE_HOME": str(tmp_path / "store")},
    )
    assert proc.returncode == 0, proc.stderr
    assert "best score: 0.833" in proc.stdout and ": completed" in proc.stdout


def test_cells_of_other_runs_and_before_new_are_left_out(tmp_path: Path) -> None:
    path = notebook(
        tmp_path,
        "%load_ext dynpipe\nfrom dynpipe import step",
        "%%pipeline a\nold = 1",
        "%%pipeline b --mode fail_fast\nother = 2",
        "%%pipeline a --new --mode continue_on_failure\nfresh = 3",
        "print('inspection after the run')",
        "%%pipeline a --mode fail_fast\nmore = 4",
    )
    source = export_notebook(path, "a")
    body = source.split("def a() -> None:", 1)[1]
    assert "    fresh = 3" in body and "    more = 4" in body
    assert "\n    old = 1" not in source and "\n    other = 2" not in source
    assert "\nprint('inspection after the run')" not in source  # only as a comment
    assert "# | print('inspection after the run')" in source
    assert "execution_mode='continue_on_failure'" in source and "execution_mode='fail_fast'" not in source
    assert "# %% cell 2: %%pipeline a  [an earlier run; cell 4 starts a new one: left out]" in source
    ended = notebook(
        tmp_path, "from dynpipe import step", "%%pipeline a\nold = 1", "%pipeline end a", "%%pipeline a\nnew = 2"
    )
    source = export_notebook(ended)
    assert "\n    old = 1" not in source and "\n    new = 2" in source
    compile(source, "exported.py", "exec")
    with pytest.raises(ValueError, match="no %%pipeline zzz"):
        export_notebook(path, "zzz")


def test_lines_keep_their_place_within_each_cell(tmp_path: Path) -> None:
    cell = "# first\n%env A=1\nx = %time len('ab')\nif x:\n    !echo hi\nawait asyncio.sleep(0)\ny = 2"
    path = notebook(tmp_path, "import asyncio\nfrom dynpipe import step", f"%%pipeline p\n{cell}")
    source = export_notebook(path).splitlines()
    start = source.index("    # %% cell 2: %%pipeline p") + 1
    assert source[start : start + 7] == [
        "    # first",
        "    os.environ['A'] = '1'",
        "    x = len('ab')",
        "    if x:",
        "        subprocess.run('echo hi', shell=True, check=False)",
        "    _run_await(asyncio.sleep(0))",
        "    y = 2",
    ]


@pytest.mark.parametrize(
    ("cells", "message"),
    [
        (["%%pipeline p\nx = 1\n%timeit f()"], r"cell 1, line 2: %timeit has no plain-Python equivalent"),
        (
            ["%%pipeline p\nfiles = !ls"],
            r"cell 1, line 1: 'files = !ls' \(a shell or magic command\) cannot be exported",
        ),
        (
            ["%%bash\necho hi", "%%pipeline p\nx = 1"],
            r"cell 1, line 1: cell magic %%bash has no plain-Python equivalent",
        ),
        (["v = 'x'\n%env A=$v", "%%pipeline p\nx = 1"], r"cell 1, line 2: %env uses IPython's \$name"),
        (["%%pipeline p\nasync for a in b():\n    pass"], r"cell 1, line 1: top-level 'async for'"),
        (["%%pipeline p\nx = (1"], r"cell 1, line 1: invalid syntax"),
        (["%%pipeline p --mode sometimes\nx = 1"], r"cell 1: unknown --mode 'sometimes'"),
        (["%%pipeline p --bogus\nx = 1"], r"cell 1: %%pipeline p --bogus: unrecognized arguments: --bogus"),
        (
            [("lr = 0.1\nprint(lr)", ["parameters"]), "%%pipeline p\nx = lr"],
            r"cell 1 \(tagged parameters\), line 2: a parameters cell holds only NAME = VALUE lines",
        ),
        (
            [("lr = 0.1", ["parameters"]), "def f():\n    return lr * 2", "%%pipeline p\nx = f()"],
            r"cell 2, line 2: set-up code reads parameter 'lr'",
        ),
        (
            ["%%pipeline p\nx = 1", "threshold = 0.5", "%%pipeline p\ny = threshold"],
            r"cell 3, line 1: reads 'threshold', set by cell 2, which export leaves out",
        ),
        (["%%pipeline p\nx = get_ipython().user_ns"], r"cell 1, line 1: get_ipython\(\) exists only in IPython"),
        (
            ["%%pipeline p\ng = 1", "def f():\n    return g"],
            r"cell 2, line 2: set-up code reads 'g', which a %%pipeline cell sets",
        ),
        (
            ["data = [1]", "%%pipeline p\nn = len(data)", "%%pipeline p\ndata = [2]"],
            r"cell 2, line 1: reads the set-up variable 'data' before a %%pipeline cell assigns it",
        ),
        (
            ["%%pipeline p\nx = 1", "%%pipeline other\nshared = 1", "%%pipeline p\ny = shared"],
            r"cell 3, line 1: reads 'shared', set by cell 2, which export leaves out",
        ),
    ],
)
def test_what_cannot_be_translated_stops_the_export_naming_cell_and_line(
    tmp_path: Path, cells: list[str | tuple[str, list[str]]], message: str
) -> None:
    path = notebook(tmp_path, *cells)
    with pytest.raises(TargetError, match=message):
        export_notebook(path)


def test_names_that_resolve_the_same_way_pass_the_checks(tmp_path: Path) -> None:
    path = notebook(
        tmp_path,
        "i = 10\ndata = [1]\nfrom dynpipe import step",
        "%%pipeline p\nsquares = [i * i for i in range(3)]\ndata = data + [2]  # noqa",
        "%%pipeline p\nn = len(data)",
        "%pipeline end p",
    )
    with pytest.raises(TargetError, match="reads the set-up variable 'data'"):
        export_notebook(path)
    path = notebook(
        tmp_path, "i = 10\nfrom dynpipe import step", "%%pipeline p\nsquares = [i * i for i in range(3)]\nj = i"
    )
    assert "    squares = [i * i for i in range(3)]" in export_notebook(path)


def test_a_step_named_like_the_run_keeps_its_name(tmp_path: Path) -> None:
    path = notebook(
        tmp_path,
        "from dynpipe import step\n\n@step\ndef train(i: int) -> int:\n    return i + 1",
        "%%pipeline train\nx = train(1).load()\nprint('x is', x)",
    )
    module = tmp_path / "train_module.py"
    module.write_text(export_notebook(path))
    assert "def train_pipeline() -> None:" in module.read_text()
    proc = subprocess.run(
        [sys.executable, str(module)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
        env={**os.environ, "DYNPIPE_HOME": str(tmp_path / "store")},
    )
    assert proc.returncode == 0, proc.stderr
    assert "x is 2" in proc.stdout


def test_display_works_in_the_module(tmp_path: Path) -> None:
    path = notebook(tmp_path, "from dynpipe import step", "%%pipeline p\ndisplay({'shown': 1})")
    module = tmp_path / "p.py"
    module.write_text(export_notebook(path))
    proc = subprocess.run(
        [sys.executable, str(module)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
        env={**os.environ, "DYNPIPE_HOME": str(tmp_path / "store")},
    )
    assert proc.returncode == 0, proc.stderr
    assert "{'shown': 1}" in proc.stdout


def test_parameters_cell_becomes_the_signature(tmp_path: Path) -> None:
    path = notebook(
        tmp_path,
        ('lr = 0.01\nepochs: int = 3\nname = "base"  # a comment\nlayers = [1, 2]\nseed = None', ["parameters"]),
        "%%pipeline p\nx = (lr, epochs, name, layers, seed)",
    )
    source = export_notebook(path)
    assert (
        'def p(lr: float = 0.01, epochs: int = 3, name: str = "base", layers: list = [1, 2], seed=None) -> None:'
        in source
    )
    assert "# %% cell 1\n# (tagged parameters" in source
    assert "\nlr = 0.01" not in source  # not module globals


def test_dynpipe_export_command_writes_a_module(tmp_path: Path) -> None:
    out = tmp_path / "caching_pipeline.py"
    proc = subprocess.run(
        [sys.executable, "-m", "dynpipe.cli", "export", str(NOTEBOOKS / "caching.ipynb"), "-o", str(out)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert "@pipeline(dynamic=True, name='caching')" in out.read_text()
    missing = subprocess.run(
        [sys.executable, "-m", "dynpipe.cli", "export", str(tmp_path / "missing.ipynb")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert missing.returncode == 1 and "missing.ipynb" in missing.stderr
    bad = notebook(tmp_path, "%%pipeline p\n%timeit 1")
    refused = subprocess.run(
        [sys.executable, "-m", "dynpipe.cli", "export", str(bad)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert refused.returncode == 1 and "cell 1, line 1: %timeit" in refused.stderr and not refused.stdout


@pytest.mark.timeout(180)
def test_pipeline_export_magic_in_a_real_kernel(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DYNPIPE_HOME", str(tmp_path / "store"))
    monkeypatch.delenv("JPY_SESSION_NAME", raising=False)
    out = tmp_path / "awkward_module.py"
    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_code_cell("%load_ext dynpipe"),
        nbformat.v4.new_code_cell(f"%pipeline export awkward -o {out} --notebook {AWKWARD}"),
        nbformat.v4.new_code_cell("%pipeline export awkward"),
    ]
    nb.cells[2].metadata["tags"] = ["raises-exception"]
    NotebookClient(nb, timeout=120, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
    said = "".join(o.get("text", "") for o in nb.cells[1].outputs)
    assert f"wrote {out}" in said and "parameters: lr: float = 0.01, epochs: int = 2" in said
    assert f"dynpipe run {out} [-p NAME=VALUE]..." in said
    assert out.read_text() == export_notebook(AWKWARD, output=out)
    error = nb.cells[2].outputs[0]
    assert error["output_type"] == "error" and "pass --notebook PATH" in error["evalue"]
