"""What travels to a local worker with each attempt: the fields a step's attempts share go
once per step (``StepParts``), the rest per attempt, by the C pickler when it is plain data.
Steps of different shapes interleaved in one run each get their own types, outputs and
materializers, and an input stored with cloudpickle arrives whole."""

from __future__ import annotations

import dataclasses
import os
from typing import Annotated

import pytest

from dynpipe import Client, pipeline, step
from dynpipe.runtimes.local_launch import replaced
from dynpipe.runtimes.shipping import plain_parameters
from dynpipe.runtimes.task import StepTask
from dynpipe.store.materializers import Materializer, registry

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(autouse=True)
def _two_workers(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DYNPIPE_WORKERS", "2")
    monkeypatch.setenv("DYNPIPE_ECHO_LOGS", "false")


class Shout(Materializer):
    """Stores text upper-cased: proves which materializer the worker used."""

    name = "shout"
    handles = (str,)

    def save(self, value: str) -> bytes:
        return value.upper().encode()

    def load(self, data: bytes, data_type: str) -> str:
        return data.decode()


@dataclasses.dataclass
class Point:
    x: int
    y: int


class PointPickle(Materializer):
    name = "point-pickle"
    handles = (Point,)

    def save(self, value: Point) -> bytes:
        return f"{value.x},{value.y}".encode()

    def load(self, data: bytes, data_type: str) -> Point:
        x, y = data.decode().split(",")
        return Point(int(x), int(y))


@step(runtime="isolated", enable_cache=False, output_materializers=Shout)
def shout(text: str) -> str:
    return f"{text} from {os.getpid()}"


@step(runtime="isolated", enable_cache=False)
def pair(i: int) -> tuple[Annotated[int, "double"], Annotated[int, "square"]]:
    return 2 * i, i * i


@step(runtime="isolated", enable_cache=False, output_materializers=PointPickle)
def point(i: int) -> Point:
    return Point(i, 1)


@step(runtime="isolated", enable_cache=False)
def norm(p: Point, scale: dict[str, list[float]]) -> int:
    return (p.x * p.x + p.y * p.y) * int(scale["by"][0])


def test_interleaved_steps_keep_their_own_outputs_materializers_and_parameters() -> None:
    @pipeline(dynamic=True, enable_cache=False)
    def mixed() -> None:
        futures = []
        for i in range(12):
            futures += [shout.submit(f"hi {i}"), pair.submit(i), norm.submit(point.submit(i), {"by": [2.0]})]
        for f in futures:
            f.wait()

    run = mixed()
    assert run.status == "completed", run.status
    steps = Client().get_pipeline_run(run.id).steps
    for i in range(12):
        suffix = "" if i == 0 else f"_{i + 1}"
        assert steps[f"shout{suffix}"].output.load().startswith(f"HI {i} FROM ")
        assert steps[f"pair{suffix}"].outputs["double"].load() == 2 * i
        assert steps[f"pair{suffix}"].outputs["square"].load() == i * i
        assert steps[f"norm{suffix}"].output.load() == (i * i + 1) * 2


def test_only_exact_builtin_data_counts_as_plain() -> None:
    assert plain_parameters({"a": 1, "b": [1.5, "x", None, (True, b"z")], "c": {"d": {}}})
    assert not plain_parameters({"p": Point(1, 2)})
    assert not plain_parameters({"n": [list(range(10))] * 100})  # large: left to cloudpickle
    assert not plain_parameters({"s": type("Str", (str,), {})("subclass")})


def test_the_task_copy_sent_to_a_worker_is_dataclasses_replace() -> None:
    task = StepTask(
        run_id="r", run_name="n", pipeline_name="p", step_run_id="s", invocation_id="i",
        step_name="st", func=len, parameters={"a": 1}, inputs={}, input_annotations={"a": int},
        outputs=[], materializers={}, store_root="/x", settings={"k": [1]}, resources="res",
    )
    copy = replaced(task, func=None, echo_logs=False, settings=None)
    assert copy == dataclasses.replace(task, func=None, echo_logs=False, settings=None)
    assert type(copy) is StepTask and copy is not task
    assert task.func is len and task.echo_logs and task.settings == {"k": [1]}  # the original is untouched
    assert [f.name for f in dataclasses.fields(StepTask)] == list(task.__dict__)  # no field kept elsewhere
    assert not hasattr(StepTask, "__post_init__")  # replaced() skips __init__


class Tagged:
    def __init__(self, text: str) -> None:
        self.text = text


class TaggedMaterializer(Materializer):
    name = "tagged"
    handles = (Tagged,)

    def save(self, value: Tagged) -> bytes:
        return f"tagged:{value.text}".encode()

    def load(self, data: bytes, data_type: str) -> Tagged:
        return Tagged(data.decode())


@step(runtime="isolated", enable_cache=False)
def tagged(text: str) -> Tagged:
    return Tagged(text)


def test_a_materializer_registered_while_the_workers_run_reaches_them(monkeypatch: pytest.MonkeyPatch) -> None:
    """Workers apply the registrations shipped with a task once; a new one is applied on the
    next task that carries it."""

    @pipeline(dynamic=True, enable_cache=False)
    def warm() -> None:
        for f in [shout.submit(f"w{i}") for i in range(4)]:
            f.wait()

    @pipeline(dynamic=True, enable_cache=False)
    def tags() -> None:
        for f in [tagged.submit(f"t{i}") for i in range(4)]:
            f.wait()

    assert warm().status == "completed"  # the workers have applied the registrations so far
    mat = TaggedMaterializer()
    monkeypatch.setitem(registry._by_type, Tagged, mat)  # register_materializer, undone after the test
    monkeypatch.setitem(registry._by_name, mat.name, mat)
    run = tags()
    assert run.status == "completed", run.status
    outputs = [s.output for s in Client().get_pipeline_run(run.id).steps.values()]
    assert len(outputs) == 4
    assert {o.materializer for o in outputs} == {"tagged"}
    assert sorted(o.load().text for o in outputs) == [f"tagged:t{i}" for i in range(4)]
