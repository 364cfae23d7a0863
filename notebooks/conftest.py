"""The example notebooks under nbval: each notebook's kernel gets a fresh, empty store.

nbval starts one kernel per notebook, inheriting this process's environment, so setting
DYNPIPE_HOME before a notebook's first cell runs gives every notebook its own store (the
notebooks themselves use the default store, as a user's would).
"""

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
