"""Binding a step call: arguments become parameters, input artifacts and dependencies.

Runs in the caller's thread, so bad input fails the call itself with an error naming the
step and the input, before anything is recorded.
"""

from __future__ import annotations

import json
import sys
from typing import TYPE_CHECKING, Any

from ..config import ConfigError
from ..errors import StepTypeError
from ..outputs import OutputArtifact
from ..signatures import type_matches, type_name
from ..store.materializers import is_plain_json
from ..store.models import ArtifactVersion
from ..store.records import NewArtifact
from .context import RunContext
from .dag import short_repr
from .invocation import SOURCE_TYPES, FutureOutput, Invocation, as_source, is_source
from .step_config import effective_config

if TYPE_CHECKING:
    from ..steps import Step


def prepare(
    ctx: RunContext,
    step: Step[Any, Any],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    custom_id: str | None = None,
    after: Any = None,
) -> Invocation:
    """Bind arguments, allocate the invocation id and register the node (caller's thread)."""
    if step.missing_annotations:
        step.check_annotations()
    cfg = effective_config(ctx, step)
    shape = step.call_shape
    arguments = shape.bind(args, kwargs)
    if arguments is None:
        try:
            arguments = step.signature.bind_partial(*args, **kwargs).arguments
        except TypeError as exc:
            raise TypeError(f"step {step.name!r}: {exc}") from None
    for name, value in cfg.config_parameters.items():
        if name not in shape.names:
            raise ConfigError(f"step {step.name!r}: configured parameter {name!r} is not an input of the step")
        if name in arguments and arguments[name] != value:
            raise ConfigError(
                f"step {step.name!r}: parameter {name!r} is set both in code ({arguments[name]!r})"
                f" and in configuration ({value!r})"
            )
        arguments.setdefault(name, value)
    if len(arguments) < len(shape.names):  # else every input is given (no list built per call)
        missing = [n for n in shape.required if n not in arguments]
        if missing:
            raise TypeError(f"step {step.name!r}: missing input(s) {', '.join(map(repr, missing))}")
    parameters: dict[str, Any] = {}
    sources: dict[str, Any] = {}
    deps: list[Invocation] = []
    upstream: list[str] = []
    loaded_from: list[str] = []
    loaded = ctx.loaded
    for name, value in arguments.items():
        if isinstance(value, SOURCE_TYPES):  # is_source, inline: one check per argument of every call
            src = as_source(value)
            sources[name] = src
            _collect_dep(src, ctx, deps, upstream)
        elif isinstance(value, (list, tuple)) and value and any(is_source(v) for v in value):
            # Plain items beside futures/artifacts (``add([prev, 1])``) are stored as input
            # artifacts, so the step gets one list in the order it was written.
            srcs = [
                as_source(v) if is_source(v) else _external_input(ctx, step, f"{name}[{i}]", v)
                for i, v in enumerate(value)
            ]
            sources[name] = srcs
            for src in srcs:
                _collect_dep(src, ctx, deps, upstream)
        else:
            for producer in loaded.producers_in(value):  # a value loaded from an earlier step
                if producer not in loaded_from:
                    loaded_from.append(producer)
                if producer not in upstream:
                    upstream.append(producer)
            ann = step.input_annotations.get(name)
            # exactly the annotated class (most calls): type_matches' own first check, no call
            if ann is not None and type(value) is not ann and not type_matches(value, ann):
                raise StepTypeError(
                    f"step {step.name!r}: input {name!r} expects {type_name(ann)},"
                    f" got {type(value).__name__} ({short_repr(value, 60)})"
                )
            if is_plain_json(value):
                parameters[name] = value
            else:
                # A value JSON would not give back unchanged (tuples, int keys, objects)
                # becomes an input artifact, so its cache key and stored copy are exact.
                sources[name] = _external_input(ctx, step, name, value)
    if parameters:
        _check_recordable(step, parameters)
    if after is not None:
        for dep in _as_list(after):
            _add_after(ctx, step, as_source(dep), deps, upstream)
    invocation_id = ctx.allocate_id(step.config.name or step.name, custom_id)
    inv = Invocation(ctx, step, cfg, invocation_id, parameters, sources, upstream, deps)  # its node has them
    if loaded_from:
        inv.node.loaded_from = loaded_from
    ctx.track(inv)
    return inv


