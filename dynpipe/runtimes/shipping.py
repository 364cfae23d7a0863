"""What travels from the orchestrator to another process (a worker or a pod) with a task.

A step function goes by import path when the other side can import it (``func_ref``),
else by value; materializers registered at run time travel as pickles
(``custom_materializers``). Shared by every out-of-process runtime.
"""

from __future__ import annotations

import sys
from typing import Any

import cloudpickle

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


_BUILTIN_MATERIALIZERS: frozenset[str] | None = None


def custom_materializers() -> list[bytes] | None:
    """Materializers registered in this process that a fresh worker would not know.

    Each travels as its own pickle so one that cannot load in the worker (its module is
    not importable there) only matters to the steps that use it.
    """
    global _BUILTIN_MATERIALIZERS
    from ..store.materializers import MaterializerRegistry, registry

    if _BUILTIN_MATERIALIZERS is None:
        _BUILTIN_MATERIALIZERS = frozenset(MaterializerRegistry()._by_name)
    items: list[tuple[Any, Any]] = [
        (None, m) for n, m in registry._by_name.items() if n not in _BUILTIN_MATERIALIZERS
    ]
    items.extend(registry._by_type.items())
    if not items:
        return None
    key = tuple((id(t), id(m)) for t, m in items)
    cached = _MATERIALIZER_BLOBS.get(key)
    if cached is None:
        cached = []
        for item in items:
            try:
                cached.append(cloudpickle.dumps(item))
            except Exception:  # noqa: BLE001 - unusable in workers; steps using it fail clearly
                continue
        _MATERIALIZER_BLOBS.clear()
        _MATERIALIZER_BLOBS[key] = cached
    return cached


_MATERIALIZER_BLOBS: dict[tuple[tuple[int, int], ...], list[bytes]] = {}
