"""Name checks for export: what a cell binds and reads, and the ``parameters`` cell.

A module runs its cells in a different shape than the kernel did (set-up code at module
level, ``%%pipeline`` cells inside one function, inspection cells left out), so export
checks that no name crosses those borders in a way that would change behaviour.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from typing import Any

from ..errors import TargetError

_SCOPES = (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)


_COMPREHENSIONS = (ast.ListComp, ast.SetComp, ast.DictComp, ast.GeneratorExp)


def bindings(tree: ast.AST) -> list[tuple[str, int]]:
    """(name, line) of every name a cell binds in its own scope (assignments, defs, imports,
    loop targets; not inside functions, lambdas or comprehensions, which have their own)."""
    found: list[tuple[str, int]] = []

    def visit(node: ast.AST) -> None:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            found.append((node.name, node.lineno))
            for deco in node.decorator_list:
                visit(deco)
            return
        if isinstance(node, (ast.Lambda, *_COMPREHENSIONS)):
            return
        if isinstance(node, ast.Name) and isinstance(node.ctx, (ast.Store, ast.Del)):
            found.append((node.id, node.lineno))
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            for alias in node.names:
                found.append(((alias.asname or alias.name).split(".")[0], node.lineno))
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return found


def bound_names(tree: ast.AST) -> set[str]:
    """Names a cell binds in its own scope."""
    return {name for name, _ in bindings(tree)}


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
        if isinstance(node, _COMPREHENSIONS):
            targets = frozenset(n.id for g in node.generators for n in ast.walk(g.target) if isinstance(n, ast.Name))
            for child in ast.iter_child_nodes(node):
                visit(child, shadowed | targets)
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


_IPYTHON_ONLY = frozenset({"get_ipython"})


def check_names(cells: list[Any], params: set[str], where: str) -> None:
    """Stop on a name the module would resolve differently from the kernel.

    ``cells`` have ``number``, ``kind`` (setup | pipeline | left-out | note | parameters) and
    ``tree``; set-up cells run at module level, pipeline cells in one function, the others
    not at all.
    """
    included = [c for c in cells if c.kind in ("setup", "pipeline") and c.tree is not None]
    in_setup: set[str] = set().union(*(bound_names(c.tree) for c in included if c.kind == "setup"))
    in_body: set[str] = set().union(*(bound_names(c.tree) for c in included if c.kind == "pipeline"))

    def stop(cell: Any, line: int, message: str) -> TargetError:
        return TargetError(f"{where}: cell {cell.number}, line {line}: {message}")

    first_bind: dict[str, tuple[int, int]] = {}
    for cell in included:
        own = bound_names(cell.tree)
        reads = free_reads(cell.tree)
        for var, line in reads:
            if var in _IPYTHON_ONLY and var not in in_setup | in_body:
                raise stop(cell, line, f"{var}() exists only in IPython; a plain module has no kernel to call")
            if cell.kind == "setup" and var in params and var not in own:
                raise stop(
                    cell,
                    line,
                    f"set-up code reads parameter {var!r}, which the exported module makes a"
                    " pipeline parameter; pass it to the step as an input",
                )
            if cell.kind == "setup" and var in in_body - in_setup - own:
                raise stop(
                    cell,
                    line,
                    f"set-up code reads {var!r}, which a %%pipeline cell sets; in the module that is"
                    " a local variable of the pipeline function; pass it as an argument",
                )
        if cell.kind == "pipeline":
            for var, line in sorted(bindings(cell.tree), key=lambda b: b[1]):
                first_bind.setdefault(var, (cell.number, line))
            for var, line in reads:
                bind = first_bind.get(var)
                if (
                    var in in_setup
                    and var in in_body
                    and var not in params
                    and (bind is None or bind >= (cell.number, line))
                ):
                    raise stop(
                        cell,
                        line,
                        f"reads the set-up variable {var!r} before a %%pipeline cell assigns it; in the"
                        " module that makes it local to the pipeline function (UnboundLocalError); rename one",
                    )
    for i, cell in enumerate(cells):
        if cell.kind not in ("left-out", "note") or cell.tree is None:
            continue
        dropped = bound_names(cell.tree) - in_setup - in_body - params
        for later in cells[i + 1 :]:
            if later.kind not in ("setup", "pipeline") or later.tree is None:
                continue
            for var, line in free_reads(later.tree):
                if var in dropped:
                    raise stop(
                        later,
                        line,
                        f"reads {var!r}, set by cell {cell.number}, which export leaves out (it runs"
                        " after the first %%pipeline cell and defines no function, class or import, or it belongs"
                        " to another run); move that assignment into a %%pipeline or set-up cell",
                    )
