"""Config templates: ``@pipeline(depends_on=[...])`` + ``with_options(config_path=...)``."""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

import pytest
import yaml

from dynpipe import Client, ConfigError, PipelineConfig, pipeline, step
from dynpipe.config_yaml import load_config_file

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


BILLION_LAUGHS = "  a: &a [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"  {chr(98 + i)}: &{chr(98 + i)} [{', '.join(['*' + chr(97 + i)] * 10)}]\n" for i in range(8)
)


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (b"run_name: \xff\xfe nightly\n", r"line 1: not UTF-8"),  # was UnicodeDecodeError, file not named
        (b"parameters: {}\n\n\x80\x81: 1\n", r"line 3: not UTF-8"),
        (b"1: 2\n", r"line 1: 1\b.*"),  # was TypeError: keywords must be strings
        (b"? [a, b]\n: 1\n", r"unhashable"),
        (b"run_name: 'a{'\n", r"line 1: run_name"),  # was ValueError: Single '{' encountered (at run time)
        (b"parameters:\n  when: 2001-13-45\n", r"line 2.*month"),  # was a raw ValueError from the timestamp
        (b"parameters:\n  n: " + b"9" * 5000 + b"\n", r"line 2.*digits"),  # was a raw ValueError (int limit)
        (b"parameters:\n  loop: &x [*x]\n", r"line 2.*recursive"),
        (b"parameters:\n" + BILLION_LAUGHS.encode(), r"expands to more than"),
        (b"parameters:\n  deep: " + b"[" * 5000 + b"]" * 5000 + b"\n", r"line 2.*nested"),
        (b"parameters: {a: 1}\n---\nparameters: {b: 2}\n", r"line 2.*single document"),
        (b"run_name: a\x00b\n", r"line 1.*special characters"),
        (b"parameters: !!python/object:os.system {}\n", r"line 1.*python/object"),
        (b"tags: [a, [b]]\n", r"line 1: tags.1"),
    ],
)
def test_malformed_config_files_are_config_errors_naming_the_file(
    tmp_path: Path, content: bytes, expected: str
) -> None:
    path = tmp_path / "bad.yaml"
    path.write_bytes(content)

    @pipeline(dynamic=True, depends_on=[some_step])
    def p() -> None:
        some_step()

    with pytest.raises(ConfigError) as info:
        p.with_options(config_path=str(path))
    msg = str(info.value)
    assert msg.startswith(str(path)) or f" {path}" in msg
    assert re.search(expected, msg), msg


@pytest.mark.parametrize("key", PipelineConfig.yaml_keys)
def test_a_yaml_key_is_checked_like_the_config_field_it_sets(tmp_path: Path, key: str) -> None:
    """The file schema comes from PipelineConfig: a wrong value gets the model's own message."""
    bad: object = {"x": [1]} if key in ("run_name", "enable_cache", "synchronous", "enable_step_logs") else 7
    with pytest.raises(ConfigError) as expected:
        PipelineConfig().merged(**{key: bad})
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump({key: bad}))
    with pytest.raises(ConfigError) as info:
        load_config_file(path, None)
    model_message = str(expected.value).split(f"{key}: ", 1)[1]
    assert str(info.value) == f"{path}, line 1: {key}: {model_message}"


def test_null_leaves_a_value_and_code_only_fields_are_unknown_keys(tmp_path: Path) -> None:
    _write(
        tmp_path,
        "enable_cache: null\nparameters: null\nsteps:\n  some_step:\n    retry: null\n    parameters: null\n",
    )

    @pipeline(dynamic=True, enable_cache=False, depends_on=[some_step.with_options(retry={"max_retries": 2})])
    def p() -> None:
        some_step()

    config = p.with_options(config_path="config.yaml").config
    assert config.enable_cache is False
    for code_only in ("on_failure", "dynamic", "model", "name", "config_path"):
        (tmp_path / "code.yaml").write_text(f"{code_only}: x\n")
        with pytest.raises(ConfigError, match=rf"code.yaml, line 1: {code_only}: unknown key"):
            p.with_options(config_path="code.yaml")
    (tmp_path / "step.yaml").write_text("steps:\n  some_step:\n    on_success: x\n")
    with pytest.raises(ConfigError, match=r"line 3: steps.some_step.on_success: unknown key"):
        p.with_options(config_path="step.yaml")
