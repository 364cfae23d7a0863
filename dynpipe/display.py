"""Plain-text formatting shared by the CLI, the demo, the notebook views and the engine's logs.

Pure functions on plain values (statuses are strings, durations are seconds) so that every
layer can import this module: it imports nothing from dynpipe, so one run reads the same in
the terminal, the notebook and the logs.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

# C0 controls, DEL, C1 controls (ESC, CSI, OSC... repaint or retitle a terminal) and the
# bidirectional overrides that make text display in another order than it is stored.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")
_CONTROL_KEEPING_LINES = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escape_one(match: re.Match[str]) -> str:
    char = match.group()
    if char in _NAMED:
        return _NAMED[char]
    code = ord(char)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def escape_control(text: object, keep_newlines: bool = False) -> str:
    """``text`` with terminal control characters shown as ``\\x1b``, ``\\r``…, never executed.

    Names, errors and parameters come from user code: printed raw, an ``ESC [2J`` in a step
    name would clear the reader's screen. ``keep_newlines`` keeps line feeds and tabs for
    multi-line text such as tracebacks; carriage returns are always escaped.
    """
    value = text if isinstance(text, str) else str(text)
    pattern = _CONTROL_KEEPING_LINES if keep_newlines else _CONTROL
    return pattern.sub(_escape_one, value)


def format_duration(seconds: float | None, missing: str = "-") -> str:
    """``850 ms``, ``12.3 s``, ``4.2 min``, ``1.5 h``; ``missing`` when there is no duration yet."""
    if seconds is None:
        return missing
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 120:
        return f"{seconds:.1f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


def format_time(moment: datetime | None, missing: str = "-") -> str:
    """A local timestamp to the second, as in ``runs list``."""
    return moment.strftime("%Y-%m-%d %H:%M:%S") if moment else missing


def count_statuses(statuses: Iterable[object]) -> dict[str, int]:
    """How many of each status; accepts strings or str-valued enums."""
    counts: dict[str, int] = {}
    for status in statuses:
        key = getattr(status, "value", status)
        key = key if isinstance(key, str) else str(key)
        counts[key] = counts.get(key, 0) + 1
    return counts


def format_status_counts(counts: Mapping[Any, int], empty: str = "no steps") -> str:
    """``3 completed, 1 failed``: statuses in alphabetical order so the text is stable; zeros left out."""
    parts = [f"{n} {status}" for status, n in sorted(counts.items()) if n]
    return ", ".join(parts) or empty


def truncate(text: str, width: int) -> str:
    """``text`` cut to ``width`` characters, ending in ``…`` when cut."""
    if width < 1:
        return ""
    return text if len(text) <= width else text[: width - 1] + "…"


def abbreviate_names(names: Sequence[str], width: int = 48, empty: str = "-") -> str:
    """``fetch, parse_1 … +298 more``: as many names as fit in about ``width`` characters.

    A 300-way fan-in must not make one table cell thousands of characters wide. The first
    name is always shown (cut if it alone is too long); names are escaped.
    """
    if not names:
        return empty
    shown: list[str] = []
    used = 0
    for i, raw in enumerate(names):
        name = escape_control(raw)
        rest = len(names) - i - 1
        tail = len(f" … +{rest} more") if rest else 0
        cost = len(name) + (2 if shown else 0)
        if shown and used + cost + tail > width:
            break
        if not shown and cost + tail > width:
            name = truncate(name, max(8, width - tail))
            cost = len(name)
        shown.append(name)
        used += cost
    text = ", ".join(shown)
    hidden = len(names) - len(shown)
    return f"{text} … +{hidden} more" if hidden else text


def format_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """Left-aligned columns two spaces apart, upper-case headers; every cell escaped."""
    cells = [[escape_control(c) for c in row] for row in rows]
    widths = [len(h) for h in headers]
    for row in cells:
        for i, cell in enumerate(row):
            widths[i] = max(widths[i], len(cell))
    lines = ["  ".join(h.upper().ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip()]
    lines.extend("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in cells)
    return "\n".join(lines)
