"""Bad DYNPIPE_* values fail fast with an error naming the variable, and never hang a run."""

from __future__ import annotations

import pytest

from dynpipe import Client, pipeline, step
from dynpipe.errors import ConfigError, SettingError


@step
def one() -> int:
    return 1


@pipeline
def two_submits() -> None:
    one.submit()
    one.submit()


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("DYNPIPE_INLINE_WORKERS", "abc"),
        ("DYNPIPE_INLINE_WORKERS", "0"),
        ("DYNPIPE_INLINE_WORKERS", "-3"),
        ("DYNPIPE_ISOLATED_WAITERS", "0"),
        ("DYNPIPE_ISOLATED_BACKEND", "docker"),
        ("DYNPIPE_ECHO_LOGS", "maybe"),
    ],
)
def test_bad_setting_fails_the_run_before_any_step(monkeypatch: pytest.MonkeyPatch, variable: str, value: str) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(SettingError) as info:
        two_submits()
    assert variable in str(info.value) and repr(value) in str(info.value)
    assert isinstance(info.value, ConfigError)
    # nothing was registered: the store holds no run that could be left waiting
    assert Client().list_pipeline_runs() == []


def test_settings_are_read_when_used_not_at_import(monkeypatch: pytest.MonkeyPatch) -> None:
    from dynpipe import settings

    monkeypatch.setenv("DYNPIPE_GROUP_THRESHOLD", "5")
    assert settings.group_threshold() == 5
    monkeypatch.setenv("DYNPIPE_GROUP_THRESHOLD", "7")
    assert settings.group_threshold() == 7
    monkeypatch.setenv("DYNPIPE_WIDGET_INTERVAL", "inf")
    with pytest.raises(SettingError, match="DYNPIPE_WIDGET_INTERVAL"):
        settings.widget_interval()


@pytest.mark.parametrize(("true", "false"), [("1", "0"), ("TRUE", "False"), (" yes ", " no "), ("On", "OFF")])
def test_one_boolean_parser(monkeypatch: pytest.MonkeyPatch, true: str, false: str) -> None:
    from dynpipe import settings

    monkeypatch.setenv("DYNPIPE_ECHO_LOGS", true)
    assert settings.echo_logs() is True
    monkeypatch.setenv("DYNPIPE_ECHO_LOGS", false)
    assert settings.echo_logs() is False
