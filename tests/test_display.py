"""The shared text formatters: one duration format, one status summary, escaped names."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from dynpipe.display import (
    abbreviate_names,
    count_statuses,
    escape_control,
    format_duration,
    format_status_counts,
    format_table,
    truncate,
)
from dynpipe.store.models import ExecutionStatus


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(None, "-"), (0.0004, "0 ms"), (0.25, "250 ms"), (1.0, "1.0 s"), (119.9, "119.9 s"),
     (150, "2.5 min"), (7200, "2.0 h")],
)
def test_format_duration(seconds: float | None, text: str) -> None:
    assert format_duration(seconds) == text


def test_format_status_counts_is_stable_and_accepts_enums() -> None:
    counts = count_statuses(["failed", ExecutionStatus.COMPLETED, "completed", ExecutionStatus.COMPLETED, "cached"])
    assert counts == {"failed": 1, "completed": 3, "cached": 1}
    assert format_status_counts(counts) == "1 cached, 3 completed, 1 failed"
    assert format_status_counts({"running": 0}) == "no steps"
    assert format_status_counts({}, empty="nothing yet") == "nothing yet"


def test_escape_control_shows_terminal_sequences_instead_of_running_them() -> None:
    assert escape_control("a\x1b[2Jb") == "a\\x1b[2Jb"
    assert escape_control("\x1b]0;title\x07") == "\\x1b]0;title\\x07"
    assert escape_control("x\ry\nz\t\x9b\x7f") == "x\\ry\\nz\\t\\x9b\\x7f"
    assert escape_control("abc\u202edef") == "abc\\u202edef"  # right-to-left override
    assert escape_control("line 1\nline 2\r", keep_newlines=True) == "line 1\nline 2\\r"
    assert escape_control("naïve ✓ 東京") == "naïve ✓ 東京"
    assert escape_control(escape_control("\x1b")) == "\\x1b"  # idempotent: safe to apply twice
    assert escape_control(42) == "42"


def test_abbreviate_names_keeps_a_fan_in_short() -> None:
    names = ["fetch"] + [f"parse_{i}" for i in range(1, 300)]
    assert abbreviate_names(names, width=26) == "fetch, parse_1 … +298 more"
    assert abbreviate_names(names, width=25) == "fetch … +299 more"
    assert len(abbreviate_names(names)) <= 48
    assert abbreviate_names(names[:2], width=24) == "fetch, parse_1"
    assert abbreviate_names([]) == "-"
    long_one = abbreviate_names(["x" * 500, "y" * 500], width=40)
    assert len(long_one) <= 40 and long_one.startswith("xxx") and long_one.endswith("… +1 more")
    assert abbreviate_names(["\x1b[2J"]) == "\\x1b[2J"


def test_format_table_escapes_cells_and_aligns_columns() -> None:
    table = format_table(["name", "n"], [["a\x1b[31m", "1"], ["bb", "22"]])
    assert table.splitlines() == ["NAME       N", "a\\x1b[31m  1", "bb         22"]
    assert truncate("abcdef", 4) == "abc…" and truncate("abc", 4) == "abc"


def test_display_imports_nothing_from_dynpipe() -> None:
    """Every layer (store, engine, notebook, CLI) may import it, so it may import none of them."""
    source = Path(__file__).parents[1] / "dynpipe" / "display.py"
    tree = ast.parse(source.read_text())
    imported = [
        node.module or "" for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)
    ] + [alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names]
    assert imported and not [m for m in imported if m.startswith("dynpipe") or m in ("", ".")]
    assert all(node.level == 0 for node in ast.walk(tree) if isinstance(node, ast.ImportFrom))
