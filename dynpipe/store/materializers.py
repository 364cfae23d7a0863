"""Materializers: how a Python value becomes bytes in the artifact store and back.

Built-ins cover JSON-able values, bytes, pydantic models, numpy arrays and pandas
frames (detected by module name so neither library is imported unless used);
cloudpickle is the last resort and warns once, because such artifacts only load
on the same Python version.
"""

from __future__ import annotations

import importlib
import io
import json
import sys
import warnings
from typing import Any, ClassVar


class Materializer:
    """Base class: subclass, set ``name`` and ``handles``, implement save/load."""

    name: ClassVar[str] = "base"
    handles: ClassVar[tuple[type, ...]] = ()

    def can_save(self, value: Any) -> bool:
        return isinstance(value, self.handles)

    def save(self, value: Any) -> bytes:  # pragma: no cover - interface
        raise NotImplementedError

    def load(self, data: bytes, data_type: str) -> Any:  # pragma: no cover - interface
        raise NotImplementedError


_JSON_SCALARS = (str, int, float, bool, type(None))


def is_plain_json(value: Any, depth: int = 0) -> bool:
    """True if JSON round-trips the value unchanged (no tuples, only str keys)."""
    tp = type(value)
    if tp in _JSON_SCALARS:
        return not (tp is float and value != value)  # NaN does not compare equal
    if depth > 50:
        return False
    if tp is list:
        return all(is_plain_json(v, depth + 1) for v in value)
    if tp is dict:
        return all(type(k) is str and is_plain_json(v, depth + 1) for k, v in value.items())
    return False


class JSONMaterializer(Materializer):
    name = "json"

    def can_save(self, value: Any) -> bool:
        return is_plain_json(value)

    def save(self, value: Any) -> bytes:
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()

    def load(self, data: bytes, data_type: str) -> Any:
        return json.loads(data)


_LITERAL_SCALARS = (str, int, bool, type(None), bytes, complex)


def _is_literal(value: Any, depth: int = 0) -> bool:
    """True if ``ast.literal_eval(repr(value))`` gives the value back (builtins only)."""
    tp = type(value)
    if tp in _LITERAL_SCALARS:
        return True
    if tp is float:
        return value == value and value not in (float("inf"), float("-inf"))
    if depth > 50:
        return False
    if tp in (list, tuple, set, frozenset):
        if tp is frozenset:
            return False  # repr is frozenset({...}), not a literal
        return all(_is_literal(v, depth + 1) for v in value)
    if tp is dict:
        return all(_is_literal(k, depth + 1) and _is_literal(v, depth + 1) for k, v in value.items())
    return False


class LiteralMaterializer(Materializer):
    """Tuples, sets and dicts with non-string keys: stored as a Python literal, read safely."""

    name = "python-literal"

    def can_save(self, value: Any) -> bool:
        return _is_literal(value) and not (type(value) is set and not value)

    def save(self, value: Any) -> bytes:
        return repr(value).encode()

    def load(self, data: bytes, data_type: str) -> Any:
        import ast

        return ast.literal_eval(data.decode())


class BytesMaterializer(Materializer):
    name = "bytes"
    handles = (bytes,)

    def can_save(self, value: Any) -> bool:
        return type(value) is bytes

    def save(self, value: Any) -> bytes:
        return value

    def load(self, data: bytes, data_type: str) -> Any:
        return data


def _import_type(path: str) -> type:
    module, _, qualname = path.rpartition(".")
    obj: Any = importlib.import_module(module)
    for part in qualname.split("."):
        obj = getattr(obj, part)
    return obj


class PydanticMaterializer(Materializer):
    name = "pydantic"

    def can_save(self, value: Any) -> bool:
        pyd = sys.modules.get("pydantic")
        return pyd is not None and isinstance(value, pyd.BaseModel) and not _defined_in_main(value)

    def save(self, value: Any) -> bytes:
        return value.model_dump_json().encode()

    def load(self, data: bytes, data_type: str) -> Any:
        model: Any = _import_type(data_type)  # a pydantic model class
        return model.model_validate_json(data)


def _defined_in_main(value: Any) -> bool:
    """Types from a script or notebook cannot be imported by name in another process."""
    return getattr(type(value), "__module__", None) == "__main__"


class LocalPydanticMaterializer(Materializer):
    """A pydantic model whose class lives in ``__main__`` (a notebook): JSON data + the class by value."""

    name = "pydantic-local"

    def can_save(self, value: Any) -> bool:
        pyd = sys.modules.get("pydantic")
        return pyd is not None and isinstance(value, pyd.BaseModel) and _defined_in_main(value)

    def save(self, value: Any) -> bytes:
        import base64

        import cloudpickle

        cls = base64.b64encode(cloudpickle.dumps(type(value))).decode("ascii")
        return json.dumps({"class": cls, "data": value.model_dump(mode="json")}).encode()

    def load(self, data: bytes, data_type: str) -> Any:
        import base64
        import pickle

        doc = json.loads(data)
        main = sys.modules.get("__main__")
        live = getattr(main, data_type.rpartition(".")[2], None)
        if live is not None and hasattr(live, "model_validate"):
            try:  # the same notebook: give back an instance of the class it uses now
                return live.model_validate(doc["data"])
            except Exception:  # noqa: BLE001 - redefined since: use the class it was saved with
                pass
        return pickle.loads(base64.b64decode(doc["class"])).model_validate(doc["data"])


