"""Property-based fuzzing of YAML config templates with hypothesis.

Property: configuring a pipeline from a generated file either succeeds (and the result is
usable: its run-name template formats, its retry waits are finite and capped) or raises a
``ConfigError`` whose message names the file. Never any other exception, never a hang: each
case runs in a worker thread with a deadline.

Each run of the suite loads 1,450 generated files in a few seconds: 200 examples of five
files, 150 step sections, 150 pairs of retry and resources sections. For a larger opt-in
run, set ``DYNPIPE_FUZZ_EXAMPLES`` to the number of hypothesis examples per test, e.g.
``DYNPIPE_FUZZ_EXAMPLES=5000 python -m pytest tests/test_config_fuzz.py`` (40,000 files).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dynpipe import ConfigError, PipelineConfig, StepConfig, pipeline, step
from dynpipe.config import MAX_RETRY_WAIT
from dynpipe.config_yaml import load_config_file
from dynpipe.engine.context import format_run_name

CASE_DEADLINE = 20.0  # seconds for one file; generous because the machine is shared


def _examples(default: int) -> int:
    return int(os.environ.get("DYNPIPE_FUZZ_EXAMPLES", default))


def _fuzz_settings(default: int) -> settings:
    return settings(
        max_examples=_examples(default),
        deadline=None,  # the hang guard below is the deadline; hypothesis' own is timing-flaky under load
        database=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large],
    )


@step
def train(x: int = 1, lr: float = 0.1) -> int:
    return x


@step
def evaluate(model: int = 0) -> int:
    return model


@pipeline(dynamic=True, depends_on=[train, evaluate])
def fuzzed() -> None:
    evaluate(train())


# -- strategies ----------------------------------------------------------------------

KNOWN_KEYS = [*PipelineConfig.yaml_keys, *StepConfig.yaml_keys, "name", "on_failure", "dynamic", "model",
              "resources", "cache_policy", "max_retries", "delay", "backoff", "memory", "cpu_count", "orchestrator",
              "train", "evaluate", "x", "lr", "nope"]

huge_numbers = st.sampled_from(
    [10**400, -(10**400), 1e308, -1e308, float("inf"), float("-inf"), float("nan"), 2**63, -(2**63), 0.0, -0.0, 1e-320]
)
format_strings = st.sampled_from(
    ["{", "}", "{}", "{0}", "{run_id}", "{date}-{time}", "{run_id.x}", "{run_id[99]}", "{date:d}", "{time!z}",
     "{{ok}}", "{date:{time}}", "{pipeline_name:>9999999999999999999}", "%(x)s", "a{b}c", "{run_id!r:^20}"]
)
texts = st.text(max_size=12) | format_strings | st.sampled_from(
    ["true", "null", "~", ".inf", "1e300", "2001-13-45", "0x1F", "-.nan", "fail_fast", "Continue-On-Failure", "512MB",
     "9" * 400 + "GiB", "4GiB", "isolated", "inline", "yes", "no"]
)
scalars = st.none() | st.booleans() | st.integers() | huge_numbers | st.floats() | texts | st.binary(max_size=8)
keys = st.sampled_from(KNOWN_KEYS) | st.text(max_size=8) | st.integers() | st.booleans() | st.none()


def _nested(values: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.recursive(
        values,
        lambda children: st.lists(children, max_size=3) | st.dictionaries(keys, children, max_size=3),
        max_leaves=8,
    )


garbage = _nested(scalars)


def _mostly(valid: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """Near-valid values far more often than garbage, so many files get past the first check."""
    return _rarely(valid, scalars | garbage)


def _rarely(usual: st.SearchStrategy[Any], rare: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """``rare`` one time in eight (hypothesis draws small integers most, so 7 is the rare one)."""
    return st.integers(0, 7).flatmap(lambda i: rare if i == 7 else usual)


numbers = st.integers(-3, 150) | st.floats() | huge_numbers | st.sampled_from([86400, 86400.5, 100, 100.01, 101])
flags = st.booleans() | st.sampled_from(["yes", "off", 1, 0])
unknown = st.fixed_dictionaries({}, optional={"nope": garbage, "name": texts, "on_failure": texts})


def _section(fields: dict[str, st.SearchStrategy[Any]]) -> st.SearchStrategy[Any]:
    """A mapping with any subset of ``fields``, sometimes an unknown key too; now and then pure garbage."""
    section = st.builds(lambda known, extra: {**known, **extra}, st.fixed_dictionaries({}, optional=fields),
                        _rarely(st.just({}), unknown))
    return _rarely(section, garbage)


retry_configs = _section({"max_retries": _mostly(numbers), "delay": _mostly(numbers), "backoff": _mostly(numbers)})
resources = _section({
    "memory": _mostly(st.sampled_from(["512MB", "4GiB", "1.5T", "9" * 400 + "GiB", "1e400B", "-1MB", "0"])),
    "cpu_count": _mostly(numbers),
    "gpu_count": _mostly(numbers),
})
values = st.dictionaries(_rarely(st.sampled_from(["x", "lr", "model", "y"]) | st.text(max_size=6), keys), garbage,
                         max_size=3)
step_configs = _section({
    "parameters": _mostly(values),
    "enable_cache": _mostly(flags),
    "runtime": _mostly(st.sampled_from(["inline", "isolated", "kubernetes"])),
    "retry": retry_configs,
    "settings": _mostly(st.fixed_dictionaries({}, optional={"resources": resources, "orchestrator": garbage})),
    "enable_step_logs": _mostly(flags),
    "extra": _mostly(values),
})
pipeline_configs = _section({
    "parameters": _mostly(values),
    "steps": _mostly(st.dictionaries(st.sampled_from(["train", "evaluate", "other"]) | keys, step_configs, max_size=3)),
    "run_name": _mostly(format_strings | texts),
    "execution_mode": _mostly(st.sampled_from(["fail_fast", "stop_on_failure", "continue-on-failure", "sometimes"])),
    "enable_cache": _mostly(flags),
    "synchronous": _mostly(flags),
    "retry": retry_configs,
    "tags": _mostly(st.lists(texts, max_size=3)),
    "settings": _mostly(st.fixed_dictionaries({}, optional={"orchestrator": _section({"synchronous": flags})})),
    "extra": _mostly(values),
    "enable_step_logs": _mostly(flags),
})


def _dump(data: Any) -> str:
    """YAML text for ``data``; values yaml cannot write become their repr (still garbage, still YAML)."""
    try:
        return yaml.safe_dump(data, allow_unicode=True, default_flow_style=None, sort_keys=False)
    except (yaml.YAMLError, ValueError, TypeError, RecursionError):
        return yaml.safe_dump(repr(data))


SNIPPETS = [
    "parameters:\n  loop: &x [*x]\n",
    ("a: &a [x, x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a, *a]\n"
     "c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b, *b]\nd: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c, *c]\n"
     "e: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d, *d]\nparameters: {p: [*e, *e, *e, *e, *e, *e, *e, *e, *e, *e]}\n"),
    "parameters:\n  deep: " + "[" * 30000 + "]" * 30000 + "\n",
    "parameters:\n  deep: " + "{a: " * 70 + "1" + "}" * 70 + "\n",
    "parameters: {a: 1}\n---\nparameters: {b: 2}\n",
    "parameters: !!python/object/apply:os.system ['true']\n",
    "parameters: {when: 2001-13-45, at: 2001-02-29 25:61:61}\n",
    "parameters: {n: " + "9" * 5000 + "}\n",
    "parameters: {n: 0b" + "1" * 20000 + "}\n",
    "parameters: {n: 1:2:3:4:5:6:7:8:9:10}\n",
    "parameters: {b: !!binary 'not base64!!'}\n",
    "parameters: !!set {a, b}\n",
    "? [a, b]\n: 1\n",
    "run_name: {a: 1}\n",
    "run_name: nightly-{\n",
    "steps:\n  train:\n    retry: {delay: .inf, backoff: 1e300, max_retries: 1e400}\n",
    "steps:\n  train:\n    settings:\n      resources: {memory: '" + "9" * 400 + "GiB', cpu_count: .nan}\n",
    "%YAML 1.1\n%YAML 1.1\n---\na: 1\n",
    "&a a: *a\n",
    "*unknown\n",
    "key: 'unterminated\n",
    "\t- tab\n",
    "",
    "~\n",
    "- a\n- b\n",
]


@st.composite
def config_files(draw: st.DrawFn) -> list[bytes]:
    """Four files from one drawn structure: as YAML, spliced with a snippet, re-encoded, byte-mutated.

    Deriving several files from one draw keeps generation (the slow part) cheap per file.
    """
    text = _dump(draw(pipeline_configs))
    spliced = text + draw(st.sampled_from(SNIPPETS))
    encoding = draw(st.sampled_from(["utf-16", "utf-32", "latin-1", "cp1252", "utf-8-sig", "utf-8"]))
    mutated = bytearray(spliced.encode())
    for _ in range(draw(st.integers(1, 3))):
        pos = draw(st.integers(0, len(mutated)))
        mutated[pos:pos + draw(st.integers(0, 3))] = draw(st.binary(max_size=4))
    raw = draw(st.binary(max_size=60) | st.sampled_from(SNIPPETS).map(str.encode))
    return [text.encode(), spliced.encode(), text.encode(encoding, "replace"), bytes(mutated), raw]


# -- the property --------------------------------------------------------------------


@pytest.fixture(scope="module")
def guard() -> Iterator[ThreadPoolExecutor]:
    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="config-fuzz")
    yield pool
    pool.shutdown(wait=False, cancel_futures=True)


def _configure(path: Path) -> None:
    """What a user does with a config file: ``with_options(config_path=...)``, then run it."""
    configured = fuzzed.with_options(config_path=str(path))
    config = configured.config
    if config.run_name:
        format_run_name(config.run_name, "fuzzed", "0" * 32)
    for retry in [config.retry, *(s.retry for s in config.steps.values())]:
        if retry is not None:
            waits = [retry.wait_before(n) for n in range(1, retry.max_retries + 2)]
            assert all(0 <= w <= MAX_RETRY_WAIT for w in waits), (retry, waits)
    for cfg in config.steps.values():
        if cfg.resources is not None:
            cfg.resources.memory_bytes  # noqa: B018 - must be computable


def _check(path: Path, content: bytes, pool: ThreadPoolExecutor) -> None:
    path.write_bytes(content)
    future = pool.submit(_configure, path)
    try:
        future.result(timeout=CASE_DEADLINE)
    except FutureTimeout:
        pytest.fail(f"loading the config file hung for {CASE_DEADLINE} s: {content[:300]!r}")
    except ConfigError as exc:
        assert str(path) in str(exc), f"ConfigError does not name the file: {exc}"
    except Exception as exc:
        raise AssertionError(f"raw {type(exc).__name__} for {content[:300]!r}: {exc}") from exc


@_fuzz_settings(200)
@given(files=config_files())
def test_any_config_file_loads_or_is_a_config_error_naming_the_file(
    tmp_path: Path, guard: ThreadPoolExecutor, files: list[bytes]
) -> None:
    for content in files:
        _check(tmp_path / "fuzz config.yaml", content, guard)


@_fuzz_settings(150)
@given(data=step_configs, name=st.sampled_from(["train", "evaluate"]))
def test_any_step_section_loads_or_is_a_config_error_naming_the_file(
    tmp_path: Path, guard: ThreadPoolExecutor, data: Any, name: str
) -> None:
    _check(tmp_path / "steps.yaml", _dump({"steps": {name: data}}).encode(), guard)


def test_the_fuzzer_reaches_valid_configs_too(tmp_path: Path, guard: ThreadPoolExecutor) -> None:
    """A fuzzer that only produced errors would prove little: well-formed files must load."""
    good = {
        "run_name": "nightly-{run_id}",
        "execution_mode": "continue-on-failure",
        "retry": {"max_retries": 3, "delay": 10, "backoff": 100},
        "tags": ["a"],
        "steps": {"train": {"parameters": {"lr": 0.5}, "retry": {"delay": 86400}, "runtime": "inline",
                            "settings": {"resources": {"memory": "4GiB"}}}},
    }
    path = tmp_path / "good.yaml"
    _check(path, _dump(good).encode(), guard)
    config = fuzzed.with_options(config_path=str(path)).config
    assert config.run_name == "nightly-{run_id}" and config.steps["train"].parameters == {"lr": 0.5}
    assert config.retry is not None and config.retry.wait_before(3) == MAX_RETRY_WAIT
    notebook = PipelineConfig(name="cell").merged(**load_config_file(path, None))  # what %%pipeline --config does
    assert notebook.steps["train"].resources is not None and notebook.steps["train"].resources.memory_bytes == 4 * 2**30


@_fuzz_settings(150)
@given(retry=retry_configs, res=resources)
def test_any_retry_or_resources_section_loads_or_is_a_config_error_naming_the_file(
    tmp_path: Path, guard: ThreadPoolExecutor, retry: Any, res: Any
) -> None:
    """Numbers at their limits (inf, nan, 1e300, 10**400, 86400.5) where the engine uses them."""
    _check(tmp_path / "retry.yaml", _dump({"retry": retry, "steps": {"evaluate": {"retry": retry}}}).encode(), guard)
    _check(tmp_path / "resources.yaml", _dump({"steps": {"train": {"settings": {"resources": res}}}}).encode(), guard)
