"""Asynchronous runs: ``pipeline.submit()`` and ``with_options(synchronous=False)``."""

from __future__ import annotations

import threading

import pytest
from helpers import barrier, meet

from dynpipe import Client, PipelineRun, PipelineRunFuture, pipeline, step

gate = threading.Event()


@step(enable_cache=False)
def waits_for_gate() -> int:
    assert gate.wait(30), "the test never opened the gate"
    return 1


def test_submit_returns_a_future_while_the_run_goes_on() -> None:
    gate.clear()

    @pipeline(dynamic=True)
    def p() -> None:
        waits_for_gate()

    future = p.submit()
    try:
        assert isinstance(future, PipelineRunFuture)
        assert not future.done()
        assert future.run_name and future.run_name.startswith("p-")
        # the run is recorded as running while it runs
        running = Client().get_pipeline_run(future.run_name)
        assert running.status.value == "running"
        assert future.graph is not None and future.graph.run_name == future.run_name
    finally:
        gate.set()
    run = future.result(timeout=30)
    assert isinstance(run, PipelineRun)
    assert future.done()
    assert run.name == future.run_name
    assert run.status.value == "completed"
    assert run.steps["waits_for_gate"].output.load() == 1


def test_synchronous_false_makes_a_call_asynchronous_and_runs_overlap() -> None:
    overlap = barrier(3)  # opens only while the three background runs are all running

    @step(enable_cache=False)
    def meets(tag: str) -> str:
        if tag != "sync":
            meet(overlap, "the three background runs")
        return tag

    @pipeline(dynamic=True)
    def p(tag: str) -> None:
        meets(tag)

    background = p.with_options(synchronous=False)
    futures = [background(tag) for tag in ("a", "b", "c")]
    assert all(isinstance(f, PipelineRunFuture) for f in futures)
    runs = [f.result(timeout=60) for f in futures]
    assert [r.status.value for r in runs] == ["completed"] * 3  # so the runs overlapped
    assert [r.steps["meets"].output.load() for r in runs] == ["a", "b", "c"]
    assert len({r.name for r in runs}) == 3
    assert p("sync").status.value == "completed"  # the original stays synchronous


def test_a_failed_background_run_raises_from_result() -> None:
    @step
    def breaks() -> None:
        raise LookupError("background failure")

    @pipeline(dynamic=True)
    def p() -> None:
        breaks()

    future = p.submit()
    with pytest.raises(LookupError, match="background failure"):
        future.result(timeout=30)
    future.wait()  # wait() only waits
    assert future.done()
    run = Client().get_pipeline_run(future.run_name)  # type: ignore[arg-type]
    assert run.status.value == "failed"


def test_submit_binds_arguments_at_once() -> None:
    @pipeline(dynamic=True)
    def p(n: int) -> None:
        pass

    with pytest.raises(TypeError, match="pipeline 'p'"):
        p.submit(1, 2, 3)


def test_a_run_that_cannot_start_reports_through_the_future() -> None:
    @pipeline(dynamic=True, run_name="fixed")
    def p() -> None:
        pass

    p()
    future = p.submit()
    with pytest.raises(ValueError, match="already exists"):
        future.result(timeout=30)
    assert future.run_name is None


def test_zenml_orchestrator_setting_makes_a_run_asynchronous() -> None:
    gate.clear()

    @pipeline(dynamic=True, settings={"orchestrator": {"synchronous": False}})
    def background() -> None:
        waits_for_gate()

    future = background()
    assert isinstance(future, PipelineRunFuture) and not future.done()
    gate.set()
    assert future.result(timeout=30).status.value == "completed"
    flavored = pipeline(dynamic=True, settings={"orchestrator.local": {"synchronous": False}})(
        background.entrypoint
    )
    gate.clear()
    later = flavored()
    assert isinstance(later, PipelineRunFuture)
    gate.set()
    assert later.result(timeout=30).status.value == "completed"
    assert isinstance(background.with_options(settings={"orchestrator": {"synchronous": True}})(), PipelineRun)
