"""Honest statuses: a submitted step is ``queued`` until its attempt starts on a thread or a
worker, and an isolated step's recorded start is when a worker took it (real worker
processes, real SQLite; the pool has one worker so the second step must wait for it)."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from helpers import DEADLINE, wait_until

from dynpipe import Client, pipeline, step
from dynpipe.engine.context import current_run
from dynpipe.engine.transitions import ALLOWED
from dynpipe.status import ExecutionStatus

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(autouse=True)
def one_worker(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("DYNPIPE_WORKERS", "1")
    monkeypatch.setenv("DYNPIPE_ECHO_LOGS", "false")
    yield


@step(runtime="isolated", enable_cache=False)
def gated(gate: str, tag: int) -> int:
    """Holds its worker until the test creates ``gate``."""
    end = time.monotonic() + DEADLINE
    while not os.path.exists(gate):
        if time.monotonic() > end:
            raise AssertionError(f"the test never opened {gate}")
        time.sleep(0.01)
    return tag


@step(enable_cache=False)
def plus_one(x: int) -> int:
    return x + 1


def test_queued_is_a_status_that_leads_where_initializing_did() -> None:
    assert ExecutionStatus.QUEUED in ALLOWED
    assert ALLOWED[ExecutionStatus.QUEUED] >= {ExecutionStatus.RUNNING, ExecutionStatus.SKIPPED}
    assert ExecutionStatus.RUNNING not in ALLOWED[ExecutionStatus.RUNNING]


def test_steps_waiting_for_a_worker_or_inputs_are_queued_and_durations_start_at_the_worker(tmp_path: Path) -> None:
    gate = tmp_path / "gate"
    seen: dict[str, Any] = {}

    @pipeline(dynamic=True, enable_cache=False)
    def p() -> None:
        ctx = current_run()
        assert ctx is not None
        first = gated.submit(str(gate), 1)
        second = gated.submit(str(gate), 2)
        after = plus_one.submit(first)
        nodes = ctx.graph.nodes
        running = wait_until(
            lambda: [n for n in ("gated", "gated_2") if nodes[n].status == "running"],
            what="one isolated step running",
        )
        (holder,) = running
        waiting = "gated_2" if holder == "gated" else "gated"
        # One worker, held by `holder` until the gate opens: the other one waits for it.
        seen["waiting"] = waiting
        seen["statuses"] = {n: str(nodes[n].status) for n in (holder, waiting, "plus_one")}
        seen["details"] = nodes[waiting].as_dict()
        seen["released"] = time.time()
        gate.touch()
        second.wait()
        after.wait()
        seen["waiting_node"] = nodes[waiting].as_dict()
        seen["waiting_start"] = nodes[waiting].start

    run = p()
    waiting = seen["waiting"]
    holder = "gated" if waiting == "gated_2" else "gated_2"
    assert seen["statuses"] == {holder: "running", waiting: "queued", "plus_one": "queued"}
    assert seen["details"]["status"] == "queued" and seen["details"]["queue_time"] is None
    # The waiting step started only when the worker was free, i.e. after the gate opened.
    assert seen["waiting_start"] >= seen["released"]
    assert seen["waiting_node"]["queue_time"] > 0
    stored = Client().get_pipeline_run(run.id).steps[waiting]
    assert stored.status.value == "completed"
    assert stored.start_time is not None and stored.start_time.timestamp() >= seen["released"]


def test_a_step_waiting_for_its_input_is_queued_in_the_notebook_widget(tmp_path: Path) -> None:
    """Real kernel: the live widget's node details say ``queued`` for a step whose input is
    still running, then ``completed``; a run with no steps is summarised as such."""
    from test_notebook_kernel import SETUP, Kernel, statuses_in, stdout, widget_of

    k = Kernel()
    try:
        reply, _ = k.execute(SETUP.format(home=str(tmp_path / "store"), sleep=0.1))
        assert reply["status"] == "ok", reply
        reply, msgs = k.execute("%%pipeline q\nh = held.submit(1)\nt = add.submit([h])")
        assert reply["status"] == "ok", reply
        model_id, _ = widget_of(msgs)
        seen: dict[str, str] = {}

        def waiting(msg: dict[str, Any]) -> bool:
            seen.update(statuses_in(msg, model_id))
            return seen.get("held") == "running" and seen.get("add") == "queued"

        if not any(waiting(m) for m in msgs):
            k.drain(waiting)
        reply, msgs = k.execute("release.set()\nprint(t.load())")
        assert stdout(msgs).strip() == "10"
        reply, msgs = k.execute("%pipeline end q")
        assert "completed; 2 completed" in stdout(msgs)
        reply, msgs = k.execute("%%pipeline nothing --no-widget\npass")
        reply, msgs = k.execute("%pipeline end nothing")
        assert "completed; no steps" in stdout(msgs)
    finally:
        k.close()
