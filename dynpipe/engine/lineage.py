"""Lineage through ``.load()``: values loaded in a run remember the step that produced them.

``xs = fetch().load(); [parse.submit(x) for x in xs]`` hands ``parse`` plain values; without
this, the DAG would show ``fetch`` unconnected. A loaded value (and each element of a loaded
list, tuple or dict) is remembered by ``id()``, with a strong reference so the id stays that
object's for the whole run; binding a step argument then costs one dict lookup.
"""

from __future__ import annotations

from typing import Any

#: Values CPython shares between unrelated code (small ints, one-character strings, None,
#: booleans, the empty tuple): their identity says nothing about where they came from.
_SHARED_INT = range(-5, 257)


def _shared(value: Any) -> bool:
    tp = type(value)
    if value is None or tp is bool:
        return True
    if tp is int:
        return value in _SHARED_INT
    if tp is str or tp is bytes:
        return len(value) <= 1
    return tp is tuple and not value


class LoadedValues:
    """``id(value) -> (value, producer invocation id)`` for values loaded during one run.

    No lock: a single dict get or set is atomic, and a value is remembered before the code
    that loaded it can pass it on.
    """

    __slots__ = ("_by_id", "_open")

    def __init__(self) -> None:
        self._by_id: dict[int, tuple[Any, str]] = {}
        self._open = True

    def remember(self, value: Any, producer: str) -> None:
        """Record ``value`` (and its elements, one level deep) as loaded from ``producer``."""
        if not self._open or _shared(value):
            return
        by_id = self._by_id
        by_id[id(value)] = (value, producer)
        tp = type(value)
        if tp is list or tp is tuple:
            items: Any = value
        elif tp is dict:
            items = value.values()
        else:
            return
        for item in items:
            if not _shared(item):
                by_id[id(item)] = (item, producer)

    def producer_of(self, value: Any) -> str | None:
        """The invocation whose loaded output ``value`` is (or an element of), else None."""
        by_id = self._by_id
        if not by_id:
            return None
        hit = by_id.get(id(value))
        if hit is not None and hit[0] is value:
            return hit[1]
        return None

    def producers_in(self, value: Any) -> list[str]:
        """Producers of ``value``, or else of the elements of a list/tuple built from loaded ones."""
        if not self._by_id:
            return []
        found = self.producer_of(value)
        if found is not None:
            return [found]
        if type(value) not in (list, tuple):
            return []
        producers: list[str] = []
        for item in value:
            p = self.producer_of(item)
            if p is not None and p not in producers:
                producers.append(p)
        return producers

    def close(self) -> None:
        """The run is over: drop the references (its values may be freed)."""
        self._open = False
        self._by_id = {}
