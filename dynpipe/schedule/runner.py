"""``python -m dynpipe.schedule.runner TARGET [k=v ...]``: one scheduled run (locally or in a pod)."""

from __future__ import annotations

import json
import sys

from .target import TargetError, load_pipeline


def parse_params(pairs: list[str]) -> dict[str, object]:
    params: dict[str, object] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key:
            raise ValueError(f"parameter {pair!r} is not KEY=VALUE")
        try:
            params[key] = json.loads(raw)
        except json.JSONDecodeError:
            params[key] = raw
    return params


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args:
        print("usage: python -m dynpipe.schedule.runner TARGET [KEY=VALUE ...]", file=sys.stderr)
        return 2
    try:
        pipe = load_pipeline(args[0])
        params = parse_params(args[1:])
    except (TargetError, ValueError) as exc:
        print(f"dynpipe: {exc}", file=sys.stderr)
        return 2
    run = pipe(**params)
    print(f"dynpipe: scheduled run {run.name} {run.status.value}")
    return 0 if run.status.value == "completed" else 1


if __name__ == "__main__":
    sys.exit(main())
