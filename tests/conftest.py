"""Shared fixtures: every test gets its own store root and working directory."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from backends import backend, postgres_server  # noqa: F401 - the SQLite/PostgreSQL fixtures, for every test module


@pytest.fixture(autouse=True)
def store_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    home = tmp_path / "store"
    monkeypatch.setenv("DYNPIPE_HOME", str(home))
    monkeypatch.chdir(tmp_path)
    yield home
