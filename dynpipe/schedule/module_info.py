"""What a pipeline module defines, read with ``ast``: its pipelines and their parameters.

Creating a schedule must not import the module: that would run its set-up cells (loading
data, starting clients) on the machine that merely registers the schedule.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class PipelineInfo:
    """A ``@pipeline``-decorated function: its attribute, its pipeline name and its parameters."""

    attr: str
    name: str
    params: tuple[str, ...]
    takes_any: bool


def _pipeline_decorator(node: ast.expr) -> ast.expr | None:
    """The decorator expression if it is ``pipeline``/``dynpipe.pipeline`` (called or not)."""
    target = node.func if isinstance(node, ast.Call) else node
    if isinstance(target, ast.Name) and target.id == "pipeline":
        return node
    if isinstance(target, ast.Attribute) and target.attr == "pipeline":
        return node
    return None


def pipelines_in(path: Path) -> list[PipelineInfo]:
    """The pipelines ``path`` defines; a missing or unparsable file is an error naming it."""
    if not path.is_file():
        raise ValueError(f"pipeline module {path} does not exist")
    try:
        tree = ast.parse(path.read_text(), str(path))
    except SyntaxError as exc:
        raise ValueError(f"pipeline module {path} is not valid Python (line {exc.lineno}: {exc.msg})") from None
    found: list[PipelineInfo] = []
    for node in tree.body:
        if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        for dec in node.decorator_list:
            hit = _pipeline_decorator(dec)
            if hit is None:
                continue
            name = node.name
            if isinstance(hit, ast.Call):
                for kw in hit.keywords:
                    if kw.arg == "name" and isinstance(kw.value, ast.Constant) and isinstance(kw.value.value, str):
                        name = kw.value.value
            args = node.args
            params = tuple(a.arg for a in [*args.posonlyargs, *args.args, *args.kwonlyargs])
            found.append(PipelineInfo(node.name, name, params, args.kwarg is not None))
            break
    return found


def resolve_module(target: str) -> tuple[Path, PipelineInfo]:
    """``file.py`` or ``file.py:pipeline`` -> the file and the pipeline it names (errors say which)."""
    where, sep, attr = target.rpartition(":")
    if not sep or "/" in attr or attr.endswith(".py"):
        where, attr = target, ""
    path = Path(where).expanduser().resolve()
    if path.suffix != ".py":
        raise ValueError(
            f"pipeline module {target!r}: give a .py file (e.g. from dynpipe export), optionally FILE:PIPELINE"
        )
    found = pipelines_in(path)
    names = ", ".join(p.attr for p in found) or "none"
    if attr:
        match = [p for p in found if attr in (p.attr, p.name)]
        if not match:
            raise ValueError(f"{path} has no pipeline named {attr!r} (pipelines: {names})")
        return path, match[0]
    if len(found) != 1:
        raise ValueError(f"{path} defines {len(found)} pipelines ({names}); name one as FILE:PIPELINE")
    return path, found[0]


def check_params(info: PipelineInfo, keys: list[str], module: Path) -> None:
    """A ``-p KEY=VALUE`` whose KEY the pipeline does not take is an error naming both."""
    if info.takes_any:
        return
    for key in keys:
        if key not in info.params:
            raise ValueError(
                f"parameter {key!r} is not a parameter of pipeline {info.name!r} in {module}"
                f" (parameters: {', '.join(info.params) or 'none'})"
            )
