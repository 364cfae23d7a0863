"""Output signatures and type checks: what a step declares, and whether a value fits it.

Below both the user API (``outputs``, ``steps``) and the runtimes (``runtimes/task``), so
the code that executes a step needs nothing user-facing.
"""

from __future__ import annotations

import ast
import collections.abc
import inspect
import numbers
import textwrap
import types
import typing
from dataclasses import dataclass
from typing import Annotated, Any, Union, get_args, get_origin

from .config import ArtifactConfig


@dataclass(frozen=True)
class OutputSpec:
    name: str
    annotation: Any
    artifact_config: ArtifactConfig | None = None


def _unwrap_annotated(tp: Any) -> tuple[Any, str | None, ArtifactConfig | None]:
    if get_origin(tp) is Annotated:
        base, *extras = get_args(tp)
        for extra in extras:
            if isinstance(extra, str):
                return base, extra, None
            if isinstance(extra, ArtifactConfig):
                return base, extra.name, extra
        return base, None, None
    return tp, None, None


def _returns_tuple_literal(func: Any) -> bool:
    """True when every ``return`` with a value in the function body returns a tuple literal."""
    try:
        source = textwrap.dedent(inspect.getsource(func))
        tree = ast.parse(source)
    except (OSError, TypeError, SyntaxError, IndentationError):
        return False
    fn = next(
        (n for n in tree.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))), None
    )
    if fn is None:
        return False
    found: list[bool] = []

    def visit(node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda, ast.ClassDef)):
                continue
            if isinstance(child, ast.Return) and child.value is not None:
                found.append(isinstance(child.value, ast.Tuple))
            visit(child)

    visit(fn)
    return bool(found) and all(found)


def parse_outputs(func: Any, hints: dict[str, Any]) -> list[OutputSpec]:
    """Output names and types of a step function: one ``output``, ``output_<i>`` for a tuple
    literal return, or the names given with ``Annotated``."""
    if "return" not in hints:
        return [OutputSpec("output", Any)]
    ret = hints["return"]
    if ret is None or ret is type(None):
        return []
    base, name, cfg = _unwrap_annotated(ret)
    origin = get_origin(base)
    if origin in (tuple, typing.Tuple) and name is None:  # noqa: UP006
        args = get_args(base)
        if args and args[-1] is not Ellipsis and _returns_tuple_literal(func):
            specs = []
            for i, arg in enumerate(args):
                a_base, a_name, a_cfg = _unwrap_annotated(arg)
                specs.append(OutputSpec(a_name or f"output_{i}", a_base, a_cfg))
            names = [s.name for s in specs]
            if len(set(names)) != len(names):
                raise ValueError(f"step {func.__name__!r} has duplicate output names: {names}")
            return specs
    return [OutputSpec(name or "output", base, cfg)]


class CallShape:
    """What binding a call needs from a step's signature, worked out once per step.

    ``inspect.Signature.bind_partial`` re-walks every parameter with several checks per call
    (~10 µs, a tenth of a trivial step's Python time); most step calls pass plain positional
    or keyword arguments, which ``bind`` maps directly. Anything else (``*args``, positional-
    only parameters, a bad call) returns None so that inspect binds it and words the error.
    """

    __slots__ = ("names", "order", "positional", "required", "simple")

    def __init__(self, signature: inspect.Signature) -> None:
        params = list(signature.parameters.values())
        kinds = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
        self.simple = all(p.kind in kinds for p in params)
        self.order = tuple(p.name for p in params)
        self.names = frozenset(self.order)
        self.positional = tuple(p.name for p in params if p.kind is inspect.Parameter.POSITIONAL_OR_KEYWORD)
        self.required = tuple(
            p.name for p in params
            if p.default is p.empty and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
        )

    def bind(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, Any] | None:
        """The arguments by name in signature order (as ``bind_partial`` gives them), or None."""
        positional = self.positional
        if not self.simple or len(args) > len(positional):
            return None
        arguments = dict(zip(positional, args, strict=False))
        if not kwargs:
            return arguments
        if not self.names.issuperset(kwargs) or not arguments.keys().isdisjoint(kwargs):
            return None  # an unknown name or one given twice: inspect's error says which
        arguments.update(kwargs)
        if len(kwargs) == 1:
            return arguments  # it names a parameter after the positional ones: already in order
        return {n: arguments[n] for n in self.order if n in arguments}


def type_name(tp: Any) -> str:
    if tp is Any:
        return "Any"
    if isinstance(tp, type) and get_origin(tp) is None:
        return tp.__name__ if tp.__module__ == "builtins" else f"{tp.__module__}.{tp.__qualname__}"
    return str(tp).replace("typing.", "")


_NUMERIC_ABC: dict[type, type] = {int: numbers.Integral, float: numbers.Real}


def type_matches(value: Any, tp: Any, depth: int = 0) -> bool:
    """Cheap structural check of ``value`` against an annotation (first items of containers)."""
    if type(value) is tp:  # the common case, exactly the annotated class: no further checks
        return True
    if tp is Any or tp is inspect.Parameter.empty or isinstance(tp, typing.TypeVar):
        return True
    if tp is None or tp is type(None):
        return value is None
    origin = get_origin(tp)
    if origin is None:
        if isinstance(tp, type):
            if isinstance(value, tp):
                return not (tp is int and type(value) is bool)
            if tp in _NUMERIC_ABC and type(value) is not bool and isinstance(value, _NUMERIC_ABC[tp]):
                return True  # an int where a float is expected; numpy scalars (np.int64, np.float32)
            return tp is complex and type(value) in (int, float)
        return True  # forward references, NewType and friends: do not guess
    if origin is Annotated:
        return type_matches(value, get_args(tp)[0], depth)
    if origin is Union or origin is types.UnionType:
        return any(type_matches(value, arg, depth) for arg in get_args(tp))
    if origin is typing.Literal:
        return value in get_args(tp)
    if not isinstance(origin, type):
        return True
    container: Any = origin  # an Any class: isinstance must not narrow ``value`` to ``object``
    if not isinstance(value, container):
        return False
    if depth > 3:
        return True
    args = get_args(tp)
    if not args:
        return True
    if origin is tuple:
        if len(args) == 2 and args[1] is Ellipsis:
            return all(type_matches(v, args[0], depth + 1) for v in value[:5])
        return len(value) == len(args) and all(
            type_matches(v, a, depth + 1) for v, a in zip(value, args, strict=False)
        )
    if issubclass(origin, collections.abc.Mapping):
        items = list(value.items())[:5]
        return all(
            type_matches(k, args[0], depth + 1) and type_matches(v, args[-1], depth + 1)
            for k, v in items
        )
    if issubclass(origin, (list, set, frozenset, collections.abc.Sequence)):
        it = value[:5] if isinstance(value, (list, tuple)) else list(value)[:5]
        return all(type_matches(v, args[0], depth + 1) for v in it)
    return True
