"""Composition: a pipeline called inside another runs as a child run linked to its parent."""

from __future__ import annotations

from typing import Any

import pytest

from dynpipe import Client, pipeline, step


@step
def load_data(n: int) -> list[int]:
    return list(range(n))


@step
def train(data: list[int]) -> float:
    return sum(data) / len(data)


@step
def report(score: float) -> str:
    return f"score={score}"


@pipeline(dynamic=True)
def data_pipeline(n: int) -> Any:
    return load_data(n)


@pipeline
def static_data_pipeline() -> Any:
    return load_data(4)


def test_child_run_is_linked_to_its_parent_and_outputs_flow_back() -> None:
    @pipeline(dynamic=True)
    def training_pipeline() -> None:
        data = data_pipeline(5)
        report(train(data))

    parent = training_pipeline()
    assert parent.status.value == "completed"
    assert list(parent.steps) == ["train", "report"]
    assert parent.steps["report"].output.load() == "score=2.0"
    children = Client().list_pipeline_runs(parent_run_id=parent.id)
    assert len(children) == 1
    child = children[0]
    assert child.pipeline_name == "data_pipeline"
    assert child.parent_run_id == parent.id
    assert child.status.value == "completed"
    assert list(child.steps) == ["load_data"]
    assert child.config["parameters"] == {"n": 5}
    # the parent's step consumed the child's artifact itself
    assert parent.steps["train"].inputs == {"data": child.steps["load_data"].output.id}
    assert parent.steps["train"].upstream == []  # the edge crosses runs; not an in-run edge
    assert Client().get_pipeline("data_pipeline").last_run.id == child.id


def test_static_child_inside_a_dynamic_parent_and_invocation_ids_per_run() -> None:
    @pipeline(dynamic=True)
    def parent_pipeline() -> None:
        load_data(2)
        data = static_data_pipeline()
        load_data(3)
        train(data)

    parent = parent_pipeline()
    assert list(parent.steps) == ["load_data", "load_data_2", "train"]
    assert parent.steps["train"].output.load() == 1.5
    (child,) = Client().list_pipeline_runs(parent_run_id=parent.id)
    assert list(child.steps) == ["load_data"]


def test_two_levels_of_nesting() -> None:
    @pipeline(dynamic=True)
    def middle() -> Any:
        return data_pipeline(3)

    @pipeline(dynamic=True)
    def top() -> None:
        train(middle())

    run = top()
    (mid,) = Client().list_pipeline_runs(parent_run_id=run.id)
    (low,) = Client().list_pipeline_runs(parent_run_id=mid.id)
    assert (mid.pipeline_name, low.pipeline_name) == ("middle", "data_pipeline")
    assert run.steps["train"].output.load() == 1.0


def test_child_failure_fails_child_and_parent() -> None:
    @step
    def breaks() -> None:
        raise RuntimeError("child broke")

    @pipeline(dynamic=True)
    def child() -> None:
        breaks()

    @pipeline(dynamic=True)
    def parent() -> None:
        load_data(1)
        child()
        load_data(2)

    with pytest.raises(RuntimeError, match="child broke"):
        parent()
    p = Client().get_pipeline("parent").last_run
    c = Client().get_pipeline("child").last_run
    assert p.status.value == "failed" and c.status.value == "failed"
    assert c.parent_run_id == p.id
    assert list(p.steps) == ["load_data"]


def test_child_failure_can_be_handled_by_the_parent() -> None:
    @step
    def breaks() -> None:
        raise RuntimeError("child broke")

    @pipeline(dynamic=True)
    def child() -> None:
        breaks()

    @pipeline(dynamic=True)
    def parent() -> str:
        try:
            child()
        except RuntimeError:
            return "recovered"
        return "no error"

    run = parent()
    assert run.status.value == "completed"  # no step of the parent failed
    assert Client().get_pipeline("child").last_run.status.value == "failed"


def test_child_uses_its_own_configuration() -> None:
    @step(enable_cache=True)
    def cached() -> int:
        return 1

    @pipeline(dynamic=True, enable_cache=False, execution_mode="continue_on_failure")
    def child() -> None:
        cached()

    @pipeline(dynamic=True)
    def parent() -> None:
        child()

    parent()
    run = parent()
    (c,) = Client().list_pipeline_runs(parent_run_id=run.id)
    assert c.config["execution_mode"] == "continue_on_failure"
    assert c.steps["cached"].status.value == "cached"


def test_a_static_parent_passing_a_step_output_to_a_child_pipeline_completes() -> None:
    @step
    def base() -> int:
        return 1

    @step
    def twice(x: int) -> int:
        return 2 * x

    @pipeline
    def static_child(x: int) -> Any:
        return twice(x)

    @pipeline
    def static_parent() -> None:
        a = base()
        b = static_child(a)  # needs base's output while the parent is still compiling
        twice(b, id="twice_in_parent")

    run = static_parent()  # used to wait forever on the held 'base' step
    assert run.status.value == "completed"
    assert run.steps["twice_in_parent"].output.load() == 4
    (child,) = Client().list_pipeline_runs(parent_run_id=run.id)
    assert child.pipeline_name == "static_child" and child.status.value == "completed"
