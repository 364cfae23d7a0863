"""The inline step path's shortcuts give exactly what the general code gave.

``CallShape.bind`` stands in for ``inspect.Signature.bind_partial``, a shared ``JSONEncoder``
for ``json.dumps`` (cache keys, JSON outputs): the arguments, their order, the stored bytes
and the cache keys must not change, or stored runs would read back differently and old
cache entries would stop matching.
"""

from __future__ import annotations

import inspect
import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from dynpipe import Client, pipeline, step
from dynpipe.config import CachePolicy
from dynpipe.engine.cache import cache_key
from dynpipe.signatures import CallShape
from dynpipe.store.materializers import JSONMaterializer

Args = tuple[Any, ...]
Kwargs = dict[str, Any]


def f_plain(a: int, b: str = "x", c: float = 1.0) -> None: ...
def f_kwonly(a: int, *, k: int, j: int = 0) -> None: ...
def f_varargs(a: int, *rest: int, **more: int) -> None: ...
def f_posonly(a: int, /, b: int = 2) -> None: ...


CALLS: list[tuple[Any, tuple[Any, ...], dict[str, Any]]] = [
    (f_plain, (1,), {}),
    (f_plain, (1, "y", 2.0), {}),
    (f_plain, (), {"c": 3.0, "a": 1}),  # keywords out of order: bound in signature order
    (f_plain, (1,), {"c": 3.0}),
    (f_plain, (1,), {"c": 3.0, "b": "z"}),
    (f_plain, (), {}),  # nothing given: bind_partial binds nothing, prepare reports what is missing
    (f_kwonly, (1,), {"j": 2, "k": 3}),
    (f_kwonly, (), {"k": 3}),
]
#: Calls inspect must bind itself: its error (or its handling of *args/**kwargs) is the answer.
DEFERRED: list[tuple[Any, tuple[Any, ...], dict[str, Any]]] = [
    (f_plain, (1, "y", 2.0, 4), {}),  # too many positional arguments
    (f_plain, (1,), {"a": 2}),  # multiple values for a
    (f_plain, (1,), {"nope": 2}),  # unexpected keyword
    (f_varargs, (1, 2, 3), {"x": 4}),
    (f_posonly, (1,), {}),
]


@pytest.mark.parametrize(("func", "args", "kwargs"), CALLS)
def test_call_shape_binds_like_inspect_in_the_same_order(func: Any, args: Args, kwargs: Kwargs) -> None:
    signature = inspect.signature(func)
    bound = CallShape(signature).bind(args, kwargs)
    expected = signature.bind_partial(*args, **kwargs).arguments
    assert bound == expected
    assert bound is not None and list(bound) == list(expected)


@pytest.mark.parametrize(("func", "args", "kwargs"), DEFERRED)
def test_call_shape_leaves_errors_and_var_args_to_inspect(func: Any, args: Args, kwargs: Kwargs) -> None:
    assert CallShape(inspect.signature(func)).bind(args, kwargs) is None


@step(enable_cache=False)
def described(count: int, label: str = "l", *, scale: float = 1.0, tags: list[Any] | None = None) -> str:
    return f"{label}{count * scale}"


def test_stored_parameters_keep_signature_order_and_values(store_home: Path) -> None:
    @pipeline(dynamic=True)
    def p() -> None:
        described(1)
        described(tags=[1, "é", None], scale=2.0, count=3)  # keywords out of order
        described(4, scale=0.5, label="q")

    run = p()
    stored = {name: s.parameters for name, s in run.steps.items()}
    assert stored == {
        "described": {"count": 1},
        "described_2": {"count": 3, "scale": 2.0, "tags": [1, "é", None]},
        "described_3": {"count": 4, "label": "q", "scale": 0.5},
    }
    texts = [row[0] for row in sqlite3.connect(store_home / "metadata.db").execute(
        "SELECT parameters FROM step_runs ORDER BY seq"
    )]
    assert texts == [
        '{"count": 1}',
        '{"count": 3, "scale": 2.0, "tags": [1, "\\u00e9", null]}',
        '{"count": 4, "label": "q", "scale": 0.5}',
    ]
    assert Client().get_pipeline_run(run.id).steps["described_3"].output.load() == "q2.0"


