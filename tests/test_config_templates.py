"""Config templates: ``@pipeline(depends_on=[...])`` + ``with_options(config_path=...)``."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from dynpipe import Client, ConfigError, pipeline, step

printed: list[str] = []


@step
def some_step(arg: int) -> None:
    printed.append(f"arg is {arg}")


@step
def scaled(x: int, factor: int = 1) -> int:
    return x * factor


def _write(tmp_path: Path, text: str, name: str = "config.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text).lstrip())
    return path


def test_spec_example_step_parameters_from_yaml(tmp_path: Path) -> None:
    printed.clear()
    _write(tmp_path, """
        steps:
          some_step:
            parameters:
              arg: 3
    """)

    @pipeline(dynamic=True, depends_on=[some_step])
    def dynamic_pipeline() -> None:
        some_step()

    run = dynamic_pipeline.with_options(config_path="config.yaml")()
    assert printed == ["arg is 3"]
    assert run.steps["some_step"].parameters == {"arg": 3}


def test_pipeline_parameters_run_name_mode_cache_and_retry(tmp_path: Path) -> None:
    tries = [0]

    @step
    def flaky(x: int) -> int:
        tries[0] += 1
        if tries[0] == 1:
            raise RuntimeError("once")
        return x

    path = _write(tmp_path, """
        run_name: nightly-{run_id}
        execution_mode: continue_on_failure
        parameters:
          n: 4
        steps:
          scaled:
            parameters:
              factor: 10
            enable_cache: false
          flaky:
            retry:
              max_retries: 2
              delay: 0
    """)

    @pipeline(dynamic=True, depends_on=[scaled, flaky])
    def p(n: int) -> None:
        flaky(scaled(n))

    run = p.with_options(config_path=str(path))()
    assert run.name.startswith("nightly-") and len(run.name) == len("nightly-") + 8
    assert run.config["execution_mode"] == "continue_on_failure"
    assert run.config["parameters"] == {"n": 4}
    assert run.steps["scaled"].output.load() == 40
    assert run.steps["flaky"].attempts == 2
    again = p.with_options(config_path=str(path))()
    assert again.steps["scaled"].status.value == "completed"  # enable_cache: false
    assert again.steps["flaky"].status.value == "cached"  # not switched off


def test_code_arguments_override_yaml_pipeline_parameters(tmp_path: Path) -> None:
    _write(tmp_path, "parameters:\n  n: 4\n")

    @pipeline(dynamic=True, depends_on=[scaled])
    def p(n: int) -> None:
        scaled(n)

    run = p.with_options(config_path="config.yaml")(n=6)
    assert run.steps["scaled"].output.load() == 6


def test_unknown_step_name_is_an_error_naming_the_key_file_and_line(tmp_path: Path) -> None:
    path = _write(tmp_path, """
        steps:
          some_step:
            parameters:
              arg: 1
          not_a_step:
            parameters:
              arg: 2
    """)

    @pipeline(dynamic=True, depends_on=[some_step])
    def p() -> None:
        some_step()

    with pytest.raises(ConfigError) as info:
        p.with_options(config_path=str(path))
    msg = str(info.value)
    assert "not_a_step" in msg and str(path) in msg and "line 5" in msg
    assert "some_step" in msg  # what is configurable


def test_steps_without_depends_on_are_not_configurable(tmp_path: Path) -> None:
    _write(tmp_path, "steps:\n  some_step:\n    parameters:\n      arg: 1\n")

    @pipeline(dynamic=True)
    def p() -> None:
        some_step()

    with pytest.raises(ConfigError, match="depends_on"):
        p.with_options(config_path="config.yaml")


@pytest.mark.parametrize(
    ("text", "key", "line"),
    [
        ("run_name: x\nexecution_modus: fail_fast\n", "execution_modus", 2),
        (
            "steps:\n  some_step:\n    enable_cache: true\n    paramters:\n      arg: 1\n",
            "steps.some_step.paramters", 4,
        ),
        ("steps:\n  some_step:\n    retry:\n      max_retries: -2\n", "steps.some_step.retry.max_retries", 4),
        ("execution_mode: sometimes\n", "execution_mode", 1),
    ],
)
def test_unknown_or_invalid_key_is_an_error_naming_key_file_and_line(
    tmp_path: Path, text: str, key: str, line: int
) -> None:
    path = _write(tmp_path, text)

    @pipeline(dynamic=True, depends_on=[some_step])
    def p() -> None:
        some_step()

    with pytest.raises(ConfigError) as info:
        p.with_options(config_path=str(path))
    msg = str(info.value)
    assert key in msg and str(path) in msg and f"line {line}" in msg


def test_malformed_yaml_names_the_file_and_line(tmp_path: Path) -> None:
    path = _write(tmp_path, "steps:\n  some_step:\n    parameters: [1, 2\n  other: 3\n")

    @pipeline(dynamic=True, depends_on=[some_step])
    def p() -> None:
        some_step()

    with pytest.raises(ConfigError) as info:
        p.with_options(config_path=str(path))
    msg = str(info.value)
    assert "malformed YAML" in msg and str(path) in msg and "line" in msg


def test_missing_file_and_non_mapping_file(tmp_path: Path) -> None:
    @pipeline(dynamic=True)
    def p() -> None:
        pass

    with pytest.raises(ConfigError, match="cannot read config file .*nope.yaml"):
        p.with_options(config_path=str(tmp_path / "nope.yaml"))
    path = _write(tmp_path, "- a\n- b\n", "list.yaml")
    with pytest.raises(ConfigError, match="list.yaml must hold a mapping"):
        p.with_options(config_path=str(path))


def test_parameter_in_code_and_yaml_conflict_is_an_error(tmp_path: Path) -> None:
    _write(tmp_path, "steps:\n  some_step:\n    parameters:\n      arg: 3\n")

    @pipeline(dynamic=True, depends_on=[some_step])
    def p() -> None:
        some_step(arg=4)

    with pytest.raises(ConfigError, match="arg.*both in code"):
        p.with_options(config_path="config.yaml")()
    assert Client().get_pipeline("p").last_run.status.value == "failed"


def test_yaml_parameter_naming_no_step_input_is_an_error(tmp_path: Path) -> None:
    _write(tmp_path, "steps:\n  some_step:\n    parameters:\n      argh: 3\n")

    @pipeline(dynamic=True, depends_on=[some_step])
    def p() -> None:
        some_step(arg=1)

    with pytest.raises(ConfigError, match="'argh' is not an input"):
        p.with_options(config_path="config.yaml")()


def test_yaml_pipeline_parameter_naming_no_pipeline_parameter_is_an_error(tmp_path: Path) -> None:
    _write(tmp_path, "parameters:\n  m: 3\n")

    @pipeline(dynamic=True)
    def p(n: int = 1) -> None:
        pass

    with pytest.raises(ConfigError, match="'m' is not a parameter"):
        p.with_options(config_path="config.yaml")()


def test_synchronous_false_in_yaml_runs_in_the_background(tmp_path: Path) -> None:
    _write(tmp_path, "synchronous: false\n")

    @step
    def one() -> int:
        return 1

    @pipeline(dynamic=True)
    def p() -> None:
        one()

    future = p.with_options(config_path="config.yaml")()
    run = future.result(timeout=30)
    assert run.status.value == "completed"


def test_pipeline_level_enable_cache_and_retry_from_yaml(tmp_path: Path) -> None:
    tries = [0]

    @step
    def flaky() -> int:
        tries[0] += 1
        if tries[0] == 1:
            raise RuntimeError("once")
        return 1

    _write(tmp_path, "enable_cache: false\nretry:\n  max_retries: 1\n")

    @pipeline(dynamic=True)
    def p() -> None:
        flaky()

    configured = p.with_options(config_path="config.yaml")
    first = configured()
    second = configured()
    assert first.steps["flaky"].attempts == 2
    assert second.steps["flaky"].status.value == "completed"  # caching off for the run
    assert tries[0] == 3
