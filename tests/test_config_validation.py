"""Config values checked where they are written: retry limits, run-name templates, resource sizes."""

from __future__ import annotations

import math
import textwrap
from pathlib import Path

import pytest

from dynpipe import (
    ConfigError,
    PipelineConfig,
    ResourceSettings,
    StepRetryConfig,
    pipeline,
    step,
)
from dynpipe.config import MAX_RETRIES, MAX_RETRY_BACKOFF, MAX_RETRY_WAIT


@step(enable_cache=False)
def ok_step() -> int:
    return 1


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("delay", math.inf),
        ("delay", 1e300),
        ("delay", math.nan),
        ("delay", -1.0),
        ("backoff", math.inf),
        ("backoff", 1e300),
        ("backoff", math.nan),
        ("max_retries", 10**30),
        ("max_retries", -1),
    ],
)
def test_a_retry_value_out_of_range_is_a_config_error_naming_the_field(field: str, value: float) -> None:
    with pytest.raises(ConfigError, match=rf"retry.*\b{field}\b"):
        StepRetryConfig(**{field: value})


def test_a_huge_retry_delay_given_to_a_step_fails_when_written_not_when_the_run_waits() -> None:
    # Before: the step failed with a raw OverflowError in the wait and the run never finished.
    with pytest.raises(ConfigError, match="delay"):

        @step(retry={"max_retries": 1, "delay": 1e300})
        def flaky() -> int:
            raise RuntimeError("always")

    with pytest.raises(ConfigError, match="delay"):

        @pipeline(dynamic=True, retry={"delay": math.inf})  # type: ignore[arg-type]
        def p() -> None:
            ok_step()


def test_a_retry_delay_in_yaml_out_of_range_names_file_key_and_line(tmp_path: Path) -> None:
    path = tmp_path / "retry.yaml"
    path.write_text("steps:\n  ok_step:\n    retry:\n      max_retries: 2\n      delay: .inf\n")

    @pipeline(dynamic=True, depends_on=[ok_step])
    def p() -> None:
        ok_step()

    with pytest.raises(ConfigError) as info:
        p.with_options(config_path=str(path))
    msg = str(info.value)
    assert str(path) in msg and "steps.ok_step.retry.delay" in msg and "line 5" in msg


def test_wait_before_never_overflows_and_is_capped_at_the_documented_maximum() -> None:
    biggest = StepRetryConfig(max_retries=MAX_RETRIES, delay=MAX_RETRY_WAIT, backoff=MAX_RETRY_BACKOFF)
    waits = [biggest.wait_before(n) for n in (1, 2, MAX_RETRIES, MAX_RETRIES + 1, 10**400)]
    assert waits == [MAX_RETRY_WAIT] * 5
    growing = StepRetryConfig(max_retries=MAX_RETRIES, delay=1, backoff=MAX_RETRY_BACKOFF)
    assert growing.wait_before(1) == 1 and growing.wait_before(2) == MAX_RETRY_BACKOFF
    assert growing.wait_before(MAX_RETRIES) == MAX_RETRY_WAIT  # 100**99 s would overflow a timeout
    assert StepRetryConfig(delay=3, backoff=0.5).wait_before(4) == 3  # backoff < 1 means none
    assert StepRetryConfig(delay=0, backoff=MAX_RETRY_BACKOFF).wait_before(50) == 0


@pytest.mark.parametrize(
    "template",
    ["nightly-{", "run-}", "{unknown}", "{}", "{0}", "{run_id.upper}", "{run_id[40]}", "{date:d}", "{time!z}",
     "{date:{time}}"],
)
def test_a_bad_run_name_template_is_a_config_error_when_configured(template: str) -> None:
    with pytest.raises(ConfigError, match="run_name"):

        @pipeline(dynamic=True, run_name=template)
        def p() -> None:
            ok_step()


def test_good_run_name_templates_still_run() -> None:
    @pipeline(dynamic=True, run_name="nightly-{pipeline_name}-{run_id!s:>8}-{{literal}}")
    def p() -> None:
        ok_step()

    run = p()
    assert run.status.value == "completed"
    assert run.name.startswith("nightly-p-") and run.name.endswith("-{literal}")


def test_a_memory_size_too_large_to_count_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="memory"):
        ResourceSettings(memory="9" * 400 + "GiB")
    assert ResourceSettings(memory="4GiB").memory_bytes == 4 * 2**30


def test_a_run_name_in_yaml_with_a_stray_brace_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "run.yaml"
    path.write_text(textwrap.dedent("""\
        parameters: {}
        run_name: "nightly-{"
    """))
    with pytest.raises(ConfigError) as info:
        PipelineConfig().merged(**_load(path))
    assert str(path) in str(info.value) and "run_name" in str(info.value) and "line 2" in str(info.value)


def _load(path: Path) -> dict[str, object]:
    from dynpipe.config_yaml import load_config_file

    return load_config_file(path, None)
