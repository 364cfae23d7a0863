"""Resolve ``path/to/module.py:pipeline`` or ``package.module:pipeline`` to a Pipeline object."""

from __future__ import annotations

import importlib
import importlib.util
import sys
from pathlib import Path
from typing import Any

from ..errors import TargetError


def split_target(target: str) -> tuple[str, str | None]:
    module, sep, attr = target.rpartition(":")
    if not sep or "/" in attr or attr.endswith(".py"):
        return target, None
    return module, attr or None


def load_pipeline(target: str) -> Any:
    """Import the module without running its ``__main__`` block and return its pipeline."""
    from ..pipelines import Pipeline

    where, attr = split_target(target)
    if where.endswith(".py") or "/" in where:
        path = Path(where).resolve()
        if not path.is_file():
            raise TargetError(f"schedule target file {path} does not exist")
        name = f"dynpipe_scheduled_{path.stem}"
        spec = importlib.util.spec_from_file_location(name, path)
        if spec is None or spec.loader is None:
            raise TargetError(f"cannot import {path} as a Python module")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        sys.path.insert(0, str(path.parent))
        try:
            spec.loader.exec_module(module)
        except Exception as exc:
            raise TargetError(f"importing {path} failed: {type(exc).__name__}: {exc}") from exc
        finally:
            # Like a script's __main__, the module is not importable by this name in a worker
            # process: out of sys.modules, its isolated steps travel by value, not by import path.
            sys.modules.pop(name, None)
    else:
        try:
            module = importlib.import_module(where)
        except ImportError as exc:
            raise TargetError(f"cannot import module {where!r}: {exc}") from exc
    pipelines = {k: v for k, v in vars(module).items() if isinstance(v, Pipeline)}
    if attr is not None:
        if attr not in pipelines:
            raise TargetError(
                f"{where} has no pipeline named {attr!r} (pipelines: {', '.join(pipelines) or 'none'})"
            )
        return pipelines[attr]
    if len(pipelines) != 1:
        raise TargetError(
            f"{where} defines {len(pipelines)} pipelines ({', '.join(pipelines) or 'none'});"
            " name one as FILE:PIPELINE"
        )
    return next(iter(pipelines.values()))
