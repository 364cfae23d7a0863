"""The example notebooks under nbval: each notebook's kernel gets a fresh, empty store.

nbval starts one kernel per notebook, inheriting this process's environment, so setting
DYNPIPE_HOME before a notebook's first cell runs gives every notebook its own store (the
notebooks themselves use the default store, as a user's would).
"""

from __future__ import annotations

import os
import tempfile

import pytest

#: The notebooks already given a store, kept on the test session (not in module state).
_PREPARED = pytest.StashKey[set[str]]()


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    path = str(item.path)
    prepared = item.config.stash.setdefault(_PREPARED, set())
    if path.endswith(".ipynb") and path not in prepared:
        prepared.add(path)
        os.environ["DYNPIPE_HOME"] = tempfile.mkdtemp(prefix="dynpipe-nbval-")
