"""What travels from the orchestrator to another process (a worker or a pod) with a task.

A step function goes by import path when the other side can import it (``func_ref``),
else by value; materializers registered at run time travel as pickles
(``MaterializerShipment``). Shared by every out-of-process runtime. The local pool also
pickles the parts of a task that every attempt of a step shares once (``StepParts``).
"""

from __future__ import annotations

import operator
import sys
import threading
from typing import TYPE_CHECKING, Any

import cloudpickle

from ..store.materializers import registry
from .worker import STEP_FIELDS, FuncRef

if TYPE_CHECKING:
    from .task import StepTask

_PLAIN_SCALARS = (str, int, float, bool, type(None), bytes)


def func_ref(func: Any) -> FuncRef | None:
    """An import path for ``func`` if a worker can import it; None means: send by value."""
    module = getattr(func, "__module__", None)
    qualname = getattr(func, "__qualname__", None)
    if not module or not qualname or "<" in qualname or module in ("__main__", "__mp_main__"):
        return None
    mod = sys.modules.get(module)
    if mod is None or getattr(mod, "__spec__", None) is None or not getattr(mod, "__file__", None):
        return None
    obj: Any = mod
    try:
        for part in qualname.split("."):
            obj = getattr(obj, part)
    except AttributeError:
        return None
    if obj is func or getattr(obj, "entrypoint", None) is func:
        return FuncRef(module, qualname)
    return None


class MaterializerShipment:
    """Materializers registered in this process that a fresh worker would not know, as pickles.

    Each travels as its own pickle so one that cannot load in the worker (its module is
    not importable there) only matters to the steps that use it. Pickling them for every
    task would cost each step; one shipment per runtime keeps the last pickles and reuses
    them while the registrations are the very same objects (held here, so compared by
    identity without the risk of a recycled ``id()``).
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._items: list[tuple[Any, Any]] = []
        self._blobs: list[bytes] = []

    def blobs(self) -> list[bytes] | None:
        """Pickled ``(type or None, materializer)`` registrations, or None when there are none."""
        items = registry.registered()
        if not items:
            return None
        with self._lock:
            if len(items) == len(self._items) and all(
                a[0] is b[0] and a[1] is b[1] for a, b in zip(items, self._items, strict=False)
            ):
                return self._blobs
        blobs: list[bytes] = []
        for item in items:
            try:
                blobs.append(cloudpickle.dumps(item))
            except Exception:  # noqa: BLE001 - unusable in workers; steps using it fail clearly
                continue
        with self._lock:
            self._items, self._blobs = items, blobs
        return blobs


#: The shared fields of a task as a tuple, in one C call (run once per attempt).
_step_fields = operator.attrgetter(*STEP_FIELDS)


class StepParts:
    """The task fields every attempt of a step shares (its types, output specs,
    materializers, settings), cloudpickled once per step and run instead of per attempt.

    cloudpickle asks about every class and function it meets (may it go by reference?):
    most of a task's pickling time. With these fields sent apart, the rest of a typical
    task is plain data the C pickler writes in a fraction of that (``plain_parameters``).
    Entries are keyed by the identity of the objects, which are held here, so a recycled
    ``id()`` cannot match; a run's effective step config is built once, a new run (or a
    reconfigured step) brings new objects.
    """

    LIMIT = 256  # entries; then the cache starts over

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._cache: dict[tuple[int, ...], tuple[tuple[Any, ...], bytes]] = {}

    def blob(self, task: StepTask) -> bytes:
        parts: tuple[Any, ...] = _step_fields(task)
        key = tuple(map(id, parts))
        with self._lock:
            hit = self._cache.get(key)
        if hit is not None and all(map(operator.is_, hit[0], parts)):  # same length: same fields
            return hit[1]
        blob = cloudpickle.dumps(parts, protocol=5)
        with self._lock:
            if len(self._cache) >= self.LIMIT:
                self._cache.clear()
            self._cache[key] = (parts, blob)
        return blob


def plain_parameters(value: Any, budget: int = 64) -> bool:
    """Built-in scalars and small lists, tuples and dicts of them (exact types): what the C
    pickler writes the same way cloudpickle does. An object of a class defined in a notebook
    is not: pickled by reference it would not load in a worker."""
    kind = type(value)
    if kind in _PLAIN_SCALARS:
        return True
    if kind is dict:
        return len(value) <= budget and all(
            type(k) in _PLAIN_SCALARS and plain_parameters(v, budget // 2) for k, v in value.items()
        )
    if kind is list or kind is tuple:
        return len(value) <= budget and all(plain_parameters(v, budget // 2) for v in value)
    return False
