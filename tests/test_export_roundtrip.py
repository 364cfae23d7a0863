"""Export round trip: a notebook run in a real kernel and its exported module run with python
record the same steps, statuses and outputs (compared through ``dynpipe.Client``)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import nbformat
import pytest
from nbclient import NotebookClient

from dynpipe import Client
from dynpipe.notebook.export import export_notebook

pytestmark = pytest.mark.timeout(300)

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "notebooks"
AWKWARD = ROOT / "tests" / "notebooks" / "awkward.ipynb"

# Outputs that differ on every run by nature: process ids, and how many worker processes the
# pool happened to use for them (scheduling). Compared by type only.
VOLATILE = {"isolated": ("where", "count")}


def run_notebook(path: Path, home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Execute the notebook in a real kernel (cwd: its folder) with its own store."""
    monkeypatch.setenv("DYNPIPE_HOME", str(home))
    nb = nbformat.read(str(path), as_version=4)
    client = NotebookClient(nb, timeout=120, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}})
    client.execute()


def run_module(module: Path, home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "DYNPIPE_HOME": str(home),
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
    }
    return subprocess.run(
        [sys.executable, *args] if args else [sys.executable, str(module)],
        capture_output=True,
        text=True,
        timeout=180,
        cwd=module.parent,
        env=env,
    )


def recorded(home: Path, pipeline: str) -> tuple[str, str | None, dict[str, tuple[str, dict[str, Any]]]]:
    """Run status, execution mode and {step: (status, outputs)} of the pipeline's last run.

    A cache hit counts as completed: the notebook may reuse an earlier run's outputs where
    the module, in a fresh store, computes them.
    """
    run = Client(home).get_pipeline(pipeline).last_run
    volatile = VOLATILE.get(pipeline, ())
    steps: dict[str, tuple[str, dict[str, Any]]] = {}
    for name, step in run.steps.items():
        status = "completed" if step.status.value == "cached" else step.status.value
        outputs = {out: art.load() for out, art in step.outputs.items()}
        if name.startswith(volatile):
            outputs = {out: type(value).__name__ for out, value in outputs.items()}
        steps[name] = (status, outputs)
    return run.status.value, run.config.get("execution_mode"), steps


def roundtrip(notebook: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Any, Any, str]:
    module = tmp_path / f"{notebook.stem}_pipeline.py"
    source = export_notebook(notebook, output=module)
    module.write_text(source)
    pipeline = source.split("name=", 1)[1].split("'")[1]
    run_notebook(notebook, tmp_path / "nb-store", monkeypatch)
    proc = run_module(module, tmp_path / "module-store")
    in_module = recorded(tmp_path / "module-store", pipeline)
    # A run that ends failed makes the module exit with an error, as a script should.
    assert (proc.returncode == 0) == (in_module[0] == "completed"), proc.stdout + proc.stderr
    return recorded(tmp_path / "nb-store", pipeline), in_module, source


@pytest.mark.parametrize("notebook", sorted(EXAMPLES.glob("*.ipynb")), ids=lambda p: p.stem)
def test_example_notebook_and_its_module_record_the_same_run(
    notebook: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    in_notebook, in_module, _ = roundtrip(notebook, tmp_path, monkeypatch)
    assert in_notebook[2], "the notebook recorded no steps"
    assert in_module == in_notebook


def test_awkward_notebook_and_its_module_record_the_same_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    in_notebook, in_module, source = roundtrip(AWKWARD, tmp_path, monkeypatch)
    status, mode, steps = in_notebook
    # What the notebook itself did, so a module that matches it is doing the right thing:
    assert status == "completed" and mode == "continue_on_failure"  # the first cell's --mode
    assert steps["greet"] == ("completed", {"output": "hello"})  # %env in a set-up cell
    assert steps["shout"] == ("completed", {"output": "HELLO!"})  # a step defined after the first run cell
    assert steps["fit"] == ("completed", {"output": 0.02})  # parameters lr=0.01, epochs=2
    assert steps["scale"] == ("completed", {"output": 0.03})  # --config sets factor=3
    assert in_module == in_notebook
    # The source keeps comments and quoting, and says where every line came from.
    assert "# we await a coroutine below; 'single quotes' and this comment stay as written" in source
    assert "return text.upper() + '!'" in source
    for number in (2, 3, 4, 6, 7, 8, 9):
        assert f"# %% cell {number}" in source
    assert "def awkward(lr: float = 0.01, epochs: int = 2) -> None:" in source
    assert "pass  # display only: g" in source
    assert "[--mode/--config ignored: they apply when a run starts]" in source


def test_awkward_module_runs_with_parameters_through_dynpipe_run(tmp_path: Path) -> None:
    module = tmp_path / "awkward_pipeline.py"
    module.write_text(export_notebook(AWKWARD, output=module))
    proc = run_module(
        module, tmp_path / "store", "-m", "dynpipe.cli", "run", str(module), "-p", "lr=0.1", "-p", "epochs=3"
    )
    assert proc.returncode == 0, proc.stderr
    steps = recorded(tmp_path / "store", "awkward")[2]
    assert steps["fit"] == ("completed", {"output": 0.3}) and steps["fit_2"] == ("completed", {"output": 0.1})
    assert steps["scale"] == ("completed", {"output": pytest.approx(0.3)})
