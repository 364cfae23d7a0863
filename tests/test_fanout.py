"""Fan-out helpers: step.map / step.product / unmapped / MapResultsFuture, and fan-in of
lists of futures or artifacts."""

from __future__ import annotations

import threading
from typing import Annotated, Any

import pytest
from helpers import DEADLINE, barrier, meet

from dynpipe import Client, MapResultsFuture, StepRunFuture, pipeline, step, unmapped


@step
def numbers(n: int) -> list[int]:
    return list(range(1, n + 1))


@step
def mul(x: int, factor: int) -> int:
    return x * factor


@step
def add(a: int, b: int) -> int:
    return a + b


@step
def split(x: int) -> tuple[Annotated[int, "half"], Annotated[int, "rest"]]:
    return x // 2, x - x // 2


@step
def total(xs: list[int]) -> int:
    return sum(xs)


def test_map_over_a_list_with_unmapped_broadcast_and_fan_in() -> None:
    seen: dict[str, Any] = {}

    @pipeline(dynamic=True)
    def p() -> None:
        results = mul.map([1, 2, 3], factor=unmapped(10))
        seen["type"] = type(results)
        seen["items"] = [type(r) for r in results]
        seen["loaded"] = results.load()
        seen["artifacts"] = [a.invocation_id for a in results.result()]
        total(results)

    run = p()
    assert seen["type"] is MapResultsFuture
    assert seen["items"] == [StepRunFuture] * 3
    assert seen["loaded"] == [10, 20, 30]
    assert seen["artifacts"] == ["mul", "mul_2", "mul_3"]
    assert run.steps["total"].output.load() == 60
    assert run.steps["total"].upstream == ["mul", "mul_2", "mul_3"]
    assert [run.steps[i].parameters for i in ("mul", "mul_2", "mul_3")] == [
        {"x": 1, "factor": 10}, {"x": 2, "factor": 10}, {"x": 3, "factor": 10},
    ]


def test_map_over_a_step_output_keeps_the_edge_to_its_producer() -> None:
    @pipeline(dynamic=True)
    def p() -> None:
        nums = numbers.submit(3)
        doubled = mul.map(nums, factor=unmapped(2))
        total(doubled)
        from_artifact = mul.map(numbers(2, id="two"), factor=unmapped(3))
        total(from_artifact, id="total_from_artifact")

    run = p()
    assert run.steps["total"].output.load() == 12
    assert run.steps["mul"].upstream == ["numbers"]
    assert run.steps["mul_3"].upstream == ["numbers"]
    assert run.steps["mul_4"].upstream == ["two"]
    assert run.steps["total_from_artifact"].output.load() == 9


def test_map_zips_several_inputs_and_rejects_different_lengths() -> None:
    @pipeline(dynamic=True)
    def p() -> None:
        total(add.map([1, 2], [10, 20]))

    assert p().steps["total"].output.load() == 33

    @pipeline(dynamic=True)
    def bad() -> None:
        add.map([1, 2], [10, 20, 30])

    with pytest.raises(ValueError, match="different lengths"):
        bad()


def test_map_errors_name_the_step_and_input() -> None:
    @pipeline(dynamic=True)
    def not_a_sequence() -> None:
        mul.map(5, factor=unmapped(2))

    with pytest.raises(TypeError, match="mul.map\\(\\): input 'x' is a int"):
        not_a_sequence()

    @pipeline(dynamic=True)
    def nothing_mapped() -> None:
        mul.map(unmapped(1), factor=unmapped(2))

    with pytest.raises(ValueError, match="no mapped input"):
        nothing_mapped()


def test_product_runs_every_combination() -> None:
    @pipeline(dynamic=True)
    def p() -> None:
        results = add.product([1, 2], [10, 20, 30])
        total(results)

    run = p()
    adds = [s for k, s in run.steps.items() if s.step_name == "add"]
    assert [(s.parameters["a"], s.parameters["b"]) for s in adds] == [
        (1, 10), (1, 20), (1, 30), (2, 10), (2, 20), (2, 30),
    ]
    assert run.steps["total"].output.load() == 3 * 3 + 2 * 60


def test_product_with_unmapped() -> None:
    @step
    def combine(a: int, b: int, c: int) -> int:
        return a * 100 + b * 10 + c

    seen: list[int] = []

    @pipeline(dynamic=True)
    def p() -> None:
        seen.extend(combine.product([1, 2], [3, 4], c=unmapped(5)).load())

    p()
    assert seen == [135, 145, 235, 245]


