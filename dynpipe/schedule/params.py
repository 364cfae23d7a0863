"""``KEY=VALUE`` pipeline parameters as given on a command line, kept as text.

They are stored and passed on as written; the run parses each against the pipeline's
signature (``run_module.parse_parameters``), so ``-p tag=5`` stays the text "5" for a
``tag: str`` parameter.
"""

from __future__ import annotations


def split_params(pairs: list[str]) -> dict[str, str]:
    """``["epochs=5"]`` -> ``{"epochs": "5"}``; a pair without ``=`` is an error naming it."""
    params: dict[str, str] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"parameter {pair!r} is not KEY=VALUE (e.g. -p epochs=5)")
        params[key.strip()] = raw
    return params
