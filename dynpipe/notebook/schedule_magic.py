"""``%pipeline schedule NAME --cron CRON [...]``: export the saved notebook and schedule the module.

    %pipeline schedule NAME --cron "0 3 * * *" [--run RUN] [--module PATH] [--notebook PATH]
                       [--timezone TZ] [-p KEY=VALUE]... [--target local|kubernetes ...]

The notebook's ``%%pipeline RUN`` cells (default: the first run) are exported as by
``%pipeline export`` to ``--module`` (default ``<pipeline>_pipeline.py`` next to the
notebook); every other option is one of ``dynpipe schedule create``'s and means the same,
so a schedule made here and one made in a terminal are the same object.
"""

from __future__ import annotations

import argparse
import shlex
from pathlib import Path
from typing import Any

from ..errors import TargetError
from .export import _MagicLine, _notebook_of, export_module

USAGE = ("%pipeline schedule NAME --cron CRON [--run RUN] [--module PATH] [--notebook PATH]"
         " [any option of 'dynpipe schedule create', e.g. --timezone, -p, --target kubernetes --image]")


class _CreateParser(argparse.ArgumentParser):
    """``dynpipe schedule create``'s parser; a bad option raises (a magic must not exit the kernel)."""

    def error(self, message: str) -> Any:
        raise TargetError(f"%pipeline schedule: {message} (use: {USAGE})")


def _create_args(argv: list[str]) -> argparse.Namespace:
    from ..cli_schedule import add_schedule_commands

    parser = _CreateParser(prog="%pipeline")
    add_schedule_commands(parser.add_subparsers(dest="command", required=True, parser_class=_CreateParser))
    return parser.parse_args(argv)


def schedule_magic(shell: Any, line: str) -> str:
    """Export the notebook this kernel runs, then create the schedule; what was made and how to list it."""
    own = _MagicLine(prog="%pipeline schedule", add_help=False)
    own.add_argument("name")
    own.add_argument("--run", default=None)
    own.add_argument("--module", default=None)
    own.add_argument("--notebook", default=None)
    try:
        args, rest = own.parse_known_args(shlex.split(line))
    except (TargetError, ValueError) as exc:
        raise TargetError(f"%pipeline schedule: {exc} (use: {USAGE})") from None
    create = _create_args(["schedule", "create", args.name, "-", *rest])  # options checked before exporting
    notebook = args.notebook or _notebook_of(shell)
    if notebook is None:
        raise TargetError("%pipeline schedule: cannot tell which notebook this kernel runs; pass --notebook PATH")
    exported = export_module(notebook, args.run, args.module)
    module = Path(args.module) if args.module else Path(notebook).with_name(f"{exported.function}_pipeline.py")
    module.write_text(exported.source)
    create.module = f"{module.resolve()}:{exported.function}"
    if int(create.func(create)) != 0:
        raise TargetError(f"%pipeline schedule: schedule {args.name!r} was not created (see above);"
                          f" the module is written: {module}")
    listing = "dynpipe schedule list" + ("" if create.target == "local" else "   (state from the CronJob)")
    started = "" if create.target != "local" else "; runs start while 'dynpipe scheduler' is running"
    return (f"exported {Path(notebook).name} to {module}; schedule {args.name} created{started}."
            f" List schedules with: {listing}")
