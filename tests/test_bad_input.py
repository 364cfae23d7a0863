"""Bad input to steps and pipelines: clear errors naming the step and input, exact parameters."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import threading
from pathlib import Path
from typing import Any

import pytest

from dynpipe import Client, StepTypeError, pipeline, step

ran: list[Any] = []


@step
def want_int(x: int) -> int:
    ran.append(x)
    return x + 1


@step
def describe(value: Any) -> str:
    ran.append(value)
    return f"{type(value).__name__}:{value!r}"


@step
def take(mapping: dict) -> int:
    return len(mapping)


@step(enable_cache=False)
def one() -> int:
    return 1


def test_a_parameter_of_the_wrong_type_names_step_and_input_and_does_not_run() -> None:
    ran.clear()

    @pipeline(dynamic=True)
    def p() -> None:
        want_int(1)
        want_int("hello")  # type: ignore[arg-type]

    with pytest.raises(StepTypeError, match=r"step 'want_int': input 'x' expects int, got str \('hello'\)"):
        p()
    assert ran == [1]  # the body of the bad call never ran
    run = Client().get_pipeline("p").last_run
    assert run.status.value == "failed"
    assert run.steps["want_int"].output.load() == 2  # what was stored before is intact


def test_a_pipeline_parameter_of_the_wrong_type_is_named() -> None:
    @pipeline(dynamic=True)
    def trains(epochs: int = 3) -> None:
        want_int(epochs)

    with pytest.raises(StepTypeError, match="pipeline 'trains': parameter 'epochs' expects int, got str"):
        trains(epochs="many")  # type: ignore[arg-type]
    assert trains(epochs=4).status.value == "completed"


def test_parameters_json_would_change_are_kept_exactly_and_do_not_share_cache_entries() -> None:
    ran.clear()

    @pipeline(dynamic=True)
    def p() -> None:
        describe({1: "a"})
        describe({"1": "a"})
        describe((1, 2))
        describe([1, 2])

    run = p()
    outputs = [run.steps[i].output.load() for i in ("describe", "describe_2", "describe_3", "describe_4")]
    assert outputs == ["dict:{1: 'a'}", "dict:{'1': 'a'}", "tuple:(1, 2)", "list:[1, 2]"]
    assert [s.status.value for s in run.steps.values()] == ["completed"] * 4
    assert ran == [{1: "a"}, {"1": "a"}, (1, 2), [1, 2]]
    # A second run hits the cache for each, with the same exact values.
    again = p()
    ids = ("describe", "describe_2", "describe_3", "describe_4")
    assert [again.steps[i].status.value for i in ids] == ["cached"] * 4
    assert [again.steps[i].output.load() for i in ids] == outputs


@pytest.mark.filterwarnings("ignore:dynpipe. no materializer")
def test_an_unstorable_parameter_names_step_and_input() -> None:
    @pipeline(dynamic=True)
    def p() -> None:
        describe(threading.Lock())

    with pytest.raises(TypeError, match="step 'describe': input 'value' of type lock cannot be stored"):
        p()


def test_futures_nested_in_a_dict_are_a_clear_error() -> None:
    @pipeline(dynamic=True)
    def p() -> None:
        take({"a": one.submit()})

    with pytest.raises(TypeError, match="step 'take': input 'mapping' holds futures/artifacts inside a dict"):
        p()


def test_numpy_scalars_pass_int_and_float_annotations_and_round_trip() -> None:
    np = pytest.importorskip("numpy")

    @step
    def best(scores: list[float]) -> int:
        return np.argmax(scores)

    @step
    def mean(xs: list[float]) -> float:
        return np.float32(sum(xs) / len(xs))

    @step
    def shifted(i: int) -> int:
        return i + 1

    @pipeline(dynamic=True)
    def p() -> int:
        i = best([0.1, 0.9, 0.3])
        mean([1.0, 2.0])
        return shifted(i).load()

    run = p()
    assert run.status.value == "completed"
    value = run.steps["best"].output.load()
    assert value == 1 and isinstance(value, np.integer)
    assert run.steps["best"].output.materializer == "numpy"
    assert run.steps["shifted"].output.load() == 2
    assert run.steps["mean"].output.load() == pytest.approx(1.5)


MAIN_SCRIPT = '''
from pydantic import BaseModel
from dynpipe import pipeline, step

class Config(BaseModel):
    lr: float
    layers: list[int]

@step
def make() -> Config:
    return Config(lr=0.1, layers=[8, 4])

@step(runtime="isolated")
def width(cfg: Config) -> int:
    return sum(cfg.layers)

@pipeline(dynamic=True)
def models() -> None:
    width(make())

run = models()
print(run.status, run.steps["width"].output.load())
'''

READER = '''
from dynpipe import Client
run = Client().get_pipeline("models").last_run
cfg = run.steps["make"].output.load()
print(type(cfg).__name__, cfg.lr, cfg.layers)
'''


def test_a_pydantic_model_defined_in_main_loads_in_other_processes(tmp_path: Path) -> None:
    script = tmp_path / "models.py"
    script.write_text(textwrap.dedent(MAIN_SCRIPT))
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "completed 12"  # the isolated worker loaded the model too
    reader = subprocess.run([sys.executable, "-c", READER], capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert reader.returncode == 0, reader.stderr
    assert reader.stdout.strip() == "Config 0.1 [8, 4]"


REDEFINED = '''
from pydantic import BaseModel
from dynpipe import pipeline, step

class Config(BaseModel):
    lr: float

@step
def make() -> Config:
    return Config(lr=0.5)

@pipeline(dynamic=True)
def saved() -> None:
    make()

run = saved()
art = run.steps["make"].output

class Config(BaseModel):  # the notebook redefines the class with other fields
    lr: float
    depth: int

old = art.load()
print(type(old).__name__, old.lr, hasattr(old, "depth"))
'''


def test_a_redefined_main_pydantic_class_still_loads_older_artifacts(tmp_path: Path) -> None:
    script = tmp_path / "redefined.py"
    script.write_text(REDEFINED)
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "Config 0.5 False"
