"""Retries: StepRetryConfig at step and pipeline level; every attempt recorded; the step
shows ``retrying`` while it waits for the next attempt."""

from __future__ import annotations

import subprocess
import sys
import time
from typing import Any

import pytest
from helpers import wait_until

from dynpipe import Client, StepRetryConfig, pipeline, step
from dynpipe.engine.context import current_run
from dynpipe.store.store import open_store


def _attempt_rows(step_run_id: str) -> list[tuple[int, str, str | None, str | None]]:
    rows = open_store().metadata.query(
        "SELECT attempt, status, error_type, error_message FROM step_attempts"
        " WHERE step_run_id = ? ORDER BY attempt",
        (step_run_id,),
    )
    return [(r["attempt"], r["status"], r["error_type"], r["error_message"]) for r in rows]


def test_step_retries_until_it_succeeds_and_records_each_attempt() -> None:
    tries: list[float] = []

    @step(retry=StepRetryConfig(max_retries=3, delay=0.1, backoff=2))
    def flaky() -> int:
        tries.append(time.monotonic())
        print(f"attempt {len(tries)}")
        if len(tries) < 3:
            raise ConnectionError(f"transient {len(tries)}")
        return 42

    @pipeline(dynamic=True)
    def p() -> None:
        flaky()

    run = p()
    sr = run.steps["flaky"]
    assert run.status.value == "completed"
    assert sr.status.value == "completed"
    assert sr.attempts == 3
    assert sr.output.load() == 42
    assert _attempt_rows(sr.id) == [
        (1, "failed", "ConnectionError", "transient 1"),
        (2, "failed", "ConnectionError", "transient 2"),
        (3, "completed", None, None),
    ]
    # The same history through the Client and the CLI.
    attempts = Client().list_step_attempts(run.name, "flaky")
    assert [(a.attempt, a.status, a.error_message) for a in attempts] == [
        (1, "failed", "transient 1"), (2, "failed", "transient 2"), (3, "completed", None),
    ]
    assert all(a.start_time and a.end_time and a.end_time >= a.start_time for a in attempts)
    shown = subprocess.run(
        [sys.executable, "-m", "dynpipe.cli", "runs", "show", run.name], capture_output=True, text=True, timeout=60
    )
    assert "flaky: 3 attempts" in shown.stdout
    assert "attempt 1: failed — ConnectionError: transient 1" in shown.stdout
    # delay 0.1 then 0.1*2: the waits grow with backoff (lower bounds: load only adds time)
    assert tries[1] - tries[0] >= 0.09
    assert tries[2] - tries[1] >= 0.19
    # logs of every attempt are kept, each marked
    for n in (1, 2, 3):
        assert f"--- attempt {n} ---" in sr.logs
        assert f"attempt {n}" in sr.logs


def test_exhausted_retries_fail_the_step_and_the_run() -> None:
    @step(retry=StepRetryConfig(max_retries=2, delay=0))
    def always_fails() -> int:
        raise ValueError("broken for good")

    @pipeline(dynamic=True)
    def p() -> None:
        always_fails()

    with pytest.raises(ValueError, match="broken for good"):
        p()
    run = Client().get_pipeline("p").last_run
    sr = run.steps["always_fails"]
    assert run.status.value == "failed"
    assert sr.status.value == "failed"
    assert sr.attempts == 3
    assert sr.error_type == "ValueError" and sr.error_message == "broken for good"
    assert [a[:2] for a in _attempt_rows(sr.id)] == [(1, "failed"), (2, "failed"), (3, "failed")]