def _check_recordable(step: Step[Any, Any], parameters: dict[str, Any]) -> None:
    """Parameters are stored as JSON: one JSON cannot write (an int of 5,000 digits) fails here.

    Only such an int can fail once ``is_plain_json`` accepted a value, so look for big ints
    (cheap) rather than encode every call's parameters twice.
    """
    limit = sys.get_int_max_str_digits()
    if not limit:
        return
    for name, value in parameters.items():
        if _has_big_int(value, limit * 3):  # ~3.3 bits per decimal digit: a cheap pre-check
            try:
                json.dumps(value)
            except ValueError as exc:
                raise TypeError(
                    f"step {step.name!r}: parameter {name!r} ({type(value).__name__}) cannot be"
                    f" recorded as JSON: {exc}"
                ) from None


def _has_big_int(value: Any, bits: int) -> bool:
    tp = type(value)
    if tp is int:
        return value.bit_length() > bits
    if tp is list:
        return any(_has_big_int(v, bits) for v in value)
    if tp is dict:
        return any(_has_big_int(v, bits) for v in value.values())
    return False


def _add_after(ctx: RunContext, step: Step[Any, Any], src: Any, deps: list[Invocation], upstream: list[str]) -> None:
    if isinstance(src, FutureOutput):
        _collect_dep(src, ctx, deps, upstream)
    elif isinstance(src, OutputArtifact):
        if src.invocation_id not in upstream:
            upstream.append(src.invocation_id)
    elif isinstance(src, str):
        earlier = next((i for i in reversed(ctx.invocations) if i.invocation_id == src), None)
        if earlier is None:
            raise ValueError(f"step {step.name!r}: after={src!r} names no invocation of this run")
        _collect_dep(FutureOutput(earlier, None), ctx, deps, upstream)
    else:
        raise TypeError(
            f"step {step.name!r}: after= takes futures, artifacts or invocation ids, not {type(src).__name__}"
        )


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    if isinstance(value, (list, tuple, set)):
        return list(value)
    return [value]


def _collect_dep(src: Any, ctx: RunContext, deps: list[Invocation], upstream: list[str]) -> None:
    if isinstance(src, FutureOutput):
        inv = src.invocation
        if inv.ctx is ctx:
            if inv not in deps:
                deps.append(inv)
            if inv.invocation_id not in upstream:
                upstream.append(inv.invocation_id)
        else:
            deps.append(inv)
    elif (
        isinstance(src, OutputArtifact) and src.step_run_in == ctx.run_id and src.invocation_id not in upstream
    ):
        upstream.append(src.invocation_id)


def _nested_source(value: Any, depth: int = 0) -> bool:
    """True if a container holds futures or artifacts somewhere inside (not as a flat list)."""
    if is_source(value):
        return True
    if depth > 3:
        return False
    if isinstance(value, dict):
        return any(_nested_source(v, depth + 1) for v in value.values())
    if isinstance(value, (list, tuple, set)):
        return any(_nested_source(v, depth + 1) for v in value)
    return False


def _external_input(ctx: RunContext, step: Step[Any, Any], name: str, value: Any) -> ArtifactVersion:
    """Store a plain value passed to a step as an input artifact; name the input on failure."""
    if _nested_source(value):
        raise TypeError(
            f"step {step.name!r}: input {name!r} holds futures/artifacts inside a"
            f" {type(value).__name__}; pass a future or artifact directly, or a list of them"
        )
    try:
        saved = ctx.store.save_value(value)
    except Exception as exc:
        raise TypeError(
            f"step {step.name!r}: input {name!r} of type {type(value).__name__} cannot be"
            f" stored as an artifact: {exc}"
        ) from exc
    art_name = f"{ctx.pipeline_name}::external"
    ctx.store.metadata.record_artifacts(
        [
            NewArtifact(
                id=saved.id, name=art_name, uri=saved.uri, content_hash=saved.content_hash,
                data_type=saved.data_type, materializer=saved.materializer, producer_step_run_id=None,
                run_id=ctx.run_id, output_name=None, size=saved.size,
            )
        ]
    )
    return ArtifactVersion(
        ctx.store, id=saved.id, name=art_name, version=None, uri=saved.uri,
        content_hash=saved.content_hash, data_type=saved.data_type,
        materializer=saved.materializer, run_id=ctx.run_id,
    )
