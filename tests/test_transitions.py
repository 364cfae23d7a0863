"""Step status changes: the transition table, and no silent hang when recording an outcome fails.

Whatever breaks while a step's outcome is recorded (a store write, JSON encoding, a hook,
the live DAG update), every future still resolves, and the error names the step.
"""

from __future__ import annotations

import concurrent.futures
import json
import threading
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import dynpipe.engine.transitions as transitions
import dynpipe.store.metadata as metadata_module
import dynpipe.store.sqlite_statements as sqlite_statements
from dynpipe import StepRecordingError, StepRetryConfig, pipeline, step
from dynpipe.engine.dag import RunGraph
from dynpipe.engine.transitions import ALLOWED
from dynpipe.errors import InvalidTransition
from dynpipe.status import FINISHED, ExecutionStatus
from dynpipe.store.metadata import MetadataStore

DEADLINE = 60.0

STORE_METHODS = [
    "record_step_started", "record_attempt", "record_retry_started", "finish_step_run",
    "record_cache_hit", "record_not_run", "append_step_log",
]
POINTS = [*STORE_METHODS, "graph.update", "json.dumps", "hook"]


class Injector:
    """Fails the ``nth`` call made while armed (and, ``broken``, every later one)."""

    def __init__(self, nth: int, broken: bool) -> None:
        self.nth = nth
        self.broken = broken
        self.calls = 0
        self.fired = 0
        self.armed = threading.Event()
        self.lock = threading.Lock()

    def check(self, what: str) -> None:
        if not self.armed.is_set():
            return
        with self.lock:
            self.calls += 1
            fail = self.calls == self.nth or (self.broken and self.calls > self.nth)
            if fail:
                self.fired += 1
        if fail:
            raise OSError(28, f"injected failure in {what}")

    def wrap(self, what: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            self.check(what)
            return fn(*args, **kwargs)

        return wrapper


def _inject(point: str, injector: Injector, monkeypatch: pytest.MonkeyPatch) -> None:
    if point in STORE_METHODS:
        monkeypatch.setattr(MetadataStore, point, injector.wrap(point, getattr(MetadataStore, point)))
    elif point == "graph.update":  # and the per-step shortcuts of ``update``
        for name in ("update", "set_running", "set_outputs"):
            monkeypatch.setattr(RunGraph, name, injector.wrap(point, getattr(RunGraph, name)))
    elif point == "hook":
        monkeypatch.setattr(transitions, "run_hook", injector.wrap(point, transitions.run_hook))
    elif point == "json.dumps":

        class Json:
            loads = staticmethod(json.loads)
            dumps = staticmethod(injector.wrap(point, json.dumps))

        monkeypatch.setattr(metadata_module, "json", Json)
        monkeypatch.setattr(sqlite_statements, "json", Json)  # the per-step rows' JSON columns
        # ... most of which it writes itself (json's text, without json)
        monkeypatch.setattr(sqlite_statements, "plain_json", injector.wrap(point, sqlite_statements.plain_json))


def _scenario(injector: Injector) -> list[Any]:
    """Two runs exercising every transition: start, retry, complete, fail, skip, cache hit, hook."""
    tries: dict[str, int] = {}

    def noisy_hook() -> None:
        raise RuntimeError("the hook itself fails")  # reported into the step's logs

    @step(enable_cache=False, on_success=noisy_hook)
    def ok(x: int) -> int:
        return x + 1

    @step(enable_cache=False, retry=StepRetryConfig(max_retries=1, delay=0))
    def flaky(x: int) -> int:
        tries[str(x)] = tries.get(str(x), 0) + 1
        if tries[str(x)] == 1:
            raise ValueError("first try fails")
        return x

    @step(enable_cache=False)
    def boom(x: int) -> int:
        raise ValueError(f"boom {x}")

    @step(enable_cache=True)
    def kept(x: int) -> int:
        return x * 2

    futures: list[Any] = []

    @pipeline(dynamic=True, execution_mode="continue_on_failure")
    def scenario(round_: int) -> None:
        injector.armed.set()
        futures.append(ok.submit(round_))
        futures.append(flaky.submit(10 + round_))
        failed = boom.submit(round_)
        futures.append(failed)
        futures.append(ok.submit(failed))
        futures.append(kept.submit(7))
        for f in list(futures):
            f.wait(DEADLINE)

    for round_ in (1, 2):
        try:
            scenario(round_)
        except Exception:
            pass
        finally:
            injector.armed.clear()
    return futures


@pytest.mark.parametrize("point", POINTS)
@settings(max_examples=3, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(nth=st.integers(min_value=1, max_value=2), broken=st.booleans())
def test_every_future_resolves_when_recording_fails(
    point: str, nth: int, broken: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    injector = Injector(nth, broken)
    with monkeypatch.context() as patch:
        _inject(point, injector, patch)
        done: list[Any] = []
        runner = threading.Thread(target=lambda: done.append(_scenario(injector)), daemon=True)
        runner.start()
        runner.join(DEADLINE)
        assert not runner.is_alive(), f"the runs hung after a failure injected into {point}"
    futures = done[0]
    _, pending = concurrent.futures.wait([f.handle.future for f in futures], timeout=DEADLINE)
    assert not pending, f"futures never resolved: {[f for f in futures if not f.done()]}"
    assert injector.fired, f"the scenario never reached {point}"
    recording_errors = [e for f in futures if isinstance(e := f.exception(0), StepRecordingError)]
    for err in recording_errors:
        assert f"recording step {err_step(err)!r} as " in str(err)
        assert "injected failure" in str(err)
    if point != "append_step_log" and not broken:
        # One failure, one step: that step (and only that step) reports it.
        assert len(recording_errors) <= 1


def err_step(err: BaseException) -> str:
    return str(err).split("'")[1]


def test_a_raising_str_of_a_step_error_still_fails_the_step_with_its_name() -> None:
    class Weird(Exception):
        def __str__(self) -> str:
            raise RuntimeError("no str for you")

    @step(enable_cache=False)
    def odd() -> int:
        raise Weird()

    futures: list[Any] = []

    @pipeline(dynamic=True)
    def p() -> None:
        futures.append(odd.submit())

    with pytest.raises(BaseException):
        p()
    assert futures[0].done()
    assert futures[0].status == ExecutionStatus.FAILED


def test_a_parameter_json_cannot_record_is_refused_naming_step_and_input() -> None:
    @step(enable_cache=False)
    def big(n: int) -> int:
        return 1

    @pipeline(dynamic=True)
    def p() -> None:
        big(10**5000)

    with pytest.raises(TypeError, match=r"step 'big': parameter 'n' \(int\) cannot be recorded as JSON"):
        p()


def test_the_transition_table_is_closed_and_final_statuses_have_no_way_out() -> None:
    for source, targets in ALLOWED.items():
        assert source not in FINISHED
        assert targets <= set(ExecutionStatus)
    assert {t for targets in ALLOWED.values() for t in targets} >= FINISHED


def test_an_invalid_transition_raises_naming_the_step() -> None:
    seen: list[BaseException] = []

    @step(enable_cache=False)
    def one() -> int:
        return 1

    @pipeline(dynamic=True)
    def p() -> None:
        fut = one.submit()
        fut.wait(DEADLINE)
        try:
            transitions.transition(fut.handle, ExecutionStatus.RUNNING)  # type: ignore[arg-type]
        except InvalidTransition as exc:
            seen.append(exc)

    p()
    assert seen and "step 'one': completed -> running is not a valid transition" in str(seen[0])
