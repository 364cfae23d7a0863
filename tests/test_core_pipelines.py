"""Core engine: steps, static and dynamic pipelines, futures, outputs, the Client view of runs."""

from __future__ import annotations

import asyncio
import threading
from typing import Annotated

import pytest
from helpers import DEADLINE, barrier, meet

from dynpipe import (
    ArtifactConfig,
    Client,
    OutputArtifact,
    PipelineRun,
    StepRunFuture,
    StepTypeError,
    pipeline,
    step,
)


@step
def generate_int() -> int:
    return 3


@step
def double(i: int) -> int:
    return i * 2


@step
def add(a: int, b: int) -> int:
    return a + b


@step
def total(xs: list[int]) -> int:
    return sum(xs)


@step
def pair() -> tuple[int, str]:
    return 7, "seven"


@step
def named() -> Annotated[str, "greeting"]:
    return "hello"


@step
def as_tuple() -> tuple[int, int]:
    value = (1, 2)
    return value


def test_spec_basic_dynamic_example_runs_unchanged() -> None:
    seen: list[int] = []

    @step
    def do_something(index: int) -> None:
        seen.append(index)

    @pipeline(dynamic=True)
    def dynamic_pipeline() -> None:
        count = generate_int()
        count_data = count.load()
        for idx in range(count_data):
            do_something(idx)

    run = dynamic_pipeline()
    assert isinstance(run, PipelineRun)
    assert run.status.value == "completed"
    assert list(run.steps) == ["generate_int", "do_something", "do_something_2", "do_something_3"]
    assert seen == [0, 1, 2]
    assert run.steps["generate_int"].output.load() == 3
    assert run.steps["do_something_2"].outputs == {}
    assert run.pipeline_name == "dynamic_pipeline"
    assert run.start_time is not None and run.end_time is not None and run.end_time >= run.start_time


def test_step_call_returns_output_artifact_and_tuple_rule() -> None:
    captured: dict[str, object] = {}

    @pipeline(dynamic=True)
    def p() -> None:
        out = generate_int()
        captured["single"] = out
        captured["pair"] = pair()
        captured["named"] = named()
        captured["as_tuple"] = as_tuple()

    run = p()
    single = captured["single"]
    assert isinstance(single, OutputArtifact) and single.load() == 3
    a, b = captured["pair"]  # type: ignore[misc]
    assert (a.load(), b.load()) == (7, "seven")
    assert set(run.steps["pair"].outputs) == {"output_0", "output_1"}
    assert set(run.steps["named"].outputs) == {"greeting"}
    # Not a tuple literal in the return statement: one output holding a tuple.
    assert set(run.steps["as_tuple"].outputs) == {"output"}
    assert run.steps["as_tuple"].output.load() == (1, 2)


def test_submit_runs_concurrently_and_fans_in() -> None:
    active = 0
    peak = 0
    lock = threading.Lock()
    all_four = barrier(4)  # opens only while the four submitted steps run at once

    @step
    def slow(i: int) -> int:
        nonlocal active, peak
        with lock:
            active += 1
            peak = max(peak, active)
        meet(all_four, "the submitted steps")
        with lock:
            active -= 1
        return i

    @pipeline(dynamic=True)
    def p() -> None:
        futures = [slow.submit(i) for i in range(4)]
        assert all(isinstance(f, StepRunFuture) for f in futures)
        total(futures)

    run = p()
    assert peak == 4, "submitted steps never overlapped"
    assert run.steps["total"].output.load() == 0 + 1 + 2 + 3
    assert sorted(run.steps["total"].upstream) == ["slow", "slow_2", "slow_3", "slow_4"]


def test_future_api() -> None:
    gate = threading.Event()
    entered = threading.Event()

    @step
    def waits() -> int:
        entered.set()
        assert gate.wait(DEADLINE), "the pipeline body never opened the gate"
        return 5

    results: dict[str, object] = {}

    @pipeline(dynamic=True)
    def p() -> None:
        fut = waits.submit()
        assert entered.wait(DEADLINE), "the submitted step never started"
        results["running"] = fut.running()
        results["done_before"] = fut.done()
        gate.set()
        fut.wait()
        results["done_after"] = fut.done()
        results["result"] = fut.result()
        results["load"] = fut.load()
        results["awaited"] = asyncio.run(_await(fut))
        results["downstream"] = double(fut).load()

    async def _await(fut: StepRunFuture) -> int:
        art = await fut
        return art.load()

    p()
    assert results["running"] is True
    assert results["done_before"] is False
    assert results["done_after"] is True
    assert isinstance(results["result"], OutputArtifact)
    assert results["load"] == 5 and results["awaited"] == 5 and results["downstream"] == 10


