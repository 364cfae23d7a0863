"""Invocation control: ids (auto, ``id=``, renames), ``after=`` edges, run names."""

from __future__ import annotations

import re

import pytest
from helpers import DEADLINE, wait_until

from dynpipe import Client, pipeline, step
from dynpipe.engine.context import RunNameTaken

order: list[str] = []


@step(enable_cache=False)
def work(tag: str) -> str:
    order.append(tag)
    return tag


def test_auto_ids_custom_ids_and_renames() -> None:
    @pipeline(dynamic=True)
    def p() -> None:
        work("a")
        work("b", id="special")
        work("c")
        work.with_options(name="renamed")("d")
        work.with_options(name="renamed")("e")

    run = p()
    assert list(run.steps) == ["work", "special", "work_2", "renamed", "renamed_2"]
    assert run.steps["special"].step_name == "work"
    assert run.steps["renamed"].step_name == "work"
    assert run.steps["special"].output.load() == "b"


def test_custom_id_taking_an_auto_name_moves_the_auto_ids_along() -> None:
    @pipeline(dynamic=True)
    def p() -> None:
        work("a", id="work_2")
        work("b")
        work("c")

    run = p()
    assert [(k, v.output.load()) for k, v in run.steps.items()] == [
        ("work_2", "a"), ("work", "b"), ("work_3", "c"),
    ]


def test_duplicate_custom_id_is_a_clear_error() -> None:
    @pipeline(dynamic=True)
    def p() -> None:
        work("a", id="once")
        work("b", id="once")

    with pytest.raises(ValueError, match="invocation id 'once' is already used"):
        p()
    run = Client().get_pipeline("p").last_run
    assert run.status.value == "failed"
    assert list(run.steps) == ["once"]


def test_custom_id_equal_to_an_allocated_auto_id_is_an_error() -> None:
    @pipeline(dynamic=True)
    def p() -> None:
        work("a")
        work("b", id="work")

    with pytest.raises(ValueError, match="'work' is already used"):
        p()


def test_custom_ids_on_submit_and_static_pipelines() -> None:
    @pipeline
    def static() -> None:
        first = work("x", id="first")
        work("y", id="second", after=first)

    run = static()
    assert list(run.steps) == ["first", "second"]
    assert run.steps["second"].upstream == ["first"]


def test_after_orders_steps_and_records_the_edge() -> None:
    import threading

    release = threading.Event()

    @step(enable_cache=False)
    def slow(tag: str) -> str:
        # Held until the body has seen `quick` finish, so only `after` keeps `last` waiting.
        assert release.wait(DEADLINE), "the pipeline body never released slow"
        order.append(tag)
        return tag

    order.clear()

    @pipeline(dynamic=True)
    def p() -> None:
        a = slow.submit("slow")
        b = work.submit("quick")
        last = work.submit("after-both", after=[a, b], id="last")
        work.submit("after-id", after="last", id="by_id")
        try:
            wait_until(b.done, what="the quick step to finish")
            assert not last.done(), "'last' ran before the step it comes after"
        finally:
            release.set()

    run = p()
    assert order.index("after-both") > order.index("slow")
    assert order.index("after-id") > order.index("after-both")
    assert run.steps["last"].upstream == ["slow", "work"]
    assert run.steps["last"].inputs == {}  # an order edge, no data
    assert run.steps["by_id"].upstream == ["last"]


def test_after_an_artifact_and_combined_with_data_edges() -> None:
    @pipeline(dynamic=True)
    def p() -> None:
        a = work("a")
        b = work.submit("b")
        combine = work.with_options(name="combine")
        combine(a.load() + "!", after=[a, b])

    run = p()
    assert run.steps["combine"].upstream == ["work", "work_2"]


def test_after_failed_step_skips() -> None:
    @step
    def breaks() -> None:
        raise RuntimeError("no")

    @pipeline(dynamic=True, execution_mode="continue_on_failure")
    def p() -> None:
        f = breaks.submit()
        work.submit("never", after=f)

    with pytest.raises(RuntimeError):
        p()
    run = Client().get_pipeline("p").last_run
    assert run.steps["work"].status.value == "skipped"
    assert run.steps["work"].upstream == ["breaks"]


def test_after_rejects_other_values() -> None:
    @pipeline(dynamic=True)
    def p() -> None:
        work("x", after=3.5)

    with pytest.raises(TypeError, match="after= takes futures, artifacts or invocation ids"):
        p()

    @pipeline(dynamic=True)
    def q() -> None:
        work("x", after="nothing_by_this_id")

    with pytest.raises(ValueError, match="after='nothing_by_this_id' names no invocation"):
        q()


# -- run names ------------------------------------------------------------------------


def test_default_run_names_are_unique() -> None:
    @pipeline(dynamic=True)
    def p() -> None:
        pass

    names = {p().name for _ in range(3)}
    assert len(names) == 3
    assert all(n.startswith("p-") for n in names)


def test_placeholders_are_filled_and_stay_unique() -> None:
    @pipeline(dynamic=True, run_name="exp-{date}-{time}-{run_id}")
    def p() -> None:
        pass

    a, b = p(), p()
    assert a.name != b.name
    for run in (a, b):
        assert re.fullmatch(r"exp-\d{4}_\d{2}_\d{2}-\d{2}_\d{2}_\d{2}_\d{6}-[0-9a-f]{8}", run.name)
        assert run.name.endswith(run.id[:8])

    @pipeline(dynamic=True, run_name="daily-{date}")
    def q() -> None:
        pass

    first, second = q(), q()
    assert first.name != second.name
    assert second.name.startswith(first.name)
    assert Client().get_pipeline_run(second.name).id == second.id


def test_pipeline_name_placeholder() -> None:
    @pipeline(dynamic=True)
    def p() -> None:
        pass

    run = p.with_options(run_name="{pipeline_name}_custom_{run_id}")()
    assert run.name.startswith("p_custom_")


def test_fixed_run_name_reused_is_a_clear_error() -> None:
    @pipeline(dynamic=True)
    def p() -> None:
        work("x")

    run = p.with_options(run_name="my-run")()
    assert run.name == "my-run"
    with pytest.raises(RunNameTaken, match="a run named 'my-run' already exists"):
        p.with_options(run_name="my-run")()
    assert len(Client().get_pipeline("p").runs) == 1


def test_unknown_placeholder_is_a_clear_error() -> None:
    @pipeline(dynamic=True)
    def p() -> None:
        pass

    with pytest.raises(ValueError, match=r"unknown placeholder 'user'.*\{date\}"):
        p.with_options(run_name="run-{user}")()


def test_run_names_stay_unique_when_a_concurrent_run_takes_the_name_first(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from dynpipe.store.store import open_store

    @pipeline(dynamic=True, run_name="daily-{date}")
    def p() -> None:
        work("x")

    first = p()
    # Simulate the race: the check sees a free name, the insert then finds it taken.
    monkeypatch.setattr(open_store().metadata, "run_name_exists", lambda name: False)
    second = p()
    assert second.name == f"{first.name}-{second.id[:8]}"
    assert second.status.value == "completed"
    with pytest.raises(RunNameTaken):
        p.with_options(run_name=first.name)()


def test_concurrent_background_runs_with_one_template_get_distinct_names() -> None:
    @pipeline(dynamic=True, run_name="batch-{date}")
    def p() -> None:
        pass

    futures = [p.submit() for _ in range(6)]
    names = {f.result(timeout=30).name for f in futures}
    assert len(names) == 6
