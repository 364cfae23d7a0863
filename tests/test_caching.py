"""Caching: on by default, switched per step and pipeline, keyed on code, parameters,
input content, materializers and config; CachePolicy changes the key; hits are recorded
as ``cached`` step runs that point at the stored artifacts and never run the body."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from dynpipe import CachePolicy, Client, Materializer, pipeline, step
from dynpipe.cli import main as cli_main


def _last_step(pipeline_name: str, invocation_id: str) -> Any:
    return Client().get_pipeline(pipeline_name).last_run.steps[invocation_id]


def test_second_run_is_a_cache_hit_with_the_same_artifacts_and_no_body_call() -> None:
    calls: list[int] = []

    @step
    def produce(x: int) -> int:
        calls.append(x)
        return x * 10

    @step
    def consume(v: int) -> int:
        calls.append(-v)
        return v + 1

    @pipeline(dynamic=True)
    def cached_pipe() -> None:
        consume(produce(4))

    first = cached_pipe()
    second = cached_pipe()
    assert calls == [4, -40]  # the second run ran no body at all
    assert first.status.value == second.status.value == "completed"
    for inv in ("produce", "consume"):
        a, b = first.steps[inv], second.steps[inv]
        assert a.status.value == "completed"
        assert b.status.value == "cached"
        assert b.cache_key == a.cache_key and a.cache_key
        assert b.cached_from == a.id
        assert b.output.id == a.output.id
        assert b.output.load() == a.output.load()
    # The cached consumer saw the cached producer's artifact as its input.
    assert second.steps["consume"].inputs == {"v": first.steps["produce"].output.id}


def test_cache_hit_is_visible_in_runs_show(capsys: pytest.CaptureFixture[str]) -> None:
    @step
    def one() -> int:
        return 1

    @pipeline(dynamic=True)
    def shown() -> None:
        one()

    shown()
    run = shown()
    capsys.readouterr()
    assert cli_main(["runs", "show", run.name]) == 0
    assert "cached" in capsys.readouterr().out


def test_enable_cache_false_on_the_step_reruns_the_body() -> None:
    calls: list[str] = []

    @step(enable_cache=False)
    def uncached() -> int:
        calls.append("x")
        return 1

    @pipeline(dynamic=True)
    def p() -> None:
        uncached()

    p()
    run = p()
    assert calls == ["x", "x"]
    assert run.steps["uncached"].status.value == "completed"
    assert run.steps["uncached"].cached_from is None


def test_pipeline_level_off_and_step_level_override() -> None:
    calls: list[str] = []

    @step
    def follows_pipeline() -> int:
        calls.append("follows")
        return 1

    @step(enable_cache=True)
    def forces_cache() -> int:
        calls.append("forces")
        return 2

    @pipeline(dynamic=True, enable_cache=False)
    def p() -> None:
        follows_pipeline()
        forces_cache()

    p()
    run = p()
    assert calls == ["follows", "forces", "follows"]
    assert run.steps["follows_pipeline"].status.value == "completed"
    assert run.steps["forces_cache"].status.value == "cached"


def test_configure_and_with_options_switch_caching() -> None:
    calls: list[str] = []

    @step
    def s() -> int:
        calls.append("s")
        return 1

    @pipeline(dynamic=True)
    def p() -> None:
        s()

    p()
    s.configure(enable_cache=False)
    assert p().steps["s"].status.value == "completed"
    s.configure(enable_cache=True)
    assert p().steps["s"].status.value == "cached"
    p.configure(enable_cache=False)
    assert p().steps["s"].status.value == "cached"  # the step's own True wins
    assert len(calls) == 2

    @step
    def t() -> int:
        calls.append("t")
        return 1

    @pipeline(dynamic=True)
    def q() -> None:
        t()
        t.with_options(enable_cache=False)()

    q()
    run = q()
    assert run.steps["t"].status.value == "cached"
    assert run.steps["t_2"].status.value == "completed"
    assert calls.count("t") == 3  # t, t_2 in run 1; only t_2 in run 2

    @pipeline(dynamic=True)
    def r() -> None:
        t()

    r()
    assert r.with_options(enable_cache=False)().steps["t"].status.value == "completed"
    assert r().steps["t"].status.value == "cached"


def test_a_changed_parameter_or_input_content_misses_same_content_hits() -> None:
    calls: list[Any] = []

    @step
    def source(n: int) -> list[int]:
        return list(range(n))

    @step
    def summed(xs: list[int]) -> int:
        calls.append(xs)
        return sum(xs)

    @pipeline(dynamic=True)
    def p(n: int) -> None:
        summed(source.with_options(enable_cache=False)(n))

    p(3)
    assert p(3).steps["summed"].status.value == "cached"  # new artifact, same content
    run = p(4)
    assert run.steps["summed"].status.value == "completed"
    assert calls == [[0, 1, 2], [0, 1, 2, 3]]

    @step
    def scaled(x: int, factor: int = 2) -> int:
        calls.append(("scaled", x, factor))
        return x * factor

    @pipeline(dynamic=True)
    def q(factor: int) -> None:
        scaled(5, factor=factor)

    q(2)
    assert q(2).steps["scaled"].status.value == "cached"
    assert q(3).steps["scaled"].status.value == "completed"
    assert calls[2:] == [("scaled", 5, 2), ("scaled", 5, 3)]


def test_changed_step_code_misses() -> None:
    calls: list[str] = []

    @step(name="versioned")
    def v1() -> int:
        calls.append("v1")
        return 1

    @step(name="versioned")
    def v2() -> int:
        calls.append("v2")
        return 2

    current = {"step": v1}

    @pipeline(dynamic=True)
    def p() -> None:
        current["step"]()

    p()
    assert p().steps["versioned"].status.value == "cached"
    current["step"] = v2
    run = p()
    assert run.steps["versioned"].status.value == "completed"
    assert run.steps["versioned"].output.load() == 2
    assert calls == ["v1", "v2"]


class _ReprMaterializer(Materializer):
    name = "test-repr"
    handles = (int,)

    def save(self, value: Any) -> bytes:
        return repr(value).encode()

    def load(self, data: bytes, data_type: str) -> Any:
        return int(data.decode())


def test_changed_output_materializer_misses() -> None:
    calls: list[str] = []

    @step
    def s() -> int:
        calls.append("s")
        return 7

    @pipeline(dynamic=True)
    def p() -> None:
        s()

    p()
    s.configure(output_materializers=_ReprMaterializer)
    run = p()
    assert run.steps["s"].status.value == "completed"
    assert run.steps["s"].output.materializer == "test-repr"
    assert run.steps["s"].output.load() == 7
    assert p().steps["s"].status.value == "cached"
    assert calls == ["s", "s"]


def test_result_affecting_config_is_in_the_key() -> None:
    @step
    def s() -> int:
        return 1

    @pipeline(dynamic=True)
    def p() -> None:
        s()

    p()
    s.configure(extra={"model": "b"})
    assert p().steps["s"].status.value == "completed"
    assert p().steps["s"].status.value == "cached"


def test_failed_step_is_never_a_cache_source() -> None:
    attempts: list[int] = []

    @step
    def flaky() -> int:
        attempts.append(1)
        if len(attempts) == 1:
            raise RuntimeError("first time fails")
        return 1

    @pipeline(dynamic=True)
    def p() -> None:
        flaky()

    with pytest.raises(RuntimeError, match="first time fails"):
        p()
    assert p().steps["flaky"].status.value == "completed"
    assert p().steps["flaky"].status.value == "cached"
    assert len(attempts) == 2


# -- CachePolicy -------------------------------------------------------------------------


def test_policy_without_step_code_hits_after_a_code_change() -> None:
    policy = CachePolicy(include_step_code=False)

    @step(name="codeless", cache_policy=policy)
    def a() -> int:
        return 1

    @step(name="codeless", cache_policy=policy)
    def b() -> int:
        raise AssertionError("must not run: cached")

    current = {"step": a}

    @pipeline(dynamic=True)
    def p() -> None:
        current["step"]()

    p()
    current["step"] = b
    run = p()
    assert run.steps["codeless"].status.value == "cached"
    assert run.steps["codeless"].output.load() == 1


def test_policy_without_parameters_and_with_ignored_inputs() -> None:
    calls: list[Any] = []

    @step(cache_policy=CachePolicy(include_step_parameters=False))
    def no_params(x: int) -> int:
        calls.append(("no_params", x))
        return x

    @step(cache_policy=CachePolicy(ignored_inputs=("verbose",)))
    def ignores(x: int, verbose: bool) -> int:
        calls.append(("ignores", x, verbose))
        return x

    @pipeline(dynamic=True)
    def p(x: int, verbose: bool) -> None:
        no_params(x)
        ignores(x, verbose)

    p(1, False)
    run = p(2, True)
    assert run.steps["no_params"].status.value == "cached"
    assert run.steps["no_params"].output.load() == 1  # the stored result, by design
    assert run.steps["ignores"].status.value == "completed"  # x changed
    assert p(2, False).steps["ignores"].status.value == "cached"  # only verbose changed
    assert calls == [("no_params", 1), ("ignores", 1, False), ("ignores", 2, True)]


def test_policy_without_artifact_values_ignores_input_content() -> None:
    @step(enable_cache=False)
    def source(n: int) -> int:
        return n

    @step(cache_policy=CachePolicy(include_artifact_values=False))
    def blind(v: int) -> int:
        return v

    @pipeline(dynamic=True)
    def p(n: int) -> None:
        blind(source(n))

    p(1)
    run = p(2)
    assert run.steps["blind"].status.value == "cached"
    assert run.steps["blind"].output.load() == 1


class _ShiftedTime:
    """The ``time`` module as the engine sees it, with ``time()`` moved forward on demand:
    cache expiry is tested by moving the clock, not by sleeping past a short expiry."""

    def __init__(self) -> None:
        self.offset = 0.0

    def time(self) -> float:
        return time.time() + self.offset

    def __getattr__(self, name: str) -> Any:
        return getattr(time, name)


def test_policy_expires_after_and_max_age(monkeypatch: pytest.MonkeyPatch) -> None:
    from dynpipe.engine import execution

    clock = _ShiftedTime()
    monkeypatch.setattr(execution, "time", clock)  # where the engine asks how old a hit may be

    @step(cache_policy=CachePolicy(expires_after=3600))
    def short_lived() -> int:
        return 1

    @step(cache_policy=CachePolicy(max_age_days=1))
    def long_lived() -> int:
        return 2

    @pipeline(dynamic=True)
    def p() -> None:
        short_lived()
        long_lived()

    p()
    run = p()
    assert run.steps["short_lived"].status.value == "cached"
    clock.offset = 2 * 3600  # past the hour, within the day
    run = p()
    assert run.steps["short_lived"].status.value == "completed"
    assert run.steps["long_lived"].status.value == "cached"
    assert CachePolicy(max_age_days=1, expires_after=10).max_age_seconds == 10


def test_policy_cache_func_adds_to_the_key() -> None:
    version = {"v": "1"}

    @step(cache_policy=CachePolicy(cache_func=lambda: version["v"]))
    def s() -> int:
        return 1

    @pipeline(dynamic=True)
    def p() -> None:
        s()

    p()
    assert p().steps["s"].status.value == "cached"
    version["v"] = "2"
    assert p().steps["s"].status.value == "completed"


def test_pipeline_level_cache_policy_applies_and_step_policy_wins() -> None:
    calls: list[str] = []

    @step
    def follows(x: int) -> int:
        calls.append("follows")
        return x

    @step(cache_policy=CachePolicy())
    def own(x: int) -> int:
        calls.append("own")
        return x

    @pipeline(dynamic=True, cache_policy=CachePolicy(include_step_parameters=False))
    def p(x: int) -> None:
        follows(x)
        own(x)

    p(1)
    run = p(2)
    assert run.steps["follows"].status.value == "cached"
    assert run.steps["own"].status.value == "completed"
    assert calls == ["follows", "own", "own"]


def test_cached_submitted_steps_and_fan_in() -> None:
    calls: list[int] = []

    @step
    def sq(i: int) -> int:
        calls.append(i)
        return i * i

    @step
    def total(xs: list[int]) -> int:
        return sum(xs)

    @pipeline(dynamic=True)
    def p() -> None:
        total([sq.submit(i) for i in range(3)])

    first = p()
    second = p()
    assert sorted(calls) == [0, 1, 2]
    assert {s.status.value for s in second.steps.values()} == {"cached"}
    assert second.steps["total"].output.load() == first.steps["total"].output.load() == 5


def test_configure_between_calls_in_the_same_run_takes_effect() -> None:
    calls: list[str] = []

    @step
    def s() -> int:
        calls.append("s")
        return 1

    @pipeline(dynamic=True)
    def warm() -> None:
        s()

    warm()

    @pipeline(dynamic=True)
    def p() -> None:
        s()
        s.configure(enable_cache=False)
        s()
        s.configure(enable_cache=True)

    run = p()
    assert [run.steps[i].status.value for i in ("s", "s_2")] == ["cached", "completed"]
    assert calls == ["s", "s"]


def test_a_cache_entry_whose_artifact_file_is_gone_is_a_miss(store_home: Any) -> None:
    payload = "x" * 20_000  # large enough to be kept as a file, not a database row

    @step
    def s() -> str:
        return payload

    @pipeline(dynamic=True)
    def p() -> None:
        s()

    first = p()
    path = store_home / first.steps["s"].output.uri
    assert path.is_file()
    path.unlink()
    run = p()
    assert run.steps["s"].status.value == "completed"
    assert run.steps["s"].output.load() == payload


def test_a_cached_step_keeps_its_edge_to_the_step_feeding_it() -> None:
    @step
    def source(x: int) -> int:
        return x

    @step
    def consumer(v: int) -> int:
        return v * 2

    @pipeline(dynamic=True)
    def lineage() -> None:
        consumer(source(1))

    first, second = lineage(), lineage()
    assert first.steps["consumer"].upstream == ["source"]
    assert second.steps["consumer"].status.value == "cached"
    assert second.steps["consumer"].upstream == ["source"]


_NO_SOURCE_SCRIPT = """
ns = {}
exec('''
from dynpipe import step, pipeline
@step
def comp(n: int) -> list:
    return [i * 2 for i in range(n)]
@pipeline(dynamic=True)
def p():
    comp(3)
''', ns)
print(ns["p"]().steps["comp"].status.value)
"""


def test_a_step_without_source_code_hits_the_cache_in_a_new_process(tmp_path: Path) -> None:

    statuses = [
        subprocess.run(
            [sys.executable, "-c", _NO_SOURCE_SCRIPT], capture_output=True, text=True, timeout=60, cwd=tmp_path,
        ).stdout.strip()
        for _ in range(2)
    ]
    assert statuses == ["completed", "cached"]
