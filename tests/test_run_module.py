"""``dynpipe run MODULE [-p NAME=VALUE]... [--config FILE]``: values parsed against the
pipeline's signature; an unknown or ill-typed parameter fails before any run, naming it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from dynpipe import Client

ROOT = Path(__file__).resolve().parent.parent

MODULE = """
from dynpipe import pipeline, step

@step
def combine(lr: float, epochs: int, tag: str, flags: list[int], factor: int = 1) -> str:
    return f"{lr}|{epochs}|{tag}|{flags}|{factor}"

@pipeline(dynamic=True, name="tuned")
def tuned(lr: float = 0.01, epochs: int = 2, tag: str = "base", flags: list[int] = [], verbose=False) -> None:
    combine(lr, epochs, tag if not verbose else tag + "!", flags)
"""


def dynpipe_run(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    module = tmp_path / "tuned.py"
    module.write_text(MODULE)
    env = {
        **os.environ,
        "DYNPIPE_HOME": str(tmp_path / "store"),
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
    }
    return subprocess.run(
        [sys.executable, "-m", "dynpipe.cli", "run", str(module), *args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
        env=env,
    )


def output(tmp_path: Path) -> str:
    return Client(tmp_path / "store").get_pipeline("tuned").last_run.steps["combine"].output.load()


def test_good_values_are_parsed_by_the_signature(tmp_path: Path) -> None:
    proc = dynpipe_run(
        tmp_path, "-p", "lr=0.5", "-p", "epochs=3", "-p", "tag=007", "-p", "flags=[1, 2]", "-p", "verbose=true"
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("run tuned-") and ": completed" in proc.stdout
    assert output(tmp_path) == "0.5|3|007!|[1, 2]|1"  # tag stays text: '007', not 7


def test_defaults_and_an_int_for_a_float(tmp_path: Path) -> None:
    proc = dynpipe_run(tmp_path, "-p", "lr=1")
    assert proc.returncode == 0, proc.stderr
    assert output(tmp_path) == "1.0|2|base|[]|1"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["-p", "lrr=0.1"], "pipeline 'tuned' has no parameter 'lrr' (parameters: lr, epochs, tag, flags, verbose)"),
        (["-p", "epochs=three"], "pipeline 'tuned': parameter 'epochs' expects int, got 'three'"),
        (["-p", "epochs=1.5"], "pipeline 'tuned': parameter 'epochs' expects int, got '1.5'"),
        (["-p", "lr=fast"], "pipeline 'tuned': parameter 'lr' expects float, got 'fast'"),
        (["-p", 'flags=[1, "x"]'], "pipeline 'tuned': parameter 'flags' expects list[int], got '[1, \"x\"]'"),
        (["-p", "verbose=maybe"], "pipeline 'tuned': parameter 'verbose' expects bool, got 'maybe'"),
        (["-p", "lr"], "pipeline 'tuned': -p 'lr' is not NAME=VALUE"),
    ],
)
def test_bad_values_fail_before_the_run_naming_the_parameter(tmp_path: Path, args: list[str], message: str) -> None:
    proc = dynpipe_run(tmp_path, *args)
    assert proc.returncode == 2
    assert proc.stderr.strip() == f"dynpipe: {message}"
    assert not (tmp_path / "store").exists() or not Client(tmp_path / "store").list_pipeline_runs()


def test_config_file_sets_parameters_and_steps_and_p_wins(tmp_path: Path) -> None:
    config = tmp_path / "run.yaml"
    config.write_text(
        "parameters:\n  epochs: 5\n  tag: from-yaml\nsteps:\n  combine:\n    parameters:\n      factor: 4\n"
    )
    proc = dynpipe_run(tmp_path, "--config", str(config), "-p", "tag=cli")
    assert proc.returncode == 0, proc.stderr
    assert output(tmp_path) == "0.01|5|cli|[]|4"
    config.write_text("parameters:\n  epochz: 5\n")
    proc = dynpipe_run(tmp_path, "--config", str(config))
    assert proc.returncode == 2 and "configured parameter 'epochz' is not a parameter of the pipeline" in proc.stderr
    config.write_text("execution_mode: sometimes\n")
    proc = dynpipe_run(tmp_path, "--config", str(config))
    assert proc.returncode == 2 and f"{config}, line 1: execution_mode" in proc.stderr


def test_a_missing_module_is_named(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "dynpipe.cli", "run", str(tmp_path / "nowhere.py")],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
        env={**os.environ, "DYNPIPE_HOME": str(tmp_path / "store")},
    )
    assert proc.returncode == 1 and "nowhere.py does not exist" in proc.stderr
