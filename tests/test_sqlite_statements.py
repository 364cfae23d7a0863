"""The SQLite store's per-step statement parameters: the JSON it writes by hand is json's."""

from __future__ import annotations

import json
import math
import sqlite3
from contextlib import closing
from pathlib import Path
from typing import Annotated, Any

import pytest

from dynpipe import pipeline, step
from dynpipe.status import ExecutionStatus
from dynpipe.store.records import NewStepRun, StepOutcome
from dynpipe.store.sqlite_statements import (
    finish_step_statement,
    outcome_params,
    plain_json,
    row_bytes,
    step_params,
)


@pytest.mark.parametrize(
    "value",
    [
        {"i": 1_000_000},
        {"n": -3, "big": 2**80, "flag": True, "off": False, "none": None},
        {"lr": 0.001, "x": 1e300, "tiny": 5e-324, "neg": -0.0, "whole": 2.0},
        {"text": "plain", "quote": 'a"b\\c', "unicode": "héllo ✓ \U0001f600", "ctl": "tab\tnl\n\x00"},
        {"ünïcode key": 1, 'quo"te': "v", "": ""},
        {"output": "0f3c9e8a1b2c4d5e"},
        {"nested": {"a": [1, 2]}, "list": [1, "a"]},  # json's own encoder
        {"nan": math.nan, "inf": math.inf, "ninf": -math.inf},  # json writes NaN, Infinity
        {1: "int key", "s": 2},  # a non-str key: json's own text ("1")
        {"t": (1, 2)},
    ],
)
def test_plain_json_writes_what_json_dumps_writes(value: dict[Any, Any]) -> None:
    assert plain_json(value) == json.dumps(value)


def test_plain_json_raises_what_json_dumps_raises() -> None:
    with pytest.raises(TypeError, match="not JSON serializable"):
        plain_json({"obj": object()})


def test_finished_row_carries_step_and_outcome() -> None:
    step = NewStepRun("s1", "r1", "inv", "noop", 3, "inline", ["up"], {"i": 1, "s": "x"}, {"a": "id1"})
    outcome = StepOutcome(ExecutionStatus.COMPLETED, 2.0, 1, logs="hi", outputs={"output": "o1"}, start=1.0)
    [(sql, params)] = finish_step_statement(step, outcome)
    assert sql.startswith("INSERT INTO step_runs")
    assert isinstance(params, dict)
    assert params == {
        "id": "s1", "run_id": "r1", "invocation_id": "inv", "step_name": "noop", "seq": 3,
        "status": "completed", "start": 1.0, "end": 2.0, "attempts": 1, "runtime": "inline",
        "cache_key": None, "upstream": '["up"]', "parameters": '{"i": 1, "s": "x"}',
        "inputs": '{"a": "id1"}', "outputs": '{"output": "o1"}', "logs": "hi", "error_type": None,
        "error_message": None, "traceback": None,
    }
    assert type(params["status"]) is str
    # the same row as a step whose start was written first, then its end
    assert params == {**step_params(step, outcome.status, 1.0), **outcome_params("s1", outcome)}
    assert row_bytes((sql, params)) == len(params["parameters"]) + len(params["inputs"]) + len(params["outputs"])


def test_a_cache_hit_row_copies_the_outputs_text_of_the_row_it_reuses(store_home: Path) -> None:
    @step
    def pair(x: int, label: str) -> tuple[Annotated[int, "n"], Annotated[str, "ü-label"]]:
        return x, label

    @pipeline(dynamic=True, enable_cache=True)
    def flow() -> None:
        pair(1, "a")

    flow()
    flow()
    with closing(sqlite3.connect(store_home / "metadata.db")) as conn:
        rows = conn.execute("SELECT id, status, cached_from, outputs FROM step_runs ORDER BY rowid").fetchall()
    (first_id, first_status, _, first_outputs), (_, hit_status, hit_from, hit_outputs) = rows
    assert (first_status, hit_status, hit_from) == ("completed", "cached", first_id)
    assert hit_outputs == first_outputs == json.dumps(json.loads(first_outputs))
    assert list(json.loads(hit_outputs)) == ["n", "ü-label"]
