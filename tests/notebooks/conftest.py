"""nbval also runs the notebooks here (they sit under the test paths): each notebook's kernel
gets a fresh, empty store instead of a ``.dynpipe/`` inside the source tree."""

from __future__ import annotations

import os
import tempfile

import pytest

_prepared: set[str] = set()


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    path = str(item.path)
    if path.endswith(".ipynb") and path not in _prepared:
        _prepared.add(path)
        os.environ["DYNPIPE_HOME"] = tempfile.mkdtemp(prefix="dynpipe-nbval-")
