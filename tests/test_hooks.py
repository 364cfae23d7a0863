"""Hooks: on_failure (with or without the exception), on_success, pipeline defaults with
step precedence, on_init / on_cleanup, get_step_context() in steps and hooks, and hooks
that raise."""

from __future__ import annotations

from typing import Any

import pytest

from dynpipe import Client, get_step_context, pipeline, step

events: list[Any] = []


def on_failure_with_exc(exc: BaseException) -> None:
    ctx = get_step_context()
    events.append(("failure", ctx.invocation_id, type(exc).__name__, str(exc)))


def on_failure_no_args() -> None:
    events.append(("failure-noargs", get_step_context().invocation_id))


def on_success() -> None:
    ctx = get_step_context()
    events.append(("success", ctx.step_name, ctx.invocation_id))


def pipeline_failure_hook(exc: BaseException) -> None:
    events.append(("pipeline-failure", get_step_context().invocation_id))


def pipeline_success_hook() -> None:
    events.append(("pipeline-success", get_step_context().invocation_id))


@pytest.fixture(autouse=True)
def _clear() -> None:
    events.clear()


def test_failure_hook_receives_the_exception_and_context() -> None:
    @step(on_failure=on_failure_with_exc)
    def breaks() -> int:
        raise ValueError("bad input")

    @pipeline(dynamic=True)
    def p() -> None:
        breaks()

    with pytest.raises(ValueError):
        p()
    assert events == [("failure", "breaks", "ValueError", "bad input")]


def test_failure_hook_without_argument_and_success_hook() -> None:
    @step(on_failure=on_failure_no_args)
    def breaks() -> int:
        raise ValueError("x")

    @step(on_success=on_success)
    def works() -> int:
        return 1

    @pipeline(dynamic=True, execution_mode="continue_on_failure")
    def p() -> None:
        works()
        breaks.submit()

    with pytest.raises(ValueError):
        p()
    assert ("success", "works", "works") in events
    assert ("failure-noargs", "breaks") in events
    assert len(events) == 2


def test_pipeline_level_hooks_apply_to_every_step_step_hooks_take_precedence() -> None:
    @step
    def plain() -> int:
        return 1

    @step(on_success=on_success)
    def own_hook() -> int:
        return 2

    @step
    def plain_breaks() -> int:
        raise RuntimeError("boom")

    @step(on_failure=on_failure_with_exc)
    def own_failure() -> int:
        raise RuntimeError("own")

    @pipeline(
        dynamic=True,
        on_success=pipeline_success_hook,
        on_failure=pipeline_failure_hook,
        execution_mode="continue_on_failure",
    )
    def p() -> None:
        plain()
        own_hook()
        plain_breaks.submit().wait()
        own_failure.submit().wait()

    with pytest.raises(RuntimeError):
        p()
    assert events == [
        ("pipeline-success", "plain"),
        ("success", "own_hook", "own_hook"),
        ("pipeline-failure", "plain_breaks"),
        ("failure", "own_failure", "RuntimeError", "own"),
    ]


def test_success_hook_is_not_called_for_a_cache_hit() -> None:
    @step(on_success=on_success)
    def s() -> int:
        return 1

    @pipeline(dynamic=True)
    def p() -> None:
        s()

    p()
    p()
    assert events == [("success", "s", "s")]


def test_on_init_and_on_cleanup_run_once_and_cleanup_runs_on_failure() -> None:
    def init() -> None:
        events.append("init")

    def cleanup() -> None:
        events.append("cleanup")

    @step
    def s(fail: bool) -> int:
        events.append("step")
        if fail:
            raise RuntimeError("failed")
        return 1

    @pipeline(dynamic=True, on_init=init, on_cleanup=cleanup)
    def p(fail: bool) -> None:
        s(fail)

    p(False)
    assert events == ["init", "step", "cleanup"]
    events.clear()
    with pytest.raises(RuntimeError):
        p(True)
    assert events == ["init", "step", "cleanup"]
    events.clear()

    @pipeline(dynamic=True, on_init=init, on_cleanup=cleanup)
    def body_raises() -> None:
        raise KeyError("in the body")

    with pytest.raises(KeyError):
        body_raises()
    assert events == ["init", "cleanup"]
    assert Client().get_pipeline("body_raises").last_run.status.value == "failed"


