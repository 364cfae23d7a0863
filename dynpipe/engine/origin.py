"""Where a run was started from, recorded as ``config["origin"]`` and shown by ``runs list``.

A schedule's runner says so explicitly (``DYNPIPE_RUN_ORIGIN=schedule:NAME``); otherwise a
run in a Jupyter kernel names its notebook, and any other process names its script as it
was given (``sys.argv[0]``). Nothing here imports IPython: a kernel is recognised only when
ipykernel is already loaded.
"""

from __future__ import annotations

import os
import sys

from .. import settings

#: What a kernel's run records when the front end did not say which notebook it runs.
UNKNOWN_NOTEBOOK = "notebook"


def notebook_path() -> str | None:
    """The notebook this kernel runs, ``"notebook"`` if unknown, ``None`` outside a kernel.

    jupyter_server gives the kernel ``JPY_SESSION_NAME`` (ipykernel copies it to ``__session__``);
    VS Code sets ``__vsc_ipynb_file__``.
    """
    if "ipykernel" not in sys.modules:
        return None
    ipython = sys.modules.get("IPython")
    shell = ipython.get_ipython() if ipython is not None else None
    if shell is None or not hasattr(shell, "kernel"):  # a terminal IPython is a script's session
        return None
    for key in ("__session__", "__vsc_ipynb_file__"):
        value = shell.user_ns.get(key)
        if isinstance(value, str) and value:
            return value
    return os.environ.get("JPY_SESSION_NAME") or UNKNOWN_NOTEBOOK


def run_origin() -> str | None:
    """The origin of a run starting now in this process (see the module docstring)."""
    explicit = settings.run_origin()
    if explicit is not None:
        return explicit
    notebook = notebook_path()
    if notebook is not None:
        return notebook
    script = sys.argv[0] if sys.argv else ""
    return script or None