def test_multi_output_future_indexing() -> None:
    got: dict[str, object] = {}

    @step
    def shout(text: str) -> str:
        return text.upper()

    @pipeline(dynamic=True)
    def p() -> None:
        fut = pair.submit()
        got["text"] = shout(fut[1]).load()
        got["num"] = fut["output_0"].load()
        a, b = fut.result()
        got["both"] = (a.load(), b.load())

    p()
    assert got == {"text": "SEVEN", "num": 7, "both": (7, "seven")}


def test_static_pipeline_builds_dag_first_and_runs_independent_steps_concurrently() -> None:
    order: list[str] = []
    lock = threading.Lock()
    branches = barrier(3)  # opens only while the three independent branches run at once

    @step
    def source() -> int:
        return 1

    @step
    def branch(x: int, tag: str) -> int:
        with lock:
            order.append(f"start-{tag}")
        meet(branches, "the independent branches of a static pipeline")
        with lock:
            order.append(f"end-{tag}")
        return x

    @step
    def side_effect() -> None:
        order.append("side")

    @pipeline
    def static_pipeline() -> None:
        s = source()
        a = branch(s, "a")
        b = branch(s, "b")
        c = branch(s, "c")
        add(a, b)
        side_effect(after=c)

    run = static_pipeline()
    assert run.status.value == "completed"
    starts = [i for i, e in enumerate(order) if e.startswith("start")]
    first_end = min(i for i, e in enumerate(order) if e.startswith("end"))
    assert len([i for i in starts if i < first_end]) == 3, order
    assert order.index("side") > order.index("end-c")
    assert run.steps["side_effect"].upstream == ["branch_3"]
    assert sorted(run.steps["add"].upstream) == ["branch", "branch_2"]
    assert run.steps["add"].output.load() == 2


def test_static_pipeline_load_is_a_clear_error() -> None:
    @pipeline
    def bad() -> None:
        generate_int().load()

    with pytest.raises(RuntimeError, match="static pipeline"):
        bad()


def test_pipeline_parameters_and_unknown_parameter() -> None:
    @pipeline(dynamic=True)
    def param_pipeline(n: int, factor: int = 2) -> None:
        for i in range(n):
            double(i * factor)

    run = param_pipeline(2, factor=3)
    assert run.config["parameters"] == {"n": 2, "factor": 3}
    assert [s.output.load() for s in run.steps.values()] == [0, 6]
    with pytest.raises(TypeError, match="param_pipeline.*unexpected keyword argument 'bogus'"):
        param_pipeline(1, bogus=True)
    with pytest.raises(TypeError, match="param_pipeline.*missing"):
        param_pipeline()


def test_with_options_name_and_configure() -> None:
    @pipeline(dynamic=True)
    def p() -> None:
        for kind in ("svm", "tree"):
            double.with_options(name=f"train_{kind}")(1)
        double(2, id="custom")

    run = p()
    assert list(run.steps) == ["train_svm", "train_tree", "custom"]
    assert run.steps["custom"].step_name == "double"

    renamed = p.with_options(name="renamed")
    assert renamed.name == "renamed" and p.name == "p"
    assert renamed().pipeline_name == "renamed"
    p.configure(enable_cache=False)
    assert p.config.enable_cache is False


def test_failing_step_reraises_original_and_stores_traceback() -> None:
    class Boom(ValueError):
        pass

    @step
    def explode(x: int) -> int:
        raise Boom(f"bad value {x}")

    @pipeline(dynamic=True)
    def p() -> None:
        explode(41)

    with pytest.raises(Boom, match="bad value 41"):
        p()
    run = Client().get_pipeline("p").last_run
    assert run.status.value == "failed"
    failed = run.steps["explode"]
    assert failed.status.value == "failed"
    assert failed.error_type == "Boom"
    assert failed.error_message == "bad value 41"
    assert "raise Boom" in (failed.traceback or "")


def test_unawaited_failed_submit_fails_the_run() -> None:
    @step
    def explode() -> None:
        raise KeyError("nope")

    @pipeline(dynamic=True)
    def p() -> None:
        explode.submit()
        double(1)

    with pytest.raises(KeyError):
        p()
    assert Client().get_pipeline("p").last_run.status.value == "failed"


