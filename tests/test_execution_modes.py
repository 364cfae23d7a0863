"""Execution modes on the spec's example DAG (steps 1..8), and failures nobody awaited.

    1 -> 2, 3, 4;   2 -> 5;   3 -> 6;   4 -> 7;   5, 6, 7 -> 8

Step 2 fails once steps 3 and 4 are running, and steps 3 and 4 end only once the engine
has reacted to that failure (events and engine state, never sleeps, decide the order).
"""

from __future__ import annotations

import threading
from typing import Any

import pytest
from helpers import DEADLINE, wait_until

from dynpipe import Client, ExecutionMode, StepRetryConfig, StepSkippedError, get_step_context, pipeline, step
from dynpipe.engine.context import RunContext, current_run

ran: list[str] = []
started = {"s3": threading.Event(), "s4": threading.Event()}


@step(enable_cache=False)
def s1() -> int:
    ran.append("s1")
    return 1


@step(enable_cache=False)
def s2_fails(x: int) -> int:
    for tag, event in started.items():  # fail while steps 3 and 4 are running
        assert event.wait(DEADLINE), f"step {tag} never started"
    ran.append("s2")
    raise ValueError("step 2 broke")


def _failure_handled(ctx: RunContext, invocation_id: str) -> bool:
    """Whether the engine has done what the run's mode asks after step 2 failed: under
    FAIL_FAST this running step was told to stop; under STOP_ON_FAILURE the run stops
    starting steps; under CONTINUE_ON_FAILURE nothing waits on the failure."""
    if ctx.mode is ExecutionMode.CONTINUE_ON_FAILURE:
        return True
    if ctx.mode is ExecutionMode.FAIL_FAST:
        with ctx.lock:
            return any(inv.invocation_id == invocation_id and inv.stop_reason for inv in ctx.outstanding)
    return ctx.stopping


@step(enable_cache=False)
def slow(x: int, tag: str) -> int:
    if tag in started:
        started[tag].set()
    ctx = current_run()
    assert ctx is not None
    me = get_step_context().invocation_id
    wait_until(lambda: _failure_handled(ctx, me), what=f"the engine to handle step 2's failure ({ctx.mode.value})")
    ran.append(tag)
    return x + 1


@step(enable_cache=False)
def after_one(x: int, tag: str) -> int:
    ran.append(tag)
    return x


@step(enable_cache=False)
def s8(xs: list[int]) -> int:
    ran.append("s8")
    return sum(xs)


def _spec_dag() -> None:
    one = s1.submit(id="step_1")
    two = s2_fails.submit(one, id="step_2")
    three = slow.submit(one, "s3", id="step_3")
    four = slow.submit(one, "s4", id="step_4")
    five = after_one.submit(two, "s5", id="step_5")
    six = after_one.submit(three, "s6", id="step_6")
    seven = after_one.submit(four, "s7", id="step_7")
    s8.submit([five, six, seven], id="step_8")


def _run_in_mode(mode: Any) -> dict[str, str]:
    ran.clear()
    for event in started.values():
        event.clear()

    @pipeline(dynamic=True, execution_mode=mode)
    def spec_example() -> None:
        _spec_dag()

    with pytest.raises(ValueError, match="step 2 broke"):
        spec_example()
    run = Client().get_pipeline("spec_example").last_run
    assert run.status.value == "failed"
    assert "step_2" in (run.error or "")
    return {inv: sr.status.value for inv, sr in run.steps.items()}


def test_fail_fast_stops_running_steps_and_starts_nothing_new() -> None:
    statuses = _run_in_mode(ExecutionMode.FAIL_FAST)
    assert statuses == {
        "step_1": "completed",
        "step_2": "failed",
        "step_3": "stopped",
        "step_4": "stopped",
        "step_5": "skipped",
        "step_6": "skipped",
        "step_7": "skipped",
        "step_8": "skipped",
    }
    run = Client().get_pipeline("spec_example").last_run
    # the stopped inline steps' results were discarded
    assert run.steps["step_3"].outputs == {}
    assert run.steps["step_4"].outputs == {}
    assert "FAIL_FAST" in (run.steps["step_3"].error_message or "")
    assert not {"s5", "s6", "s7", "s8"} & set(ran)