def test_failing_on_init_fails_the_run_and_still_cleans_up() -> None:
    def init() -> None:
        raise ConnectionError("no database")

    def cleanup() -> None:
        events.append("cleanup")

    @step
    def s() -> int:
        events.append("step")
        return 1

    @pipeline(dynamic=True, on_init=init, on_cleanup=cleanup)
    def p() -> None:
        s()

    with pytest.raises(ConnectionError, match="no database"):
        p()
    assert events == ["cleanup"]
    run = Client().get_pipeline("p").last_run
    assert run.status.value == "failed"
    assert "no database" in (run.error or "")


def test_step_context_inside_a_step_and_output_metadata_is_stored() -> None:
    @step
    def make() -> list[int]:
        return [1, 2, 3]

    @step
    def inspect_ctx(xs: list[int], scale: int) -> int:
        ctx = get_step_context()
        events.append(
            {
                "run_name": ctx.run_name,
                "pipeline": ctx.pipeline_name,
                "step": ctx.step_name,
                "invocation": ctx.invocation_id,
                "inputs": dict(ctx.inputs),
                "attempt": ctx.attempt,
                "step_run_status": ctx.step_run.status.value,
            }
        )
        ctx.add_output_metadata({"rows": len(xs), "scale": scale})
        ctx.add_output_tags(["inspected"])
        return sum(xs) * scale

    @pipeline(dynamic=True)
    def p() -> None:
        inspect_ctx(make(), 2, id="custom")

    run = p()
    info = events[0]
    assert info == {
        "run_name": run.name,
        "pipeline": "p",
        "step": "inspect_ctx",
        "invocation": "custom",
        "inputs": {"xs": [1, 2, 3]},
        "attempt": 1,
        "step_run_status": "running",
    }
    art = run.steps["custom"].output
    assert art.metadata == {"rows": 3, "scale": 2}
    assert "inspected" in art.tags
    stored = Client().get_artifact_version(art.id)
    assert stored.metadata == {"rows": 3, "scale": 2}


def test_step_context_inside_hooks() -> None:
    def capture_failure(exc: BaseException) -> None:
        ctx = get_step_context()
        events.append((ctx.run_name, ctx.step_name, ctx.invocation_id, dict(ctx.inputs), ctx.exception is exc))

    def capture_success() -> None:
        ctx = get_step_context()
        events.append((ctx.run_name, ctx.step_name, ctx.invocation_id, dict(ctx.inputs)))

    @step
    def make() -> int:
        return 5

    @step(on_success=capture_success)
    def good(x: int) -> int:
        return x

    @step(on_failure=capture_failure)
    def bad(x: int) -> int:
        raise RuntimeError("nope")

    @pipeline(dynamic=True, execution_mode="continue_on_failure")
    def p() -> None:
        m = make()
        good(m)
        bad.submit(m).wait()

    with pytest.raises(RuntimeError):
        p()
    name = Client().get_pipeline("p").last_run.name
    assert events == [(name, "good", "good", {"x": 5}), (name, "bad", "bad", {"x": 5}, True)]


def test_get_step_context_outside_a_step_is_a_clear_error() -> None:
    with pytest.raises(RuntimeError, match="outside a running step"):
        get_step_context()