def test_type_validation_of_inputs_and_outputs_names_step_and_types() -> None:
    @step
    def wrong_output() -> int:
        return "not an int"  # type: ignore[return-value]

    @step
    def takes_int(x: int) -> int:
        return x

    @step
    def gives_str() -> str:
        return "s"

    @pipeline(dynamic=True)
    def p1() -> None:
        wrong_output()

    @pipeline(dynamic=True)
    def p2() -> None:
        takes_int(gives_str())

    with pytest.raises(StepTypeError, match=r"wrong_output.*output 'output'.*int.*str"):
        p1()
    with pytest.raises(StepTypeError, match=r"takes_int.*input 'x' expects int, got str"):
        p2()


def test_unknown_step_input_is_a_clear_error() -> None:
    @pipeline(dynamic=True)
    def p() -> None:
        double(j=3)

    with pytest.raises(TypeError, match="double"):
        p()


def test_client_queries() -> None:
    @pipeline(dynamic=True, enable_cache=False)
    def listed() -> None:
        named()

    first = listed()
    second = listed()
    client = Client()
    info = client.get_pipeline("listed")
    assert info.last_run.id == second.id
    assert [r.id for r in info.runs] == [second.id, first.id]
    assert client.get_pipeline_run(first.name).id == first.id
    assert client.get_pipeline_run(first.id).name == first.name
    assert [r.id for r in client.list_pipeline_runs(pipeline_name="listed", limit=1)] == [second.id]
    assert all(r.status.value == "completed" for r in client.list_pipeline_runs(status="completed"))
    art = client.get_artifact_version("greeting")
    assert art.load() == "hello" and art.version == 2
    assert client.get_artifact_version("greeting", version=1).load() == "hello"
    assert client.get_artifact_version(art.id).name == "greeting"
    with pytest.raises(KeyError, match="no pipeline named 'missing'"):
        client.get_pipeline("missing")
    with pytest.raises(KeyError, match="no pipeline run"):
        client.get_pipeline_run("nope")


def test_artifact_config_name_and_versions() -> None:
    @step
    def produce(v: int) -> Annotated[int, ArtifactConfig(name="my_number", tags=("x",))]:
        return v

    @pipeline(dynamic=True, enable_cache=False)
    def p() -> None:
        produce(1)
        produce(2)

    p()
    versions = Client().list_artifact_versions("my_number")
    assert [(a.version, a.load()) for a in versions] == [(1, 1), (2, 2)]
    assert versions[0].tags == ["x"]


def test_a_step_error_traceback_leads_to_the_users_code() -> None:
    import traceback

    from dynpipe.config import PipelineConfig
    from dynpipe.engine.run import finish_run, start_run
    from dynpipe.notebook.render import node_details
    from dynpipe.store.store import open_store

    @step(enable_cache=False)
    def unlucky(n: int) -> int:
        raise ValueError(f"unlucky {n}")

    @pipeline(dynamic=True)
    def tries() -> None:
        unlucky(13)

    with pytest.raises(ValueError) as info:
        tries()
    frames = traceback.extract_tb(info.value.__traceback__)
    files = [f.filename for f in frames]
    assert frames[-1].name == "unlucky"
    assert not any("concurrent/futures" in f or "runtimes/task.py" in f for f in files), files

    # The same through a future, and in the live DAG's node details.
    ctx = start_run("tb", PipelineConfig(dynamic=True), open_store())
    ctx.activate()
    try:
        future = unlucky.submit(7)
        with pytest.raises(ValueError) as info:
            future.result()
        assert traceback.extract_tb(info.value.__traceback__)[-1].name == "unlucky"
        details = node_details(ctx.graph.nodes["unlucky"])
    finally:
        ctx.deactivate()
        finish_run(ctx)
    assert details["error"] == "ValueError: unlucky 7"
    assert 'raise ValueError(f"unlucky {n}")' in details["traceback"]
    assert "dynpipe/engine/" not in details["traceback"] and "task.py" not in details["traceback"]


def test_an_artifacts_notebook_preview_does_not_load_large_data() -> None:
    @step
    def small() -> list[int]:
        return [1, 2, 3]

    @step
    def big() -> bytes:
        return b"x" * 2_000_000

    seen: dict[str, OutputArtifact] = {}

    @pipeline(dynamic=True)
    def previews() -> None:
        seen["small"] = small()
        seen["big"] = big()

    previews()
    assert "[1, 2, 3]" in seen["small"]._repr_html_()
    assert "2.0 MB; call .load() to get it" in seen["big"]._repr_html_()