def test_stop_on_failure_lets_running_steps_finish_and_skips_new_ones() -> None:
    statuses = _run_in_mode("stop_on_failure")
    assert statuses == {
        "step_1": "completed",
        "step_2": "failed",
        "step_3": "completed",
        "step_4": "completed",
        "step_5": "skipped",
        "step_6": "skipped",
        "step_7": "skipped",
        "step_8": "skipped",
    }
    run = Client().get_pipeline("spec_example").last_run
    assert run.steps["step_3"].output.load() == 2
    assert "step_2" in (run.steps["step_6"].error_message or "")


def test_stop_on_failure_is_the_default_for_dynamic_pipelines() -> None:
    assert _run_in_mode(None)["step_6"] == "skipped"
    assert Client().get_pipeline("spec_example").last_run.config["execution_mode"] == "stop_on_failure"


def test_continue_on_failure_runs_independent_work() -> None:
    statuses = _run_in_mode(ExecutionMode.CONTINUE_ON_FAILURE)
    assert statuses == {
        "step_1": "completed",
        "step_2": "failed",
        "step_3": "completed",
        "step_4": "completed",
        "step_5": "skipped",
        "step_6": "completed",
        "step_7": "completed",
        "step_8": "skipped",
    }
    assert {"s6", "s7"} <= set(ran) and "s8" not in ran
    run = Client().get_pipeline("spec_example").last_run
    assert "step_5" in (run.steps["step_8"].error_message or "")


def test_mode_set_with_with_options_and_in_a_static_pipeline() -> None:
    ran.clear()
    started["s3"].clear()
    started["s4"].set()  # this DAG has no step 4

    @pipeline
    def static_example() -> None:
        one = s1(id="step_1")
        two = s2_fails(one, id="step_2")
        three = slow(one, "s3", id="step_3")
        after_one(two, "s5", id="step_5")
        after_one(three, "s6", id="step_6")

    with pytest.raises(ValueError, match="step 2 broke"):
        static_example.with_options(execution_mode="continue_on_failure")()
    run = Client().get_pipeline("static_example").last_run
    assert run.status.value == "failed"
    assert {k: v.status.value for k, v in run.steps.items()} == {
        "step_1": "completed", "step_2": "failed", "step_3": "completed",
        "step_5": "skipped", "step_6": "completed",
    }


def test_unawaited_failed_submission_fails_the_run_with_the_steps_error() -> None:
    fine_done = threading.Event()

    @step
    def boom() -> int:
        # fail after the body's last step, when nobody is waiting
        assert fine_done.wait(DEADLINE), "step fine never ran"
        raise KeyError("nobody waited for me")

    @step
    def fine() -> int:
        fine_done.set()
        return 1

    @pipeline(dynamic=True)
    def fire_and_forget() -> None:
        boom.submit()
        fine()

    with pytest.raises(KeyError, match="nobody waited for me") as info:
        fire_and_forget()
    assert any("boom" in note for note in getattr(info.value, "__notes__", []))
    run = Client().get_pipeline("fire_and_forget").last_run
    assert run.status.value == "failed"
    assert run.steps["boom"].status.value == "failed"
    assert run.steps["boom"].error_type == "KeyError"
    assert run.steps["fine"].status.value == "completed"


def test_a_call_skipped_because_of_an_earlier_failure_raises_the_original_error() -> None:
    @step
    def breaks() -> int:
        raise ZeroDivisionError("the real cause")

    @step
    def later() -> int:
        return 1

    @pipeline(dynamic=True)
    def p() -> None:
        f = breaks.submit()
        f.wait()
        later()  # not started: the run is stopping

    with pytest.raises(ZeroDivisionError, match="the real cause"):
        p()
    run = Client().get_pipeline("p").last_run
    assert run.steps["later"].status.value == "skipped"


def test_handled_failure_still_fails_the_run() -> None:
    @step
    def breaks() -> int:
        raise RuntimeError("handled by the caller")

    @pipeline(dynamic=True, execution_mode="continue_on_failure")
    def p() -> str:
        try:
            breaks()
        except RuntimeError:
            pass
        return "done"

    with pytest.raises(RuntimeError, match="handled by the caller"):
        p()
    assert Client().get_pipeline("p").last_run.status.value == "failed"