def test_a_raising_failure_hook_is_reported_and_the_record_stays_consistent() -> None:
    def bad_hook(exc: BaseException) -> None:
        raise OSError("alerting service down")

    @step(on_failure=bad_hook)
    def breaks() -> int:
        print("before the error")
        raise ValueError("the step's own error")

    @pipeline(dynamic=True)
    def p() -> None:
        breaks()

    with (
        pytest.warns(RuntimeWarning, match="on_failure hook 'bad_hook'.*alerting service down"),
        pytest.raises(ValueError, match="the step's own error"),
    ):
        p()
    run = Client().get_pipeline("p").last_run
    sr = run.steps["breaks"]
    assert run.status.value == "failed"
    assert sr.status.value == "failed"
    assert sr.error_type == "ValueError"  # the step's error, not the hook's
    assert "before the error" in sr.logs
    assert "alerting service down" in sr.logs


def test_a_raising_success_hook_is_reported_and_the_step_stays_completed() -> None:
    def bad_hook() -> None:
        raise OSError("notifier down")

    @step(on_success=bad_hook)
    def works() -> int:
        print("working")
        return 3

    @step
    def downstream(x: int) -> int:
        return x + 1

    @pipeline(dynamic=True)
    def p() -> None:
        downstream(works())

    with pytest.warns(RuntimeWarning, match="on_success hook 'bad_hook'.*notifier down"):
        run = p()
    assert run.status.value == "completed"
    sr = run.steps["works"]
    assert sr.status.value == "completed"
    assert sr.output.load() == 3
    assert "working" in sr.logs
    assert "notifier down" in sr.logs
    assert run.steps["downstream"].output.load() == 4


def test_a_raising_cleanup_hook_is_reported_and_the_run_status_kept() -> None:
    def cleanup() -> None:
        raise RuntimeError("cleanup broke")

    @step
    def s() -> int:
        return 1

    @pipeline(dynamic=True, on_cleanup=cleanup)
    def p() -> None:
        s()

    with pytest.warns(RuntimeWarning, match="on_cleanup hook.*cleanup broke"):
        run = p()
    assert run.status.value == "completed"


def test_failure_hook_runs_once_after_the_last_retry() -> None:
    from dynpipe import StepRetryConfig

    tries = [0]

    @step(on_failure=on_failure_with_exc, retry=StepRetryConfig(max_retries=2))
    def breaks() -> int:
        tries[0] += 1
        raise RuntimeError(f"try {tries[0]}")

    @pipeline(dynamic=True)
    def p() -> None:
        breaks()

    with pytest.raises(RuntimeError, match="try 3"):
        p()
    assert events == [("failure", "breaks", "RuntimeError", "try 3")]


def test_hooks_are_not_run_for_skipped_steps() -> None:
    @step(on_failure=on_failure_no_args)
    def breaks() -> int:
        raise RuntimeError("x")

    @step(on_failure=on_failure_no_args, on_success=on_success)
    def child(x: int) -> int:
        return x

    @pipeline(dynamic=True, execution_mode="continue_on_failure")
    def p() -> None:
        child.submit(breaks.submit())

    with pytest.raises(RuntimeError):
        p()
    assert events == [("failure-noargs", "breaks")]


def test_step_context_and_hooks_with_isolated_steps() -> None:
    def capture(exc: BaseException) -> None:
        ctx = get_step_context()
        events.append((ctx.invocation_id, dict(ctx.inputs), type(exc).__name__, str(exc)))

    @step(runtime="isolated")
    def annotate(x: int) -> int:
        ctx = get_step_context()
        ctx.add_output_metadata({"seen_invocation": ctx.invocation_id, "x": x})
        return x

    @step(runtime="isolated", on_failure=capture)
    def breaks(x: int) -> int:
        raise ValueError(f"isolated {x}")

    @pipeline(dynamic=True, execution_mode="continue_on_failure")
    def p() -> None:
        breaks.submit(annotate(4))

    with pytest.raises(ValueError, match="isolated 4"):
        p()
    run = Client().get_pipeline("p").last_run
    assert run.steps["annotate"].output.metadata == {"seen_invocation": "annotate", "x": 4}
    assert events == [("breaks", {"x": 4}, "ValueError", "isolated 4")]