class NumpyMaterializer(Materializer):
    name = "numpy"

    def can_save(self, value: Any) -> bool:
        np = sys.modules.get("numpy")
        return np is not None and isinstance(value, (np.ndarray, np.generic)) and value.dtype != object

    def save(self, value: Any) -> bytes:
        import numpy as np

        buf = io.BytesIO()
        np.save(buf, np.asarray(value), allow_pickle=False)
        return buf.getvalue()

    def load(self, data: bytes, data_type: str) -> Any:
        import numpy as np

        array = np.load(io.BytesIO(data), allow_pickle=False)
        if array.ndim == 0 and data_type != "numpy.ndarray":
            return array[()]  # a numpy scalar (np.int64, np.float32...) comes back as one
        return array


class PandasMaterializer(Materializer):
    name = "pandas"

    def can_save(self, value: Any) -> bool:
        pd = sys.modules.get("pandas")
        return pd is not None and isinstance(value, (pd.DataFrame, pd.Series))

    def save(self, value: Any) -> bytes:
        import pandas as pd

        buf = io.BytesIO()
        try:
            frame = value.to_frame() if isinstance(value, pd.Series) else value
            frame.to_parquet(buf)
            return b"PARQ" + buf.getvalue()
        except (ImportError, ValueError):
            buf = io.BytesIO()
            value.to_pickle(buf, compression=None)
            return b"PKL_" + buf.getvalue()

    def load(self, data: bytes, data_type: str) -> Any:
        import pandas as pd

        head, body = data[:4], data[4:]
        if head == b"PARQ":
            frame = pd.read_parquet(io.BytesIO(body))
            if data_type.endswith("Series"):
                return frame.iloc[:, 0]
            return frame
        return pd.read_pickle(io.BytesIO(body), compression=None)


class CloudpickleMaterializer(Materializer):
    name = "cloudpickle"
    _warned: ClassVar[set[str]] = set()

    def can_save(self, value: Any) -> bool:
        return True

    def save(self, value: Any) -> bytes:
        import cloudpickle

        type_name = qualified_type_name(value)
        if type_name not in self._warned:
            self._warned.add(type_name)
            warnings.warn(
                f"dynpipe: no materializer for {type_name}; storing it with cloudpickle, which only "
                f"loads on Python {sys.version_info.major}.{sys.version_info.minor}. "
                "Register a materializer for this type to store it portably.",
                stacklevel=2,
            )
        return cloudpickle.dumps(value)

    def load(self, data: bytes, data_type: str) -> Any:
        import pickle

        return pickle.loads(data)


def qualified_type_name(value: Any) -> str:
    tp = type(value)
    return f"{tp.__module__}.{tp.__qualname__}"


class MaterializerRegistry:
    """Materializers by name, and per-type registrations tried before the built-ins."""

    def __init__(self) -> None:
        self._builtins: list[Materializer] = [
            JSONMaterializer(),
            BytesMaterializer(),
            LiteralMaterializer(),
            PydanticMaterializer(),
            LocalPydanticMaterializer(),
            NumpyMaterializer(),
            PandasMaterializer(),
        ]
        self._fallback = CloudpickleMaterializer()
        self._by_type: dict[type, Materializer] = {}
        self._by_name: dict[str, Materializer] = {
            m.name: m for m in [*self._builtins, self._fallback]
        }

    def register(self, tp: type, materializer: Materializer | type[Materializer]) -> None:
        inst = materializer() if isinstance(materializer, type) else materializer
        self._by_type[tp] = inst
        self._by_name[inst.name] = inst

    def add(self, materializer: Materializer | type[Materializer]) -> Materializer:
        inst = materializer() if isinstance(materializer, type) else materializer
        self._by_name[inst.name] = inst
        return inst

    def registered(self) -> list[tuple[type | None, Materializer]]:
        """What was registered at run time (not the built-ins): ``(type, m)`` per ``register``,
        ``(None, m)`` per ``add``. Worker processes start with the built-ins only, so these
        travel with each task."""
        builtin = {m.name for m in (*self._builtins, self._fallback)}
        items: list[tuple[type | None, Materializer]] = [
            (None, m) for n, m in self._by_name.items() if n not in builtin
        ]
        items.extend(self._by_type.items())
        return items

    def for_value(self, value: Any) -> Materializer:
        if self._by_type:
            for klass in type(value).__mro__:
                found = self._by_type.get(klass)
                if found is not None:
                    return found
        for mat in self._builtins:
            if mat.can_save(value):
                return mat
        return self._fallback

    def by_name(self, name: str) -> Materializer:
        try:
            return self._by_name[name]
        except KeyError:
            raise LookupError(
                f"no materializer named {name!r} is registered in this process; "
                "import the module that registers it before loading the artifact"
            ) from None


registry = MaterializerRegistry()


def register_materializer(tp: type, materializer: Materializer | type[Materializer]) -> None:
    """Use ``materializer`` for values of ``tp`` (and its subclasses) in every step."""
    registry.register(tp, materializer)
