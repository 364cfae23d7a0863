"""Tracebacks a user reads: the step's own frames, without dynpipe's machinery."""

from __future__ import annotations

import os

#: dynpipe's own source folder: frames there are machinery, not the user's code.
PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__)) + "/"


def user_traceback(text: str) -> str | None:
    """A stored traceback without dynpipe's and concurrent.futures' frames (for the DAG view)."""
    if not text:
        return None
    kept: list[str] = []
    skip_code = False
    for line in text.splitlines():
        stripped = line.lstrip()
        if stripped.startswith("File "):
            skip_code = PACKAGE_DIR in line or "/concurrent/futures/" in line
            if skip_code:
                continue
        elif skip_code and line.startswith("    "):
            continue
        else:
            skip_code = False
        kept.append(line)
    return "\n".join(kept)


def without_engine_frames(exc: BaseException) -> BaseException:
    """The step's error with dynpipe's own leading frames dropped from its traceback, so a
    notebook shows the user's code (the frame that raised) rather than the machinery."""
    tb = exc.__traceback__
    while tb is not None and tb.tb_frame.f_code.co_filename.startswith(PACKAGE_DIR):
        tb = tb.tb_next
    return exc.with_traceback(tb)


def safe_text(value: object) -> str:
    """``str(value)`` that never raises: error messages are built from user objects."""
    try:
        return str(value)
    except Exception as exc:  # noqa: BLE001 - a raising __str__ must not hide the error
        return f"<{type(value).__name__}: str() raised {type(exc).__name__}>"
