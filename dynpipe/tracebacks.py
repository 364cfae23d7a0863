"""Tracebacks a user reads: the step's own frames, without dynpipe's machinery.

A skipped step's error is the upstream step's own exception (with a note saying which step
raised it and what was skipped), so a notebook cell shows the user's error, not ours.
"""

from __future__ import annotations

import os
import sys
from types import TracebackType
from typing import cast

#: dynpipe's own source folder: frames there are machinery, not the user's code.
PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__)) + "/"

#: Attribute names kept on an exception dynpipe hands to the user (set once, read on re-raise).
_USER_TB = "_dynpipe_user_tb"
_SKIP_NOTE = "_dynpipe_skip_note"


def user_traceback(text: str) -> str | None:
    """A stored traceback without dynpipe's and concurrent.futures' frames (for the DAG view).

    In a notebook, cell files (``/tmp/ipykernel_N/….py``) are named ``Cell In[N]`` as the
    cell's own error display names them.
    """
    if not text:
        return None
    cells = _cell_names()
    kept: list[str] = []
    skip_code = False
    for line in text.splitlines():
        stripped = line.lstrip()
        if stripped.startswith("File "):
            skip_code = PACKAGE_DIR in line or "/concurrent/futures/" in line
            if skip_code:
                continue
            if cells:
                line = _rename_cell(line, cells)
        elif skip_code and line.startswith("    "):
            continue
        else:
            skip_code = False
        kept.append(line)
    return "\n".join(kept)


def _cell_names() -> dict[str, int]:
    """Cell file name -> execution count in a running IPython shell (empty elsewhere).

    Looked up through ``sys.modules`` only: a script never imports IPython for this.
    """
    ipython = sys.modules.get("IPython")
    get = getattr(ipython, "get_ipython", None) if ipython is not None else None
    shell = get() if get is not None else None
    mapping = getattr(getattr(shell, "compile", None), "_filename_map", None)
    return dict(mapping) if isinstance(mapping, dict) else {}


def _rename_cell(line: str, cells: dict[str, int]) -> str:
    start = line.find('"')
    end = line.find('"', start + 1)
    if start < 0 or end < 0:
        return line
    number = cells.get(line[start + 1:end])
    if number is None:
        return line
    return f"{line[:line.find('File ')]}Cell In[{number}]{line[end + 1:]}"


def without_engine_frames(exc: BaseException) -> BaseException:
    """The step's error with dynpipe's own leading frames dropped from its traceback, so a
    notebook shows the user's code (the frame that raised) rather than the machinery.

    The trimmed traceback is kept on the exception: re-raising it (``result()`` twice)
    would otherwise grow it by the frames of every earlier raise.
    """
    kept = exc.__dict__.get(_USER_TB, False) if hasattr(exc, "__dict__") else False
    if kept is not False:
        return exc.with_traceback(cast("TracebackType | None", kept))
    tb: TracebackType | None = exc.__traceback__
    while tb is not None and tb.tb_frame.f_code.co_filename.startswith(PACKAGE_DIR):
        tb = tb.tb_next
    try:
        setattr(exc, _USER_TB, tb)
    except (AttributeError, TypeError):
        pass  # an exception type without attributes: trimmed, just not remembered
    return exc.with_traceback(tb)


def user_error(exc: BaseException) -> BaseException:
    """What a waiting caller raises: for a skipped step, the upstream step's own error.

    ``root_error``/``root_step``/``skipped`` (of ``StepSkippedError``) are set by the engine
    when it skips a step because an upstream one failed; the root error then gets one note (replaced, not added
    again, on each raise) naming the step that raised it and the steps skipped because of it.
    """
    root = getattr(exc, "root_error", None)
    if root is None:  # the step's own error: a skip note from an earlier wait is not true here
        _replace_note(exc, None)
        return without_engine_frames(exc)
    skipped = ", ".join(repr(s) for s in getattr(exc, "skipped", ()))
    note = f"dynpipe: raised by step {getattr(exc, 'root_step', '?')!r}; skipped because of it: {skipped}"
    _replace_note(root, note)
    return without_engine_frames(root)


def add_note(exc: BaseException, note: str) -> None:
    """``exc.add_note`` on Python 3.11+; on 3.10 the note is appended to the message."""
    if hasattr(exc, "add_note"):
        exc.add_note(note)
    elif len(exc.args) == 1 and isinstance(exc.args[0], str):
        exc.args = (f"{exc.args[0]}\n{note}",)


def _replace_note(exc: BaseException, note: str | None) -> None:
    old = exc.__dict__.get(_SKIP_NOTE) if hasattr(exc, "__dict__") else None
    if old == note:
        return
    notes = getattr(exc, "__notes__", None)
    if old is not None and isinstance(notes, list) and old in notes:
        notes.remove(old)
    if note is not None:
        add_note(exc, note)
    try:
        setattr(exc, _SKIP_NOTE, note)
    except (AttributeError, TypeError):
        pass


def safe_text(value: object) -> str:
    """``str(value)`` that never raises: error messages are built from user objects."""
    try:
        return str(value)
    except Exception as exc:  # noqa: BLE001 - a raising __str__ must not hide the error
        return f"<{type(value).__name__}: str() raised {type(exc).__name__}>"
