"""Materializers: built-ins per type, cloudpickle fallback warning, custom ones, unstorable outputs."""

from __future__ import annotations

import threading
import warnings
from typing import Any

import numpy as np
import pandas as pd
import pytest
from pydantic import BaseModel

from dynpipe import Client, Materializer, pipeline, register_materializer, step


class Params(BaseModel):
    lr: float
    layers: list[int]


class Opaque:
    def __init__(self, v: int) -> None:
        self.v = v


def _roundtrip(value: Any) -> tuple[Any, str]:
    @step(enable_cache=False)
    def produce() -> Any:
        return value

    @pipeline(dynamic=True)
    def p() -> None:
        produce()

    run = p()
    art = run.steps["produce"].output
    return art.load(), art.materializer


@pytest.mark.parametrize(
    ("value", "materializer"),
    [
        ({"a": [1, 2.5, None, True]}, "json"),
        ("text", "json"),
        (b"\x00\x01bytes", "bytes"),
        ((1, "two", (3.0,)), "python-literal"),
        ({1: "int keys"}, "python-literal"),
        ({1, 2, 3}, "python-literal"),
        (Params(lr=0.1, layers=[2, 3]), "pydantic"),
    ],
)
def test_builtin_materializers_round_trip(value: Any, materializer: str) -> None:
    loaded, used = _roundtrip(value)
    assert used == materializer
    assert loaded == value and type(loaded) is type(value)


def test_numpy_and_pandas() -> None:
    arr = np.arange(12, dtype=np.float32).reshape(3, 4)
    loaded, used = _roundtrip(arr)
    assert used == "numpy" and loaded.dtype == np.float32 and np.array_equal(loaded, arr)
    frame = pd.DataFrame({"a": [1, 2], "b": ["x", "y"]})
    loaded, used = _roundtrip(frame)
    assert used == "pandas"
    pd.testing.assert_frame_equal(loaded, frame)


def test_cloudpickle_fallback_warns_once_per_type() -> None:
    from dynpipe.store.materializers import CloudpickleMaterializer

    CloudpickleMaterializer._warned.discard(f"{Opaque.__module__}.{Opaque.__qualname__}")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        loaded, used = _roundtrip(Opaque(4))
        _roundtrip(Opaque(5))
    assert used == "cloudpickle" and loaded.v == 4
    relevant = [w for w in caught if "cloudpickle" in str(w.message)]
    assert len(relevant) == 1
    assert "Opaque" in str(relevant[0].message)


class UpperMaterializer(Materializer):
    name = "upper-text"

    def save(self, value: Any) -> bytes:
        return value.upper().encode()

    def load(self, data: bytes, data_type: str) -> Any:
        return data.decode().lower()


class Point:
    def __init__(self, x: int, y: int) -> None:
        self.x, self.y = x, y


class PointMaterializer(Materializer):
    name = "point"

    def save(self, value: Point) -> bytes:
        return f"{value.x},{value.y}".encode()

    def load(self, data: bytes, data_type: str) -> Point:
        x, y = data.decode().split(",")
        return Point(int(x), int(y))


def test_custom_materializers_per_type_and_per_step() -> None:
    register_materializer(Point, PointMaterializer)

    @step(output_materializers=UpperMaterializer)
    def shout() -> str:
        return "quiet"

    @step
    def point() -> Point:
        return Point(1, 2)

    @pipeline(dynamic=True)
    def p() -> None:
        shout()
        point()

    run = p()
    art = run.steps["shout"].output
    assert art.materializer == "upper-text"
    assert Client().store.files.get(art.uri) == b"QUIET"
    assert art.load() == "quiet"
    pt = run.steps["point"].output
    assert pt.materializer == "point"
    assert vars(pt.load()) == {"x": 1, "y": 2}


def test_unstorable_output_is_a_clear_error_and_keeps_earlier_data() -> None:
    @step
    def fine() -> int:
        return 1

    @step
    def locked() -> Any:
        return threading.Lock()

    @pipeline(dynamic=True)
    def p() -> None:
        fine()
        locked()

    with pytest.raises(TypeError, match=r"step 'locked': output 'output' of type lock cannot be stored"):
        p()
    run = Client().get_pipeline("p").last_run
    assert run.steps["fine"].output.load() == 1
    assert run.steps["locked"].status.value == "failed"
