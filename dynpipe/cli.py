"""The ``dynpipe`` command: inspect runs, steps, logs and artifacts; run the demo."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from . import cli_store
from .cli_schedule import add_schedule_commands
from .display import (
    abbreviate_names,
    escape_control,
    format_duration,
    format_status_counts,
    format_table,
    format_time,
    truncate,
)
from .errors import ArtifactLoadError
from .schedule.run_module import add_run_command
from .store.client import Client
from .store.models import ArtifactVersion, PipelineRun, StepRun
from .store.run_pages import RunSummary

_RUN_HELP = "run name, run id or a prefix of either, pipeline name (its latest run), or 'latest'"


def _limit(text: str) -> int:
    """``--limit``: a count of rows, 0 meaning all."""
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"expects a whole number of rows, 0 for all; got {text!r}")
    return value


def resolve_run(client: Client, ref: str) -> PipelineRun:
    """The run a RUN argument means: an exact run name or id, ``latest``, a pipeline name
    (its latest run), else a unique prefix of a run id or name.

    Exact names win so that any run stays reachable whatever it is called; the error says
    what was given and, when several runs match, which.
    """
    try:
        found: PipelineRun | None = client.get_pipeline_run(ref)
    except KeyError:
        found = None
    if found is not None and ref in (found.id, found.name):
        return found
    if ref == "latest":
        newest = client.list_pipeline_runs(limit=1) or client.list_pipeline_runs(limit=1, include_unlisted=True)
        if not newest:
            raise KeyError(f"no runs yet in {client.store.root}, so there is no 'latest' run")
        return newest[0]
    by_pipeline = client.list_pipeline_runs(pipeline_name=ref, limit=1) or client.list_pipeline_runs(
        pipeline_name=ref, limit=1, include_unlisted=True
    )
    if by_pipeline:
        return by_pipeline[0]
    if found is not None and found.id.startswith(ref):  # a unique id prefix (the store matches with LIKE)
        return found
    matches = [
        r for r in client.list_pipeline_runs(include_unlisted=True) if r.id.startswith(ref) or r.name.startswith(ref)
    ]
    if len(matches) == 1:
        return matches[0]
    shown = escape_control(repr(ref))
    if matches:
        names = abbreviate_names([r.name for r in matches], width=120)
        raise KeyError(
            f"run {shown} is ambiguous: the names or ids of {len(matches)} runs start with it ({names});"
            " give the full run name or more of the id"
        )
    raise KeyError(
        f"no pipeline run matches {shown} in {client.store.root}: give a run name, a run id or its prefix,"
        " a pipeline name (its latest run) or 'latest' (see: dynpipe runs list)"
    )


def short_origin(origin: str | None, width: int = 32) -> str:
    """A run's origin for a table cell: whole if it fits, else ``…/`` and the file's basename
    (the part that tells notebooks and scripts apart), cut only if the basename alone is too long."""
    if not origin:
        return "-"
    if len(origin) <= width:
        return origin
    base = origin.rstrip("/\\").replace("\\", "/").rsplit("/", 1)[-1]
    if origin.startswith("schedule:") or not base:
        return truncate(origin, width)
    return truncate(f"…/{base}", width)


def _run_summaries(client: Client, args: argparse.Namespace, scheduled: set[str] | None) -> list[RunSummary]:
    """The runs to list, read a page at a time (counted by the store, no step rows)."""
    found: list[RunSummary] = []
    after: str | None = None
    while True:
        size = min(500, args.limit - len(found)) if args.limit else 500
        page = client.list_run_summaries(
            pipeline_name=args.pipeline, status=args.status, limit=size, after=after,
            run_names=scheduled, include_unlisted=args.all, active_time=True,
        )
        found += page.runs
        after = page.next
        if after is None or (args.limit and len(found) >= args.limit):
            return found


def cmd_runs_list(args: argparse.Namespace) -> int:
    client = Client()
    scheduled: set[str] | None = None
    if args.schedule:
        from .schedule.manage import list_schedule_runs

        scheduled = {f.run_name for f in list_schedule_runs(args.schedule, client.store.root) if f.run_name}
    runs = _run_summaries(client, args, scheduled)
    if not runs:
        print(f"no runs in {escape_control(client.store.root)}")
        return 0
    rows = [
        [r.name, r.pipeline_name, r.status.value, format_time(r.start_time), format_duration(r.active_duration),
         format_duration(r.duration), format_status_counts(r.step_counts), short_origin(r.origin)]
        for r in runs
    ]
    # ACTIVE: time some step was running; OPEN: from start to end (a notebook run spans its cells).
    # ORIGIN: the notebook, script or schedule that started it (runs show gives it in full).
    print(format_table(["run", "pipeline", "status", "started", "active", "open", "steps", "origin"], rows))
    return 0


def _step_row(s: StepRun, origins: dict[str, str]) -> list[str]:
    mark = ""
    if s.status.value == "cached" and s.cached_from in origins:
        mark = f"(from {origins[s.cached_from]})"
    elif s.attempts > 1:
        mark = f"({s.attempts} attempts)"
    outputs = [f"{n}:{a.type_name}" for n, a in s.outputs.items()]
    return [
        s.invocation_id, s.status.value + (" " + mark if mark else ""), s.runtime or "-",
        format_duration(s.duration), abbreviate_names(s.upstream), abbreviate_names(outputs),
    ]


def _cache_origins(client: Client, step_run_ids: list[str]) -> dict[str, str]:
    """Step run id -> name of the run whose outputs a cache hit reused."""
    if not step_run_ids:
        return {}
    return client.store.metadata.run_names_of_step_runs(step_run_ids)


def _cache_origin_step(client: Client, step: StepRun) -> StepRun:
    """The step run whose outputs a cache hit reused: its logs are the ones the body wrote."""
    origin_run = _cache_origins(client, [step.cached_from or ""]).get(step.cached_from or "")
    if origin_run is None:
        return step
    origin = next((s for s in resolve_run(client, origin_run).steps.values() if s.id == step.cached_from), None)
    if origin is None:
        return step
    print(
        f"({escape_control(step.invocation_id)} was a cache hit: these are the logs of"
        f" {escape_control(origin.invocation_id)} in run {escape_control(origin_run)})",
        file=sys.stderr,
    )
    return origin


def _parameters(values: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v!r}" for k, v in values.items())


def cmd_runs_show(args: argparse.Namespace) -> int:
    client = Client()
    run = resolve_run(client, args.run)
    esc = escape_control
    print(f"run       {esc(run.name)}")
    print(f"id        {run.id}")
    print(f"pipeline  {esc(run.pipeline_name)}")
    print(f"status    {run.status.value}")
    print(f"started   {format_time(run.start_time)}   duration {format_duration(run.duration)}")
    if run.origin:
        print(f"origin    {esc(run.origin)}")
    if run.config.get("parameters"):
        print(f"params    {esc(truncate(_parameters(run.config['parameters']), 2000))}")
    if run.parent_run_id:
        print(f"parent    {esc(run.parent_run_id)}")
    if run.error:
        print(f"error     {esc(run.error, keep_newlines=True)}")
    print()
    origins = _cache_origins(client, [s.cached_from for s in run.steps.values() if s.cached_from])
    rows = [_step_row(s, origins) for s in run.steps.values()]
    print(format_table(["step", "status", "runtime", "duration", "upstream", "outputs"], rows) if rows else "no steps")
    for s in run.steps.values():
        if s.attempts > 1:
            print(f"\n{esc(s.invocation_id)}: {s.attempts} attempts")
            for a in client.list_step_attempts(run.id, s.invocation_id):
                error = f" — {a.error_type}: {a.error_message}" if a.error_type else ""
                print(f"  attempt {a.attempt}: {a.status}{esc(error, keep_newlines=True)}")
    for s in run.steps.values():
        if s.status.value == "failed":
            print(f"\n{esc(s.invocation_id)} failed: {esc(s.error, keep_newlines=True)}")
    return 0


def cmd_runs_logs(args: argparse.Namespace) -> int:
    """Logs are printed as the step wrote them (colours, progress bars): like ``cat``, not escaped."""
    client = Client()
    run = resolve_run(client, args.run)
    step = run.steps.get(args.step)
    if step is None:
        raise KeyError(
            f"run {escape_control(repr(run.name))} has no step {escape_control(repr(args.step))}"
            f" (steps: {abbreviate_names(list(run.steps), width=200, empty='none')})"
        )
    if step.cached_from and not step.logs:
        step = _cache_origin_step(client, step)
    text = step.logs
    if step.traceback and step.traceback not in text:
        text += step.traceback
    sys.stdout.write(text if text.endswith("\n") or not text else text + "\n")
    if not text:
        print(f"(step {escape_control(step.invocation_id)} wrote no logs)", file=sys.stderr)
    return 0


def cmd_pipelines_list(args: argparse.Namespace) -> int:
    client = Client()
    rows = []
    for p in client.list_pipelines():
        last = p.last_run
        rows.append([p.name, str(len(p.runs)), last.name, last.status.value, format_time(last.start_time)])
    print(format_table(["pipeline", "runs", "last run", "status", "started"], rows) if rows else "no pipelines")
    return 0


def _producer(client: Client, runs: dict[str, PipelineRun | None], art: ArtifactVersion) -> tuple[str, StepRun | None]:
    """Name of the run that produced ``art`` and its step run (each run read once per command)."""
    if not art.run_id:
        return "-", None
    if art.run_id not in runs:
        try:
            runs[art.run_id] = client.get_pipeline_run(art.run_id)
        except KeyError:
            runs[art.run_id] = None
    run = runs[art.run_id]
    if run is None:
        return art.run_id[:12], None
    step = next((s for s in run.steps.values() if s.id == art.producer_step_run_id), None)
    return run.name, step


def _step_matches(step: StepRun | None, wanted: str) -> bool:
    return step is not None and wanted in (step.invocation_id, step.step_name)


def cmd_artifacts_list(args: argparse.Namespace) -> int:
    """Newest first. With ``--run``: the outputs of that run's steps, reused cache hits included
    (their RUN column names the run that produced them)."""
    client = Client()
    runs: dict[str, PipelineRun | None] = {}
    if args.run:
        run = resolve_run(client, args.run)
        steps = [s for s in run.steps.values() if not args.step or _step_matches(s, args.step)]
        if args.step and not steps:
            raise KeyError(
                f"run {escape_control(repr(run.name))} has no step {escape_control(repr(args.step))}"
                f" (steps: {abbreviate_names(list(run.steps), width=200, empty='none')})"
            )
        candidates = [v[0] for s in steps for v in s.outputs.values() if v]
    else:
        candidates = client.list_artifact_versions(args.name)
    candidates = [a for a in candidates if not args.name or a.name == args.name]
    candidates.sort(key=lambda a: (a.created or 0, a.version or 0), reverse=True)
    rows: list[list[str]] = []
    more = False
    for art in candidates:
        run_name, step = _producer(client, runs, art)
        if args.step and not args.run and not _step_matches(step, args.step):
            continue
        if args.limit and len(rows) == args.limit:
            more = True
            break
        created = format_time(datetime.fromtimestamp(art.created)) if art.created else "-"
        rows.append([
            art.name, str(art.version), art.type_name, f"{art.size}B" if art.size is not None else "-",
            run_name, step.invocation_id if step else "-", created, art.id[:12],
        ])
    if not rows:
        print("no artifacts")
        return 0
    print(format_table(["artifact", "version", "type", "size", "run", "step", "created", "id"], rows))
    if more:
        print(f"(newest {args.limit} shown; --limit 0 shows all)", file=sys.stderr)
    return 0


def cmd_artifacts_show(args: argparse.Namespace) -> int:
    art = Client().get_artifact_version(args.name_or_id, args.version)
    value = art.load()
    text = repr(value)
    print(escape_control(f"{art.name} v{art.version} ({art.data_type}, {art.materializer})"))
    print(escape_control(truncate(text, 2000), keep_newlines=True))
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    return run_demo(workers=args.steps)


def cmd_export(args: argparse.Namespace) -> int:
    from .notebook.export import export_notebook

    source = export_notebook(args.notebook, args.name, args.output)
    if args.output:
        Path(args.output).write_text(source)
        print(escape_control(f"wrote {args.output}: run it with python {args.output}"))
    else:
        sys.stdout.write(source)
    return 0


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("dynpipe")
    except PackageNotFoundError:  # run from a source tree that was never installed
        return "unknown (not installed)"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="dynpipe", description=__doc__)
    parser.add_argument("--version", action="version", version=f"dynpipe {_version()}")
    sub = parser.add_subparsers(dest="command", required=True)

    runs = sub.add_parser("runs", help="pipeline runs").add_subparsers(dest="runs_command", required=True)
    p = runs.add_parser("list", help="list runs, newest first")
    p.add_argument("--pipeline", help="only runs of this pipeline")
    p.add_argument("--status", help="only runs with this status")
    p.add_argument("--limit", type=_limit, default=20, help="at most this many (0: all; default 20)")
    p.add_argument("--all", action="store_true", help="include single-step runs")
    p.add_argument("--schedule", help="only runs started by this schedule (dynpipe schedule list)")
    p.set_defaults(func=cmd_runs_list)
    p = runs.add_parser("show", help="one run and its steps")
    p.add_argument("run", help=_RUN_HELP)
    p.set_defaults(func=cmd_runs_show)
    p = runs.add_parser("logs", help="the logs of one step run")
    p.add_argument("run", help=_RUN_HELP)
    p.add_argument("step", help="invocation id, e.g. train_2")
    p.set_defaults(func=cmd_runs_logs)

    pipes = sub.add_parser("pipelines", help="pipelines").add_subparsers(dest="p_command", required=True)
    p = pipes.add_parser("list")
    p.set_defaults(func=cmd_pipelines_list)

    arts = sub.add_parser("artifacts", help="artifact versions").add_subparsers(dest="a_command", required=True)
    p = arts.add_parser("list", help="artifact versions, newest first, with the run and step that produced them")
    p.add_argument("--name", help="only versions of this artifact")
    p.add_argument("--run", help="only outputs of this run (name, id prefix, pipeline name or 'latest')")
    p.add_argument("--step", help="only outputs of this step (invocation id like train_2, or step name)")
    p.add_argument("--limit", type=_limit, default=20, help="at most this many (0: all; default 20)")
    p.set_defaults(func=cmd_artifacts_list)
    p = arts.add_parser("show")
    p.add_argument("name_or_id")
    p.add_argument("--version", type=int)
    p.set_defaults(func=cmd_artifacts_show)

    add_schedule_commands(sub)  # schedule …, scheduler: dynpipe/cli_schedule.py

    p = sub.add_parser("export", help="turn a notebook's %%%%pipeline NAME cells into a runnable pipeline module")
    p.add_argument("notebook", help="the .ipynb file")
    p.add_argument("-n", "--name", help="the %%%%pipeline run to export (default: the first)")
    p.add_argument("-o", "--output", help="module path (default: stdout)")
    p.set_defaults(func=cmd_export)

    add_run_command(sub)  # dynpipe run MODULE [-p NAME=VALUE]... [--config FILE]

    p = sub.add_parser("demo", help="run a demo pipeline (fan-out, fan-in, caching)")
    p.add_argument("--steps", type=int, default=8, help="width of the fan-out")
    p.set_defaults(func=cmd_demo)
    cli_store.register(sub)  # dynpipe store info
    from .cli_kubernetes import add_parser as add_kubernetes_parser

    add_kubernetes_parser(sub)
    return parser


def _quiet_broken_pipe() -> int:
    """The reader (``| head``) went away: stop quietly, as the Python docs recommend.

    stdout is pointed at devnull so that the interpreter's final flush does not fail again.
    """
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        code = int(args.func(args) or 0)
        sys.stdout.flush()
        return code
    except BrokenPipeError:
        return _quiet_broken_pipe()
    except KeyboardInterrupt:
        return 130
    except OSError as exc:
        where = f"{exc.filename}: " if exc.filename else ""
        print(f"dynpipe: {escape_control(where)}{escape_control(exc.strerror or exc)}", file=sys.stderr)
        return 1
    except (KeyError, LookupError, ValueError, ArtifactLoadError) as exc:
        message = exc.args[0] if exc.args else str(exc)
        print(f"dynpipe: {escape_control(message, keep_newlines=True)}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