def test_unpack_multi_output_map_results() -> None:
    seen: dict[str, Any] = {}

    @pipeline(dynamic=True)
    def p() -> None:
        halves, rests = split.map([4, 5, 7]).unpack()
        seen["halves"] = [f.load() for f in halves]
        seen["rests"] = [f.load() for f in rests]
        total(halves, id="sum_halves")
        total(rests, id="sum_rests")

    run = p()
    assert seen == {"halves": [2, 2, 3], "rests": [2, 3, 4]}
    assert run.steps["sum_halves"].output.load() == 7
    assert run.steps["sum_rests"].output.load() == 9
    assert run.steps["sum_halves"].inputs["xs"] == [
        run.steps[i].outputs["half"].id for i in ("split", "split_2", "split_3")
    ]


def test_map_results_future_iteration_wait_done_and_result() -> None:
    # The three mapped steps meet at a barrier (it only opens if they run at the same
    # time) and then hold until the body has looked at done(), so done() must be False.
    together = barrier(3)
    looked = threading.Event()

    @step(enable_cache=False)
    def slow(x: int) -> int:
        meet(together, "the mapped steps")
        assert looked.wait(DEADLINE), "the pipeline body never checked done()"
        return x

    seen: dict[str, Any] = {}

    @pipeline(dynamic=True)
    def p() -> None:
        res = slow.map([1, 2, 3])
        seen["done_early"] = res.done()
        looked.set()
        res.wait()
        seen["done_after"] = res.done()
        seen["each"] = [f.load() for f in res]
        seen["ids"] = [f.invocation_id for f in res]
        seen["result"] = [a.load() for a in res.result()]
        seen["len"] = len(res)

    run = p()
    assert run.status.value == "completed"  # the barrier opened: the three ran concurrently
    assert seen == {
        "done_early": False, "done_after": True, "each": [1, 2, 3],
        "ids": ["slow", "slow_2", "slow_3"], "result": [1, 2, 3], "len": 3,
    }


def test_map_with_after_and_an_empty_input() -> None:
    @pipeline(dynamic=True)
    def p() -> None:
        first = numbers.submit(1)
        mul.map([1, 2], factor=unmapped(1), after=first)
        empty = mul.map([], factor=unmapped(1))
        assert empty == [] and empty.load() == []

    run = p()
    assert run.steps["mul"].upstream == ["numbers"]
    assert run.steps["mul_2"].upstream == ["numbers"]


def test_fan_in_of_mixed_futures_and_artifacts() -> None:
    @pipeline(dynamic=True)
    def p() -> None:
        a = mul(2, 3)  # an artifact, ran now
        b = mul.submit(4, 5)  # a future
        total([a, b])

    run = p()
    assert run.steps["total"].output.load() == 26
    assert run.steps["total"].upstream == ["mul", "mul_2"]


def test_failed_mapped_item_fails_the_run_and_skips_the_fan_in() -> None:
    @step
    def picky(x: int) -> int:
        if x == 2:
            raise ValueError("two is not allowed")
        return x

    @pipeline(dynamic=True, execution_mode="continue_on_failure")
    def p() -> None:
        total(picky.map([1, 2, 3]))

    with pytest.raises(ValueError, match="two is not allowed"):
        p()
    run = Client().get_pipeline("p").last_run
    statuses = {k: v.status.value for k, v in run.steps.items()}
    assert statuses == {"picky": "completed", "picky_2": "failed", "picky_3": "completed", "total": "skipped"}


def test_map_outside_a_pipeline_is_a_clear_error() -> None:
    with pytest.raises(RuntimeError, match="needs a running pipeline"):
        mul.map([1], factor=unmapped(1))


def test_unmapped_future_is_broadcast_with_an_edge() -> None:
    @step
    def factor() -> int:
        return 3

    @pipeline(dynamic=True)
    def p() -> None:
        f = factor.submit()
        total(mul.map([1, 2], factor=unmapped(f)))

    run = p()
    assert run.steps["total"].output.load() == 9
    assert run.steps["mul"].upstream == ["factor"]
    assert run.steps["mul_2"].inputs == {"factor": run.steps["factor"].output.id}


def test_map_in_a_static_pipeline() -> None:
    @pipeline
    def p() -> None:
        total(mul.map([1, 2, 3], factor=unmapped(2)))

    run = p()
    assert run.steps["total"].output.load() == 12
    assert run.steps["total"].upstream == ["mul", "mul_2", "mul_3"]


def test_a_list_mixing_futures_and_plain_values_reaches_the_step_in_order() -> None:
    @step(enable_cache=False)
    def seven() -> int:
        return 7

    @step(enable_cache=False)
    def as_list(xs: list[int]) -> list[int]:
        return xs

    @pipeline(dynamic=True)
    def mixed() -> None:
        as_list([1, seven.submit(), 3, seven()])

    run = mixed()
    assert run.steps["as_list"].output.load() == [1, 7, 3, 7]
    assert sorted(run.steps["as_list"].upstream) == ["seven", "seven_2"]
