"""Single steps outside a pipeline, and DYNPIPE_ENFORCE_TYPE_ANNOTATIONS."""

from __future__ import annotations

from pathlib import Path

import pytest

from dynpipe import Client, pipeline, step

calls: list[str] = []


@step
def square(x: int) -> int:
    calls.append("square")
    return x * x


@step
def two_outputs() -> tuple[int, str]:
    return 1, "one"


def test_a_step_called_outside_a_pipeline_is_an_unlisted_one_step_run() -> None:
    calls.clear()
    assert square(4) == 16
    client = Client()
    assert client.list_pipeline_runs() == []
    assert client.list_pipelines() == []
    (run,) = client.list_pipeline_runs(include_unlisted=True)
    assert run.pipeline_name == "square"
    assert run.status.value == "completed"
    assert list(run.steps) == ["square"]
    assert run.steps["square"].parameters == {"x": 4}
    assert run.steps["square"].output.load() == 16
    assert client.list_pipeline_runs(pipeline_name="square") == []
    assert client.list_pipeline_runs(pipeline_name="square", include_unlisted=True)[0].id == run.id


def test_single_step_runs_are_cached_like_any_step() -> None:
    calls.clear()
    assert square(3) == 9
    assert square(3) == 9
    assert calls == ["square"]
    runs = Client().list_pipeline_runs(include_unlisted=True)
    assert sorted(r.steps["square"].status.value for r in runs) == ["cached", "completed"]


def test_single_step_with_several_outputs_returns_a_tuple_of_values() -> None:
    assert two_outputs() == (1, "one")


def test_a_failing_single_step_raises_and_is_recorded() -> None:
    @step
    def breaks(x: int) -> int:
        raise ValueError(f"bad {x}")

    with pytest.raises(ValueError, match="bad 3"):
        breaks(3)
    (run,) = Client().list_pipeline_runs(include_unlisted=True)
    assert run.status.value == "failed"
    assert run.steps["breaks"].error_type == "ValueError"


def test_run_single_steps_without_store(monkeypatch: pytest.MonkeyPatch, store_home: Path) -> None:
    calls.clear()
    monkeypatch.setenv("DYNPIPE_RUN_SINGLE_STEPS_WITHOUT_STORE", "true")
    assert square(5) == 25
    assert square(5) == 25
    assert two_outputs() == (1, "one")
    assert calls == ["square", "square"]  # the bare function, no cache
    assert not store_home.exists()  # nothing stored, not even an empty store


def test_the_bare_function_is_always_reachable(store_home: Path) -> None:
    assert square.entrypoint(6) == 36
    assert not store_home.exists()


def test_a_step_called_inside_another_step_runs_as_a_plain_function() -> None:
    @step
    def outer(x: int) -> int:
        return square(x) + 1  # not a separate step run

    @pipeline(dynamic=True)
    def p() -> None:
        outer(3)

    run = p()
    assert list(run.steps) == ["outer"]
    assert run.steps["outer"].output.load() == 10
    assert outer(2) == 5  # also from a single-step run


def test_enforce_type_annotations(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DYNPIPE_ENFORCE_TYPE_ANNOTATIONS", "true")

    with pytest.raises(TypeError, match="step 'untyped' has no type annotation for x, return"):

        @step
        def untyped(x, y: int):  # type: ignore[no-untyped-def]
            return x

    with pytest.raises(TypeError, match="no type annotation for return"):

        @step
        def no_return(x: int):  # type: ignore[no-untyped-def]
            return x

    @step
    def typed(x: int) -> None:
        pass

    typed(1)


def test_enforce_type_annotations_set_after_the_step_was_defined(monkeypatch: pytest.MonkeyPatch) -> None:
    @step
    def untyped(x):  # type: ignore[no-untyped-def]
        return x

    @pipeline(dynamic=True)
    def p() -> None:
        untyped(1)

    assert p().status.value == "completed"  # without the variable: fine
    monkeypatch.setenv("DYNPIPE_ENFORCE_TYPE_ANNOTATIONS", "1")
    with pytest.raises(TypeError, match="step 'untyped' has no type annotation for x, return"):
        p()
    with pytest.raises(TypeError, match="step 'untyped' has no type annotation"):
        untyped(2)