def test_pipeline_level_retry_applies_to_steps_and_step_level_wins() -> None:
    counts = {"a": 0, "b": 0}

    @step
    def uses_pipeline_retry() -> int:
        counts["a"] += 1
        if counts["a"] < 3:
            raise RuntimeError("again")
        return 1

    @step(retry=StepRetryConfig(max_retries=0))
    def no_retry() -> int:
        counts["b"] += 1
        raise RuntimeError("no second chance")

    @pipeline(dynamic=True, retry=StepRetryConfig(max_retries=2), execution_mode="continue_on_failure")
    def p() -> None:
        uses_pipeline_retry.submit()
        no_retry.submit()

    with pytest.raises(RuntimeError, match="no second chance"):
        p()
    run = Client().get_pipeline("p").last_run
    assert run.steps["uses_pipeline_retry"].status.value == "completed"
    assert run.steps["uses_pipeline_retry"].attempts == 3
    assert run.steps["no_retry"].status.value == "failed"
    assert run.steps["no_retry"].attempts == 1
    assert counts == {"a": 3, "b": 1}


def test_retrying_status_is_observable_in_the_graph_and_the_store() -> None:
    seen_graph: list[str] = []
    seen_store: list[str] = []
    tries = [0]

    @step(retry=StepRetryConfig(max_retries=1, delay=0.5))
    def flaky() -> int:
        tries[0] += 1
        if tries[0] == 1:
            raise OSError("flake")
        return 1

    @step
    def first() -> int:
        ctx = current_run()
        assert ctx is not None
        run_id = ctx.run_id

        def listen(graph: Any, node: Any) -> None:
            if node is None or node.step_name != "flaky":
                return
            if not seen_graph or seen_graph[-1] != node.status:
                seen_graph.append(node.status)
            if node.status == "retrying":
                # While the step waits to retry, another reader of the store sees it so.
                # (Read here, in the update itself, so no poller has to catch a 0.5 s window.)
                rows = open_store().metadata.query(
                    "SELECT status FROM step_runs WHERE run_id = ? AND step_name = 'flaky'", (run_id,)
                )
                seen_store.extend(row["status"] for row in rows)

        ctx.graph.subscribe(listen)
        return 0

    @pipeline(dynamic=True)
    def p() -> None:
        first()
        flaky()

    run = p()
    assert run.steps["flaky"].status.value == "completed"
    assert seen_graph == ["queued", "running", "retrying", "running", "completed"]
    assert seen_store == ["retrying"]
    assert Client().get_pipeline_run(run.id).steps["flaky"].status.value == "completed"


def test_retry_config_validation_and_backoff() -> None:
    cfg = StepRetryConfig(max_retries=3, delay=10, backoff=2)
    assert [cfg.wait_before(n) for n in (1, 2, 3)] == [10, 20, 40]  # the spec's example
    with pytest.raises(Exception):
        StepRetryConfig(max_retries=-1)
    with pytest.raises(Exception):
        StepRetryConfig(max_retries=1, unknown=2)  # type: ignore[call-arg]


def test_retry_given_as_a_dict_in_with_options() -> None:
    tries = [0]

    @step
    def flaky() -> int:
        tries[0] += 1
        if tries[0] < 2:
            raise RuntimeError("once")
        return 5

    @pipeline(dynamic=True)
    def p() -> None:
        flaky.with_options(retry={"max_retries": 1})()

    run = p()
    assert run.steps["flaky"].attempts == 2
    assert run.steps["flaky"].status.value == "completed"


def test_retry_delay_is_kept_after_another_step_failed_under_stop_on_failure() -> None:
    tries: list[float] = []

    @step(retry=StepRetryConfig(max_retries=1, delay=0.4))
    def flaky() -> int:
        tries.append(time.monotonic())
        if len(tries) == 1:
            raise OSError("flake")
        return 1

    @step
    def breaks() -> int:
        raise RuntimeError("other step broke")

    @pipeline(dynamic=True)
    def p() -> None:
        f = flaky.submit()
        # fail the other step while this one waits
        wait_until(lambda: f.status == "retrying", what="flaky to wait for its retry")
        breaks.submit()
        f.wait()

    with pytest.raises(RuntimeError, match="other step broke"):
        p()
    run = Client().get_pipeline("p").last_run
    assert run.steps["flaky"].status.value == "completed"  # a running step completes
    assert tries[1] - tries[0] >= 0.39  # a lower bound: a slow machine cannot break it