def test_bad_calls_still_name_the_step_and_input() -> None:
    @pipeline(dynamic=True)
    def too_many() -> None:
        described(1, "l", 2)

    @pipeline(dynamic=True)
    def wrong_type() -> None:
        described("three")

    @pipeline(dynamic=True)
    def missing() -> None:
        described(label="x")

    with pytest.raises(TypeError, match=r"step 'described': too many positional arguments"):
        too_many()
    with pytest.raises(TypeError, match=r"step 'described': input 'count' expects int, got str \('three'\)"):
        wrong_type()
    with pytest.raises(TypeError, match=r"step 'described': missing input\(s\) 'count'"):
        missing()


JSON_VALUES: list[Any] = [
    0, -7, 2**70, True, False, None, 1.5, -0.0, 1e300, float("inf"), "", "plain", "é\"\\\n\t\u2028😀",
    [1, [2.5, ["x", None, [True]]]], {"b": 1, "a": [{"z": "é"}]}, [],
]


@pytest.mark.parametrize("value", JSON_VALUES, ids=repr)
def test_json_output_bytes_are_what_json_dumps_wrote(value: Any) -> None:
    expected = json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()
    assert JSONMaterializer().save(value) == expected


def test_cache_keys_are_unchanged() -> None:
    """Keys computed by the code before the shared encoder: stored cache entries still match."""
    assert cache_key(
        step_name="s", code_hash="abc",
        parameters={"b": [1, 2.5, None, True, 'é"'], "a": {"z": 1, "y": "x"}},
        input_hashes={"x": "h1", "l": ["h2", "h3"]}, input_ids={}, config_fingerprint="{}",
        policy=CachePolicy(),
    ) == "256dc38bd0a3fabb910e4d7b4c56b7fb3aafb95472375c92bb1b58b78d59865c"
    assert cache_key(
        step_name="s", code_hash="abc", parameters={"b": 1, "a": 2}, input_hashes={},
        input_ids={"x": "i1"}, config_fingerprint="f",
        policy=CachePolicy(include_artifact_ids=True, ignored_inputs=("a",)),
    ) == "64d44da78f46f4d04c1c462207ecf579c98822fbf82c2d522f7ac6a535feb134"
    assert cache_key(
        step_name="s", code_hash="abc", parameters={}, input_hashes={}, input_ids={},
        config_fingerprint="f", policy=CachePolicy(),
    ) == "b8ff12e220d860c9048f50ece90fdef411b08b413fb22491544443a252ac7145"


#: Parameters of every kind the flat fast path writes (and two it leaves to the encoder), with
#: the keys the encoder gave them before the fast path existed.
FLAT_KEYS: list[tuple[dict[str, Any], str]] = [
    ({"i": 5}, "898447390e37ca834737a6e15dc66801fc5e33701861d37d3ddd48674fb436eb"),
    ({"b": True, "a": None, "c": False, "d": -12, "e": 2**70},
     "4ced977e6cd32712ed84a6328ef8e4b44f9e58425c812cf503649dae3ff112e9"),
    ({"s": "plain", "u": "é\"\\\n\u2028😀", "z_": "", "A": 1},
     "52b0c39b4c734ed680ce1d32688b0d310ab6dcfd8998c29b385fba39c3da9b50"),
    ({"f": 1.5, "i": 1}, "1281f3794b47589f035fa20fff46e7b26049d5140da457ba09dc8f7ab5f1e42b"),
    ({"x": [1, 2], "y": {"k": "v"}}, "52352131ea2b18af6fe878bd8ce520a64a209e63d25ac0b1549de4cbf1e70f85"),
    ({"é": 1, 'a"b': "c"}, "c777d3f8c4713584b77fe3b309ce1b77c62165c6dadc4fd1b29c6ade972d577f"),
]


@pytest.mark.parametrize(("parameters", "expected"), FLAT_KEYS)
def test_cache_keys_of_plain_parameters_are_unchanged(parameters: dict[str, Any], expected: str) -> None:
    assert cache_key(
        step_name="s", code_hash="c", parameters=parameters, input_hashes={"in": "h"}, input_ids={},
        config_fingerprint="f", policy=CachePolicy(),
    ) == expected
