"""Fuzzing step inputs: awkward values and wrong ``.map`` calls get clear errors, never hangs.

Property: calling a step with any value either runs it or raises a ``TypeError``/``ValueError``
(``StepTypeError``, ``ConfigError``) whose message names the step and the input; a step's
future always resolves. Values: a raising ``__repr__``, deeply nested and self-containing
lists, ``10**5000`` (over Python's int digit limit), huge strings, objects that cannot be
pickled or JSON-encoded. Every case runs in a daemon thread with a deadline, so a hang fails
the test instead of stalling the suite.

``DYNPIPE_FUZZ_EXAMPLES`` raises the number of hypothesis examples per test.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from dynpipe import pipeline, step
from dynpipe.engine.context import current_run
from dynpipe.notebook.render import node_details

DEADLINE = 10.0  # seconds; a case that has not finished by then is hung (they take well under 1 s)

pytestmark = pytest.mark.filterwarnings("ignore:dynpipe. no materializer")


def _settings(default: int, *, shrink: bool = True) -> settings:
    return settings(
        max_examples=int(os.environ.get("DYNPIPE_FUZZ_EXAMPLES", default)),
        deadline=None,  # the daemon-thread deadline below guards against hangs
        database=None,
        phases=list(Phase) if shrink else [Phase.explicit, Phase.generate],
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
    )


@step(enable_cache=False)
def describe(value: Any) -> str:
    return type(value).__name__


@step(enable_cache=False)
def echo(value: Any) -> Any:
    return value


@step(enable_cache=False)
def want_int(x: int) -> int:
    return x


class RaisingRepr:
    """Picklable, but describing it raises."""

    def __repr__(self) -> str:
        raise RuntimeError("repr exploded")


def _nested(depth: int) -> list[Any]:
    value: list[Any] = []
    for _ in range(depth):
        value = [value]
    return value


def _self_containing() -> list[Any]:
    value: list[Any] = [1]
    value.append(value)
    return value


def _generator() -> Any:
    return (i for i in range(3))


AWKWARD: dict[str, Callable[[], Any]] = {
    "raising_repr": RaisingRepr,
    "nested_5000": lambda: _nested(5000),
    "self_containing_list": _self_containing,
    "int_10**5000": lambda: 10**5000,
    "str_2MB": lambda: "x" * 2_000_000,
    "lambda": lambda: lambda: 1,
    "generator": _generator,
    "lock": threading.Lock,
    "plain_object": object,
}
WRAPS: dict[str, Callable[[Any], Any]] = {
    "bare": lambda v: v,
    "in_list": lambda v: [1, v],
    "in_dict": lambda v: {"key": v},
    "in_tuple": lambda v: (v,),
}


def _guarded(body: Callable[[], None]) -> BaseException | None:
    """Run a pipeline call in a daemon thread; its exception, or fail if it outlives DEADLINE."""
    outcome: dict[str, BaseException | None] = {}

    def target() -> None:
        try:
            body()
            outcome["exc"] = None
        except BaseException as exc:  # handed to the caller to judge
            outcome["exc"] = exc

    thread = threading.Thread(target=target, daemon=True, name="input-fuzz")
    thread.start()
    thread.join(DEADLINE)
    if thread.is_alive():
        pytest.fail(f"the pipeline call did not finish within {DEADLINE} s (hung)")
    return outcome["exc"]


def _assert_clear(exc: BaseException | None, step_name: str, input_name: str | None) -> None:
    """No error, or a TypeError/ValueError naming the step (and the input where there is one)."""
    if exc is None:
        return
    message = str(exc)
    assert isinstance(exc, (TypeError, ValueError)), f"raw {type(exc).__name__}: {message[:300]}"
    assert f"step '{step_name}'" in message or f"{step_name}." in message, f"step not named: {message[:300]}"
    if input_name is not None:
        assert f"'{input_name}'" in message, f"input not named: {message[:300]}"


def _call_and_describe(call: Callable[[], Any]) -> None:
    """Call inside a pipeline, then describe every node as the notebook widget does."""

    @pipeline(dynamic=True, name="fuzzed_inputs")
    def fuzzed_inputs() -> None:
        try:
            call()
        finally:
            run = current_run()
            assert run is not None
            for node in run.graph.snapshot():
                node_details(node)

    fuzzed_inputs()


# -- property tests ------------------------------------------------------------------

json_like = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=50),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=15,
)


@_settings(25)
@given(value=json_like)
def test_plain_values_round_trip_through_a_step(value: Any) -> None:
    loaded: list[Any] = []
    exc = _guarded(lambda: _call_and_describe(lambda: loaded.append(echo(value).load())))
    _assert_clear(exc, "echo", "value")
    assert exc is None and loaded == [value]


@_settings(60, shrink=False)
@given(
    kind=st.sampled_from(sorted(AWKWARD)), wrap=st.sampled_from(sorted(WRAPS)), target=st.sampled_from(["any", "int"])
)
def test_any_awkward_input_runs_or_is_a_clear_error_naming_step_and_input(kind: str, wrap: str, target: str) -> None:
    value = WRAPS[wrap](AWKWARD[kind]())
    called = describe if target == "any" else want_int
    exc = _guarded(lambda: _call_and_describe(lambda: called(value)))
    _assert_clear(exc, called.name, "value" if target == "any" else "x")


# -- the defects the fuzzing found, one by one ------------------------------------------


def test_a_value_whose_repr_raises_still_gets_a_type_error_naming_step_and_input() -> None:
    exc = _guarded(lambda: _call_and_describe(lambda: want_int(RaisingRepr())))
    _assert_clear(exc, "want_int", "x")
    assert exc is not None


def test_a_deeply_nested_value_of_the_wrong_type_names_step_and_input() -> None:
    exc = _guarded(lambda: _call_and_describe(lambda: want_int(_nested(5000))))
    _assert_clear(exc, "want_int", "x")
    assert exc is not None


def test_a_huge_int_of_the_wrong_type_names_step_and_input() -> None:
    exc = _guarded(lambda: _call_and_describe(lambda: want_int([10**5000])))  # type: ignore[arg-type]
    _assert_clear(exc, "want_int", "x")
    assert exc is not None


def test_a_huge_int_parameter_runs_or_names_step_and_input() -> None:
    exc = _guarded(lambda: _call_and_describe(lambda: describe(10**5000)))
    _assert_clear(exc, "describe", "value")


def test_a_submitted_step_with_a_huge_int_resolves_its_future() -> None:
    outcomes: list[BaseException | None] = []

    def call() -> None:
        # Refused at submit (naming step and input) or failed through the future: either is
        # fine, a future that never resolves is not.
        for submit in (lambda: describe.submit(10**5000), lambda: describe.map([1, 10**5000])):
            try:
                submit().result(timeout=DEADLINE)  # a hang shows as TimeoutError, not a stuck thread
                outcomes.append(None)
            except Exception as exc:  # judged below
                outcomes.append(exc)

    _guarded(lambda: _call_and_describe(call))
    assert len(outcomes) == 2
    for exc in outcomes:
        assert not isinstance(exc, TimeoutError), "the step's future never resolved"
        _assert_clear(exc, "describe", "value")


def test_map_with_too_many_arguments_names_the_step() -> None:
    exc = _guarded(lambda: _call_and_describe(lambda: want_int.map([1, 2], [3, 4])))
    assert isinstance(exc, TypeError)
    _assert_clear(exc, "want_int", None)


def test_map_with_an_unknown_keyword_names_step_and_input() -> None:
    exc = _guarded(lambda: _call_and_describe(lambda: want_int.map(y=[1, 2])))
    assert isinstance(exc, TypeError)
    _assert_clear(exc, "want_int", "y")


# -- what already works (kept working) -----------------------------------------------


@pytest.mark.parametrize("kind", ["generator", "lock", "nested_5000"])
def test_a_value_that_cannot_be_stored_names_step_and_input(kind: str) -> None:
    exc = _guarded(lambda: _call_and_describe(lambda: describe(AWKWARD[kind]())))
    assert isinstance(exc, TypeError)
    _assert_clear(exc, "describe", "value")
    assert "cannot be stored" in str(exc)


def test_a_self_containing_list_runs_and_a_huge_string_round_trips() -> None:
    seen: list[Any] = []
    big = "x" * 2_000_000

    def call() -> None:
        seen.append(describe(_self_containing()).load())
        seen.append(echo(big).load())

    assert _guarded(lambda: _call_and_describe(call)) is None
    assert seen[0] == "list" and seen[1] == big


def test_a_self_containing_list_of_the_wrong_type_names_step_and_input() -> None:
    exc = _guarded(lambda: _call_and_describe(lambda: want_int(_self_containing())))
    assert isinstance(exc, TypeError)
    _assert_clear(exc, "want_int", "x")


def test_map_over_a_non_sequence_names_step_and_input() -> None:
    exc = _guarded(lambda: _call_and_describe(lambda: want_int.map(5)))
    assert isinstance(exc, TypeError)
    _assert_clear(exc, "want_int", "x")
