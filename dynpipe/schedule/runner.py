"""One scheduled run:
``python -m dynpipe.schedule.runner MODULE[:PIPELINE] [--run-name NAME] [--schedule NAME] [KEY=VALUE ...]``.

It runs locally (a child of ``dynpipe scheduler``) or in a Kubernetes pod. SIGTERM (the
engine's own handling while a run is active) and SIGINT both stop the run like Ctrl-C does:
the run ends ``stopped`` and its isolated steps are killed, so a scheduler or the kubelet
stopping the process leaves no run behind that later finishes unsupervised.
``--schedule`` names the schedule that fired the run: the run records ``schedule:NAME`` as
its origin (``dynpipe runs list``) instead of this module's path.
Exit codes: 0 completed, 1 failed, 2 bad input, 3 stopped.
"""

from __future__ import annotations

import os
import signal
import sys

EXIT_COMPLETED, EXIT_FAILED, EXIT_BAD_INPUT, EXIT_STOPPED = 0, 1, 2, 3
USAGE = (
    "usage: python -m dynpipe.schedule.runner MODULE[:PIPELINE] [--run-name NAME] [--schedule NAME] [KEY=VALUE ...]"
)


def run_command(
    module: str, params: list[str], run_name: str | None, python: str | None = None, schedule: str | None = None
) -> list[str]:
    """The command that runs ``module`` once: the one place to switch to ``dynpipe run`` later."""
    cmd = [python or sys.executable, "-m", "dynpipe.schedule.runner", module]
    if run_name:
        cmd += ["--run-name", run_name]
    if schedule:
        cmd += ["--schedule", schedule]
    return cmd + list(params)


def _take_option(args: list[str], name: str) -> str | None:
    """Remove ``name VALUE`` from ``args`` and return VALUE; ValueError when VALUE is missing."""
    if name not in args:
        return None
    at = args.index(name)
    if at + 1 >= len(args):
        raise ValueError(f"{name} needs a value")
    value = args[at + 1]
    del args[at : at + 2]
    return value


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        run_name = _take_option(args, "--run-name")
        schedule = _take_option(args, "--schedule")
    except ValueError as exc:
        print(f"dynpipe: {exc}\n{USAGE}", file=sys.stderr)
        return EXIT_BAD_INPUT
    if schedule:  # this process exists for this one run: the engine reads it when the run starts
        os.environ["DYNPIPE_RUN_ORIGIN"] = f"schedule:{schedule}"
    if not args:
        print(USAGE, file=sys.stderr)
        return EXIT_BAD_INPUT
    # A child started in the background may inherit SIGINT ignored; SIGTERM stays at its
    # default so that the engine turns it into a stop while the run is active.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    from .run_module import parse_parameters
    from .target import TargetError, load_pipeline

    try:
        pipe = load_pipeline(args[0])
        params = parse_parameters(pipe, args[1:])  # as `dynpipe run -p` does: checked against the signature
        if run_name:
            pipe = pipe.with_options(run_name=run_name)
    except (TargetError, ValueError) as exc:
        print(f"dynpipe: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        return EXIT_STOPPED
    try:
        run = pipe(**params)
    except KeyboardInterrupt:
        print(f"dynpipe: scheduled run {run_name or ''} stopped".replace("  ", " "), file=sys.stderr)
        return EXIT_STOPPED
    status = run.status.value
    print(f"dynpipe: scheduled run {run.name} {status}", flush=True)
    if status == "stopped":
        return EXIT_STOPPED
    return EXIT_COMPLETED if status == "completed" else EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())
