"""Cache keys: what must be equal for a step invocation to reuse stored outputs."""

from __future__ import annotations

import hashlib
import inspect
import json
from collections.abc import Mapping
from json.encoder import encode_basestring_ascii
from typing import Any

from ..config import CachePolicy


def source_hash(func: Any) -> str:
    """Hash of a function's source (bytecode and constants when the source is unavailable)."""
    try:
        text = inspect.getsource(func)
    except (OSError, TypeError):
        code = getattr(func, "__code__", None)
        text = _code_fingerprint(code) if code is not None else repr(func)
    return hashlib.sha256(text.encode()).hexdigest()


def _code_fingerprint(code: Any) -> str:
    """Bytecode, names and constants, nested code objects included, without memory addresses
    (the repr of a nested code object carries one, which made every process miss)."""
    consts = [
        _code_fingerprint(c) if inspect.iscode(c) else repr(c) for c in code.co_consts
    ]
    return repr((code.co_code, code.co_names, code.co_varnames, consts))


#: One encoder for every key: ``json.dumps`` with options builds a new ``JSONEncoder`` per call.
_CANONICAL = json.JSONEncoder(sort_keys=True, separators=(",", ":"), default=repr)


def canonical(values: Mapping[str, Any], ignored: tuple[str, ...] = ()) -> str:
    """``values`` without the ``ignored`` names as sorted, compact JSON (``{}`` needs no encoder)."""
    if ignored:
        values = {k: v for k, v in values.items() if k not in ignored}
    if not values:
        return "{}"
    return _flat_json(values) or _CANONICAL.encode(values)


def _flat_json(values: Mapping[str, Any]) -> str | None:
    """What ``_CANONICAL`` writes for a dict of str keys to ints, strs, bools and None (most
    steps' parameters), without its encoder's setup; None for anything else. Cache keys must
    not change: tests/test_step_call_path.py checks them against keys of the encoder."""
    parts = []
    for key, value in sorted(values.items()):
        tp = type(value)
        if type(key) is not str:
            return None
        if tp is int:
            text = int.__repr__(value)
        elif tp is str:
            text = encode_basestring_ascii(value)
        elif tp is bool:
            text = "true" if value else "false"
        elif value is None:
            text = "null"
        else:
            return None
        parts.append(f"{encode_basestring_ascii(key)}:{text}")
    return "{" + ",".join(parts) + "}"


def cache_key(
    *,
    step_name: str,
    code_hash: str,
    parameters: dict[str, Any],
    input_hashes: dict[str, str | list[str]],
    input_ids: Mapping[str, str | list[str]],
    config_fingerprint: str,
    policy: CachePolicy,
) -> str:
    # One string hashed at once: the same bytes as updating the hash part by part.
    parts = [step_name]
    if policy.include_step_code:
        parts += ["\0code\0", code_hash]
    ignored = policy.ignored_inputs + policy.ignore_fields
    if policy.include_step_parameters:
        parts += ["\0params\0", canonical(parameters, ignored)]
    if policy.include_artifact_values:
        parts += ["\0inputs\0", canonical(input_hashes, ignored)]
    if policy.include_artifact_ids:
        parts += ["\0ids\0", canonical(input_ids, ignored)]
    parts += ["\0config\0", config_fingerprint]
    if policy.cache_func is not None:
        parts += ["\0func\0", str(policy.cache_func())]
    return hashlib.sha256("".join(parts).encode()).hexdigest()
