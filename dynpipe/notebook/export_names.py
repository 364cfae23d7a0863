"""Name checks for export: what a cell binds and reads, and the ``parameters`` cell.

A module runs its cells in a different shape than the kernel did (set-up code at module
level, ``%%pipeline`` cells inside one function, inspection cells left out), so export
checks that no name crosses those borders in a way that would change behaviour.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass

from ..errors import TargetError

_SCOPES = (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)


def bound_names(tree: ast.AST) -> set[str]:
    """Names a cell binds at its top level (assignments, defs, imports, loop targets)."""
    names: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
            return
        if isinstance(node, ast.Lambda):
            return
        if isinstance(node, ast.Name) and isinstance(node.ctx, (ast.Store, ast.Del)):
            names.add(node.id)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            for alias in node.names:
                names.add((alias.asname or alias.name).split(".")[0])
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return names


def _locals(node: ast.AST) -> set[str]:
    args = node.args  # type: ignore[attr-defined]
    names = {a.arg for a in [*args.posonlyargs, *args.args, *args.kwonlyargs]}
    names |= {a.arg for a in (args.vararg, args.kwarg) if a is not None}
    body = node.body if isinstance(node.body, list) else [node.body]  # type: ignore[attr-defined]
    for stmt in body:
        names |= bound_names(stmt)
    return names


def free_reads(tree: ast.AST) -> list[tuple[str, int]]:
    """(name, line) of every read of a global name, inside functions too (scope-aware)."""
    reads: list[tuple[str, int]] = []

    def visit(node: ast.AST, shadowed: frozenset[str]) -> None:
        if isinstance(node, _SCOPES):
            for default in [*node.args.defaults, *node.args.kw_defaults]:
                if default is not None:
                    visit(default, shadowed)
            if not isinstance(node, ast.Lambda):
                for deco in node.decorator_list:
                    visit(deco, shadowed)
            inner = shadowed | _locals(node)
            body = node.body if isinstance(node.body, list) else [node.body]
            for stmt in body:
                visit(stmt, frozenset(inner))
            return
        if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load) and node.id not in shadowed:
            reads.append((node.id, node.lineno))
        for child in ast.iter_child_nodes(node):
            visit(child, shadowed)

    visit(tree, frozenset())
    return reads


def defines_something(tree: ast.Module, effects: int) -> bool:
    """A cell after the first ``%%pipeline`` cell that set-up code needs: defs, classes,
    imports, or a translated ``%env``/``%cd``/``!cmd``."""
    kinds = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Import, ast.ImportFrom)
    return effects > 0 or any(isinstance(stmt, kinds) for stmt in tree.body)


@dataclass
class Parameter:
    """One name of the ``parameters`` cell, as it appears in the pipeline's signature."""

    name: str
    annotation: str | None
    default: str

    def render(self) -> str:
        return f"{self.name}: {self.annotation} = {self.default}" if self.annotation else f"{self.name}={self.default}"


_PLAIN_TYPES = (bool, int, float, str, bytes, list, dict, tuple, set)


def parameters_of(source: str, where: str) -> list[Parameter]:
    """The ``NAME = VALUE`` / ``NAME: TYPE = VALUE`` lines of a ``parameters`` cell (papermill's
    convention); their annotation comes from the cell or from a literal value's type."""
    try:
        tree = ast.parse(source)
    except SyntaxError as exc:
        raise TargetError(f"{where}, line {exc.lineno}: invalid syntax: {exc.msg}") from None
    params: list[Parameter] = []
    for stmt in tree.body:
        if isinstance(stmt, ast.Assign) and len(stmt.targets) == 1 and isinstance(stmt.targets[0], ast.Name):
            name, annotation, value = stmt.targets[0].id, None, stmt.value
        elif isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name) and stmt.value is not None:
            name, value = stmt.target.id, stmt.value
            annotation = ast.get_source_segment(source, stmt.annotation)
        else:
            raise TargetError(
                f"{where}, line {stmt.lineno}: a parameters cell holds only NAME = VALUE lines"
                " (they become the pipeline's parameters)"
            )
        default = ast.get_source_segment(source, value) or ""
        if annotation is None:
            try:
                literal = ast.literal_eval(value)
            except ValueError:
                literal = None
            if literal is not None and type(literal) in _PLAIN_TYPES:
                annotation = type(literal).__name__
        params = [p for p in params if p.name != name] + [Parameter(name, annotation, default)]
    return params
