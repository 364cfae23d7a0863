"""Materializers: how a Python value becomes bytes in the artifact store and back.

Built-ins cover JSON-able values, bytes, pydantic models, numpy arrays and pandas
frames (detected by module name so neither library is imported unless used);
cloudpickle is the last resort and warns once, because such artifacts only load
on the same Python version.

Materializers of potentially large values (numpy, pandas, pickles) also *stream*
(``streams = True``): ``save_to`` writes into a file object and ``load_from`` reads from
one, so an artifact store that can stream (an fsspec URL) never holds a second full copy
of a big object in memory. ``bytes`` need no streaming: the value is its own bytes.
"""

from __future__ import annotations

import importlib
import io
import json
import sys
import warnings
from typing import IO, Any, ClassVar


class Materializer:
    """Base class: subclass, set ``name`` and ``handles``, implement save/load."""

    name: ClassVar[str] = "base"
    handles: ClassVar[tuple[type, ...]] = ()
    streams: ClassVar[bool] = False  # True: save_to/load_from avoid staging the whole value as bytes

    def can_save(self, value: Any) -> bool:
        return isinstance(value, self.handles)

    def save(self, value: Any) -> bytes:  # pragma: no cover - interface
        raise NotImplementedError

    def load(self, data: bytes, data_type: str) -> Any:  # pragma: no cover - interface
        raise NotImplementedError

    def save_to(self, value: Any, fh: IO[bytes]) -> None:
        """Write the value's bytes into ``fh`` (only ``write`` is called)."""
        fh.write(self.save(value))

    def load_from(self, fh: IO[bytes], data_type: str) -> Any:
        """Read the value from ``fh`` (only ``read`` is called)."""
        return self.load(fh.read(), data_type)


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


#: Built once: ``json.dumps`` with options builds a new ``JSONEncoder`` per call (per step output).
_COMPACT_JSON = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False)


def _json_text(value: Any) -> str:
    """What ``_COMPACT_JSON`` writes, without setting up an encoder for the commonest outputs
    (an int, a bool, None: ~1 µs less per step; tests/test_step_call_path.py checks the bytes)."""
    tp = type(value)
    if tp is int:
        return int.__repr__(value)  # json's own conversion (too many digits raises the same ValueError)
    if tp is bool:
        return "true" if value else "false"
    if value is None:
        return "null"
    return _COMPACT_JSON.encode(value)


class JSONMaterializer(Materializer):
    name = "json"

    def can_save(self, value: Any) -> bool:
        return is_plain_json(value)

    def save(self, value: Any) -> bytes:
        return _json_text(value).encode()

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
    streams = True

    def can_save(self, value: Any) -> bool:
        np = sys.modules.get("numpy")
        return np is not None and isinstance(value, (np.ndarray, np.generic)) and value.dtype != object

    def save(self, value: Any) -> bytes:
        buf = io.BytesIO()
        self.save_to(value, buf)
        return buf.getvalue()

    def save_to(self, value: Any, fh: IO[bytes]) -> None:
        import numpy as np

        # Into a file object numpy writes the data in 16 MiB chunks, never the whole array at once.
        np.lib.format.write_array(fh, np.asarray(value), allow_pickle=False)

    def load(self, data: bytes, data_type: str) -> Any:
        return self.load_from(io.BytesIO(data), data_type)

    def load_from(self, fh: IO[bytes], data_type: str) -> Any:
        import numpy as np

        # read_array, not np.load: it only reads forwards (np.load seeks back after the magic).
        array = np.lib.format.read_array(fh, allow_pickle=False)
        if array.ndim == 0 and data_type != "numpy.ndarray":
            return array[()]  # a numpy scalar (np.int64, np.float32...) comes back as one
        return array


class PandasMaterializer(Materializer):
    name = "pandas"
    streams = True

    def can_save(self, value: Any) -> bool:
        pd = sys.modules.get("pandas")
        return pd is not None and isinstance(value, (pd.DataFrame, pd.Series))

    def save(self, value: Any) -> bytes:
        buf = io.BytesIO()
        self.save_to(value, buf)
        return buf.getvalue()

    def save_to(self, value: Any, fh: IO[bytes]) -> None:
        import pandas as pd

        # Parquet is built in memory first (a frame parquet cannot hold is only known once
        # tried, and then the pickle must be written instead); its buffer is written as is.
        buf = io.BytesIO()
        try:
            frame = value.to_frame() if isinstance(value, pd.Series) else value
            frame.to_parquet(buf)
        except (ImportError, ValueError):
            fh.write(b"PKL_")
            value.to_pickle(fh, compression=None)
            return
        fh.write(b"PARQ")
        fh.write(buf.getbuffer())

    def load(self, data: bytes, data_type: str) -> Any:
        return self.load_from(io.BytesIO(data), data_type)

    def load_from(self, fh: IO[bytes], data_type: str) -> Any:
        import pandas as pd

        if fh.read(4) == b"PARQ":
            frame = pd.read_parquet(io.BytesIO(fh.read()))  # parquet readers need to seek
            if data_type.endswith("Series"):
                return frame.iloc[:, 0]
            return frame
        return pd.read_pickle(fh, compression=None)


class CloudpickleMaterializer(Materializer):
    name = "cloudpickle"
    streams = True
    _warned: ClassVar[set[str]] = set()

    def can_save(self, value: Any) -> bool:
        return True

    def save(self, value: Any) -> bytes:
        buf = io.BytesIO()
        self.save_to(value, buf)
        return buf.getvalue()

    def save_to(self, value: Any, fh: IO[bytes]) -> None:
        import cloudpickle

        type_name = qualified_type_name(value)
        if type_name not in self._warned:
            self._warned.add(type_name)
            warnings.warn(
                f"dynpipe: no materializer for {type_name}; storing it with cloudpickle, which only "
                f"loads on Python {sys.version_info.major}.{sys.version_info.minor}. "
                "Register a materializer for this type to store it portably.",
                stacklevel=3,
            )
        cloudpickle.dump(value, fh)

    def load(self, data: bytes, data_type: str) -> Any:
        import pickle

        return pickle.loads(data)

    def load_from(self, fh: IO[bytes], data_type: str) -> Any:
        import pickle

        return pickle.load(fh)


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
