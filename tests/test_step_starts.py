"""Step starts written late (engine/starts.py): one transaction per short step, durable starts of long ones."""

from __future__ import annotations

import threading
import time

import pytest
from backends import Backend

from dynpipe import Client, StepRetryConfig, pipeline, step
from dynpipe.engine import starts
from dynpipe.store.store import open_store


def _row(step_name: str) -> list[tuple[object, ...]]:
    sql = f"SELECT status, start, \"end\", attempts FROM step_runs WHERE step_name = '{step_name}'"
    rows = open_store().metadata.query(sql)  # type: ignore[attr-defined]  # both backends have query()
    return [tuple(r[k] for k in ("status", "start", "end", "attempts")) for r in rows]


def test_short_step_writes_its_row_once_at_its_end(backend: Backend, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(starts, "WINDOW", 600.0)
    seen_while_running: list[int] = []
    inside: list[float] = []

    @step
    def short() -> int:
        seen_while_running.append(len(_row("short")))
        inside.append(time.time())
        return 1

    @pipeline(dynamic=True, enable_cache=False)
    def p() -> None:
        short()

    p()
    assert seen_while_running == [0]  # no row while it ran: its start waited for its end
    status, start, end, attempts = _row("short")[0]  # type: ignore[misc]
    assert (status, attempts) == ("completed", 1)
    assert start <= inside[0] <= end  # the real start, written with the end  # type: ignore[operator]


def test_long_step_start_committed_while_it_runs(backend: Backend, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(starts, "WINDOW", 0.0)
    seen: list[object] = []

    @step
    def long() -> int:
        deadline = time.monotonic() + 30
        while not (rows := _row("long")):  # the starts thread commits it; nothing else would
            assert time.monotonic() < deadline, "the running step's start was never committed"
            time.sleep(0.01)
        seen.append(rows[0][0])  # type: ignore[index]
        return 2

    @pipeline(dynamic=True, enable_cache=False)
    def p() -> None:
        long()

    assert p().steps["long"].status.value == "completed"
    assert seen == ["running"]
    assert _row("long")[0][0] == "completed"  # type: ignore[index]


def test_retried_short_step_keeps_every_attempt(backend: Backend, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(starts, "WINDOW", 600.0)
    calls = threading.local()

    @step(retry=StepRetryConfig(max_retries=1))
    def flaky() -> int:
        calls.n = getattr(calls, "n", 0) + 1
        if calls.n == 1:
            raise ValueError("first attempt fails")
        return 3

    @pipeline(dynamic=True, enable_cache=False)
    def p() -> None:
        flaky()

    run = p()
    s = run.steps["flaky"]
    assert (s.status.value, s.output.load()) == ("completed", 3)
    assert s.attempts == 2
    attempts = Client().list_step_attempts(run.name, "flaky")
    assert [str(a.status) for a in attempts] == ["failed", "completed"]
