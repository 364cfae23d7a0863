"""``KEY=VALUE`` pipeline parameters as given on a command line."""

from __future__ import annotations

import json


def parse_params(pairs: list[str]) -> dict[str, object]:
    """A VALUE that parses as JSON is that value (5, true, [1,2]), else the text itself."""
    params: dict[str, object] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"parameter {pair!r} is not KEY=VALUE (e.g. -p epochs=5)")
        try:
            params[key.strip()] = json.loads(raw)
        except json.JSONDecodeError:
            params[key.strip()] = raw
    return params