def test_skipped_step_raises_skipped_error_to_code_that_waits_on_it() -> None:
    seen: dict[str, Any] = {}

    @step
    def breaks() -> int:
        raise RuntimeError("upstream broke")

    @step
    def child(x: int) -> int:
        return x

    @pipeline(dynamic=True, execution_mode="continue_on_failure")
    def p() -> None:
        f = child.submit(breaks.submit())
        seen["exc"] = f.exception()

    with pytest.raises(RuntimeError, match="upstream broke"):
        p()
    assert isinstance(seen["exc"], StepSkippedError)


def test_fail_fast_stops_a_step_waiting_to_retry() -> None:
    # The retry delay is far past the test's timeout: the run ends only if the wait is cut.
    @step(retry=StepRetryConfig(max_retries=5, delay=600))
    def retrier() -> int:
        raise OSError("never works")

    @step
    def breaks() -> int:
        raise RuntimeError("fatal")

    @pipeline(dynamic=True, execution_mode="fail_fast")
    def p() -> None:
        r = retrier.submit()
        wait_until(lambda: r.status == "retrying", what="retrier to wait for its retry")
        breaks.submit()

    with pytest.raises(RuntimeError, match="fatal"):
        p()
    run = Client().get_pipeline("p").last_run
    assert run.steps["retrier"].status.value == "stopped"
    assert run.steps["retrier"].attempts == 1
    assert run.steps["breaks"].status.value == "failed"


def test_fail_fast_stops_the_step_the_pipeline_body_is_running() -> None:
    inline_started = threading.Event()

    @step
    def breaks() -> int:
        assert inline_started.wait(DEADLINE), "long_inline never started"
        raise RuntimeError("submitted step broke")

    @step
    def long_inline() -> int:
        inline_started.set()
        ctx = current_run()
        assert ctx is not None
        # Still running when `breaks` fails: it returns only once told to stop.
        wait_until(lambda: _failure_handled(ctx, "long_inline"), what="long_inline to be told to stop")
        return 1

    @pipeline(dynamic=True, execution_mode="fail_fast")
    def p() -> None:
        breaks.submit()
        long_inline()  # runs in the caller's thread while `breaks` fails
        ran.append("body went on")

    ran.clear()
    with pytest.raises(RuntimeError, match="submitted step broke"):
        p()
    run = Client().get_pipeline("p").last_run
    assert run.steps["long_inline"].status.value == "stopped"
    assert run.steps["long_inline"].outputs == {}
    assert "body went on" not in ran


def test_isolated_step_retries_and_caches(tmp_path: Any) -> None:
    counter = tmp_path / "tries"

    @step(runtime="isolated", retry=StepRetryConfig(max_retries=2))
    def flaky_isolated(path: str) -> int:
        import pathlib

        p_ = pathlib.Path(path)
        n = int(p_.read_text()) + 1 if p_.exists() else 1
        p_.write_text(str(n))
        if n < 2:
            raise OSError(f"isolated try {n}")
        return n

    @pipeline(dynamic=True)
    def p() -> None:
        flaky_isolated(str(counter))

    run = p()
    assert run.steps["flaky_isolated"].attempts == 2
    assert run.steps["flaky_isolated"].output.load() == 2
    again = p()
    assert again.steps["flaky_isolated"].status.value == "cached"
    assert counter.read_text() == "2"


def test_continue_on_failure_lets_submitted_work_finish_after_the_body_raises() -> None:
    body_raised = threading.Event()

    @step(enable_cache=False)
    def good() -> int:
        # still running when the body raises: it must be let finish, and its child run too
        assert body_raised.wait(DEADLINE), "the pipeline body never reached bad()"
        return 1

    @step(enable_cache=False)
    def after_good(x: int) -> int:
        return x + 1

    @step(enable_cache=False)
    def bad() -> int:
        raise ValueError("bad step")

    @pipeline(dynamic=True, execution_mode=ExecutionMode.CONTINUE_ON_FAILURE)
    def keeps_going() -> None:
        g = good.submit()
        after_good.submit(g)
        try:
            bad()  # raises in the body: the body ends, independent submitted work does not
        except ValueError:
            body_raised.set()
            raise

    with pytest.raises(ValueError, match="bad step"):
        keeps_going()
    run = Client().get_pipeline("keeps_going").last_run
    assert run.status.value == "failed"
    assert {n: s.status.value for n, s in run.steps.items()} == {
        "good": "completed", "after_good": "completed", "bad": "failed",
    }
    assert run.steps["after_good"].output.load() == 2
