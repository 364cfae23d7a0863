"""What travels from the orchestrator to another process (a worker or a pod) with a task.

A step function goes by import path when the other side can import it (``func_ref``),
else by value; materializers registered at run time travel as pickles
(``MaterializerShipment``). Shared by every out-of-process runtime.
"""

from __future__ import annotations

import sys
import threading
from typing import Any

import cloudpickle

from ..store.materializers import registry
from .worker import FuncRef


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
