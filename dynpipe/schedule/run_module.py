"""``dynpipe run MODULE [-p NAME=VALUE]... [--config run.yaml]``: run a module's pipeline once.

``-p`` values arrive as text; each is parsed against the pipeline's signature (annotation,
else the default's type) so a typo fails before the run starts, naming the parameter.
"""

from __future__ import annotations

import argparse
import copy
import inspect
import json
import os
import sys
from typing import Any

from ..errors import ConfigError, DynpipeError


def _annotation(pipe: Any, name: str, param: inspect.Parameter) -> Any:
    from ..steps import resolved_type_hints

    hints = resolved_type_hints(pipe.entrypoint)
    if name in hints:
        return hints[name]
    if param.default is not param.empty and param.default is not None:
        return type(param.default)
    return None


def parse_parameters(pipe: Any, pairs: list[str]) -> dict[str, Any]:
    """``["lr=0.1", ...]`` -> ``{"lr": 0.1}``, checked against ``pipe``'s signature."""
    from pydantic import TypeAdapter, ValidationError

    from ..outputs import type_name

    params = pipe.signature.parameters
    values: dict[str, Any] = {}
    for pair in pairs:
        name, sep, raw = pair.partition("=")
        name = name.strip()
        if not sep or not name:
            raise ConfigError(f"pipeline {pipe.name!r}: -p {pair!r} is not NAME=VALUE")
        if name not in params or params[name].kind in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD):
            known = ", ".join(n for n, p in params.items() if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD))
            raise ConfigError(f"pipeline {pipe.name!r} has no parameter {name!r} (parameters: {known or 'none'})")
        ann = _annotation(pipe, name, params[name])
        value: Any = raw
        if ann is not str:
            try:
                value = json.loads(raw)
            except json.JSONDecodeError:
                value = raw
        if ann is not None:
            try:
                value = TypeAdapter(ann).validate_python(value)
            except ValidationError:
                raise ConfigError(
                    f"pipeline {pipe.name!r}: parameter {name!r} expects {type_name(ann)}, got {raw!r}"
                ) from None
            except Exception:  # noqa: BLE001 - a type pydantic cannot check: keep the parsed value
                pass
        values[name] = value
    return values


def with_config(pipe: Any, path: str) -> Any:
    """A copy of ``pipe`` with a YAML config template applied, as ``%%pipeline --config`` does."""
    from ..config_yaml import load_config_file

    clone = copy.copy(pipe)
    clone.config = pipe.config.merged(**load_config_file(path, None), config_path=path)
    return clone


def run_module(target: str, pairs: list[str], config: str | None = None) -> Any:
    """Import ``target`` (``file.py[:pipeline]`` or ``package.module[:pipeline]``) and run it."""
    from .target import load_pipeline

    pipe = load_pipeline(target)
    params = parse_parameters(pipe, pairs)
    if config:
        pipe = with_config(pipe, config)
    return pipe(**params)


def cmd_run(args: argparse.Namespace) -> int:
    # The run's origin is the module it names, not the dynpipe command (this process runs it alone).
    os.environ.setdefault("DYNPIPE_RUN_ORIGIN", args.module)
    try:
        run = run_module(args.module, args.param, args.config)
    except DynpipeError as exc:
        if not isinstance(exc, (ConfigError, TypeError)):
            raise
        print(f"dynpipe: {exc}", file=sys.stderr)
        return 2
    print(f"run {run.name}: {run.status.value}")
    return 0 if run.status.value == "completed" else 1


def add_run_command(sub: Any) -> None:
    """Register ``dynpipe run`` on the CLI's subparsers."""
    p = sub.add_parser("run", help="run a pipeline module once: MODULE [-p NAME=VALUE]... [--config FILE]")
    p.add_argument("module", help="file.py[:pipeline] or package.module[:pipeline]")
    p.add_argument("-p", "--param", action="append", default=[], metavar="NAME=VALUE", help="a pipeline parameter")
    p.add_argument("--config", help="YAML config template applied to the run")
    p.set_defaults(func=cmd_run)
