"""The ``dynpipe`` command: inspect runs, steps, logs and artifacts; run the demo."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path

from .store.client import Client
from .store.errors import StoreError
from .store.models import ArtifactLoadError, PipelineRun, StepRun


def _table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [len(h) for h in headers]
    for row in rows:
        for i, cell in enumerate(row):
            widths[i] = max(widths[i], len(cell))
    line = "  ".join(h.upper().ljust(w) for h, w in zip(headers, widths))
    out = [line.rstrip()]
    for row in rows:
        out.append("  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip())
    return "\n".join(out)


def _dur(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 1:
        return f"{seconds * 1000:.0f}ms"
    if seconds < 120:
        return f"{seconds:.1f}s"
    return f"{seconds / 60:.1f}m"


def _when(ts: datetime | None) -> str:
    return ts.strftime("%Y-%m-%d %H:%M:%S") if ts else "-"


def _step_counts(run: PipelineRun) -> str:
    counts: dict[str, int] = {}
    for s in run.steps.values():
        counts[s.status.value] = counts.get(s.status.value, 0) + 1
    return ", ".join(f"{n} {st}" for st, n in sorted(counts.items())) or "no steps"


def cmd_runs_list(args: argparse.Namespace) -> int:
    client = Client()
    runs = client.list_pipeline_runs(
        pipeline_name=args.pipeline, status=args.status, limit=args.limit,
        include_unlisted=args.all,
    )
    if not runs:
        print(f"no runs in {client.store.root}")
        return 0
    rows = [
        [r.name, r.pipeline_name, r.status.value, _when(r.start_time), _dur(r.duration), _step_counts(r)]
        for r in runs
    ]
    print(_table(["run", "pipeline", "status", "started", "duration", "steps"], rows))
    return 0


def _step_row(s: StepRun, origins: dict[str, str]) -> list[str]:
    mark = ""
    if s.status.value == "cached" and s.cached_from in origins:
        mark = f"(from {origins[s.cached_from]})"
    elif s.attempts > 1:
        mark = f"({s.attempts} attempts)"
    outputs = ", ".join(f"{n}:{a.type_name}" for n, a in s.outputs.items()) or "-"
    return [
        s.invocation_id, s.status.value + (" " + mark if mark else ""), s.runtime or "-",
        _dur(s.duration), ", ".join(s.upstream) or "-", outputs,
    ]


def _cache_origins(client: Client, step_run_ids: list[str]) -> dict[str, str]:
    """Step run id -> name of the run whose outputs a cache hit reused."""
    if not step_run_ids:
        return {}
    marks = ",".join("?" * len(step_run_ids))
    rows = client.store.metadata.query(
        f"SELECT s.id, r.name FROM step_runs s JOIN runs r ON r.id = s.run_id WHERE s.id IN ({marks})",
        step_run_ids,
    )
    return {row["id"]: row["name"] for row in rows}


def cmd_runs_show(args: argparse.Namespace) -> int:
    client = Client()
    run = client.get_pipeline_run(args.run)
    print(f"run       {run.name}")
    print(f"id        {run.id}")
    print(f"pipeline  {run.pipeline_name}")
    print(f"status    {run.status.value}")
    print(f"started   {_when(run.start_time)}   duration {_dur(run.duration)}")
    if run.parent_run_id:
        print(f"parent    {run.parent_run_id}")
    if run.error:
        print(f"error     {run.error}")
    print()
    origins = _cache_origins(client, [s.cached_from for s in run.steps.values() if s.cached_from])
    rows = [_step_row(s, origins) for s in run.steps.values()]
    print(_table(["step", "status", "runtime", "duration", "upstream", "outputs"], rows) if rows else "no steps")
    for s in run.steps.values():
        if s.attempts > 1:
            print(f"\n{s.invocation_id}: {s.attempts} attempts")
            for a in client.list_step_attempts(run.id, s.invocation_id):
                error = f" — {a.error_type}: {a.error_message}" if a.error_type else ""
                print(f"  attempt {a.attempt}: {a.status}{error}")
    failed = [s for s in run.steps.values() if s.status.value == "failed"]
    for s in failed:
        print(f"\n{s.invocation_id} failed: {s.error}")
    return 0


def cmd_runs_logs(args: argparse.Namespace) -> int:
    step = Client().get_step_run(args.run, args.step)
    text = step.logs
    if step.traceback and step.traceback not in text:
        text += step.traceback
    sys.stdout.write(text if text.endswith("\n") or not text else text + "\n")
    if not text:
        print(f"(step {step.invocation_id} wrote no logs)", file=sys.stderr)
    return 0


def cmd_pipelines_list(args: argparse.Namespace) -> int:
    client = Client()
    rows = []
    for p in client.list_pipelines():
        last = p.last_run
        rows.append([p.name, str(len(p.runs)), last.name, last.status.value, _when(last.start_time)])
    print(_table(["pipeline", "runs", "last run", "status", "started"], rows) if rows else "no pipelines")
    return 0


def cmd_artifacts_list(args: argparse.Namespace) -> int:
    arts = Client().list_artifact_versions(args.name)
    rows = [[a.name, str(a.version), a.type_name, a.materializer, f"{a.size}B", a.id[:12]] for a in arts]
    print(_table(["artifact", "version", "type", "materializer", "size", "id"], rows) if rows else "no artifacts")
    return 0


def cmd_artifacts_show(args: argparse.Namespace) -> int:
    art = Client().get_artifact_version(args.name_or_id, args.version)
    value = art.load()
    text = repr(value)
    print(f"{art.name} v{art.version} ({art.data_type}, {art.materializer})")
    print(text if len(text) < 2000 else text[:2000] + "…")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    return run_demo(workers=args.steps)


def cmd_schedule_local(args: argparse.Namespace) -> int:
    from .schedule.local import LocalScheduler
    from .schedule.target import load_pipeline

    load_pipeline(args.target)  # fail now, with a clear message, if the target is wrong
    codes = LocalScheduler(args.target, args.cron, args.param, args.max_runs).run()
    return 0 if all(c == 0 for c in codes) else 1


def cmd_schedule_k8s(args: argparse.Namespace) -> int:
    import yaml

    from .config import ResourceSettings
    from .schedule.kubernetes import apply_cronjob, cronjob_manifest
    from .schedule.target import load_pipeline

    pipe = load_pipeline(args.target)
    resources = None
    if args.cpu or args.memory:
        resources = ResourceSettings(cpu_count=args.cpu, memory=args.memory)
    manifest = cronjob_manifest(
        name=args.name or pipe.name, target=args.target, cron=args.cron, image=args.image,
        namespace=args.namespace, params=args.param, resources=resources, store_claim=args.store_claim,
    )
    text = yaml.safe_dump(manifest, sort_keys=False)
    if args.apply:
        print(f"applied CronJob {apply_cronjob(manifest)} in namespace {args.namespace}")
    else:
        sys.stdout.write(text)
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from .notebook.export import export_notebook

    source = export_notebook(args.notebook, args.name)
    if args.output:
        Path(args.output).write_text(source)
        print(f"wrote {args.output}: run it with python {args.output}")
    else:
        sys.stdout.write(source)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="dynpipe", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    runs = sub.add_parser("runs", help="pipeline runs").add_subparsers(dest="runs_command", required=True)
    p = runs.add_parser("list", help="list runs, newest first")
    p.add_argument("--pipeline", help="only runs of this pipeline")
    p.add_argument("--status", help="only runs with this status")
    p.add_argument("--limit", type=int, default=20)
    p.add_argument("--all", action="store_true", help="include single-step runs")
    p.set_defaults(func=cmd_runs_list)
    p = runs.add_parser("show", help="one run and its steps")
    p.add_argument("run", help="run name or id (prefix)")
    p.set_defaults(func=cmd_runs_show)
    p = runs.add_parser("logs", help="the logs of one step run")
    p.add_argument("run", help="run name or id (prefix)")
    p.add_argument("step", help="invocation id, e.g. train_2")
    p.set_defaults(func=cmd_runs_logs)

    pipes = sub.add_parser("pipelines", help="pipelines").add_subparsers(dest="p_command", required=True)
    p = pipes.add_parser("list")
    p.set_defaults(func=cmd_pipelines_list)

    arts = sub.add_parser("artifacts", help="artifact versions").add_subparsers(dest="a_command", required=True)
    p = arts.add_parser("list")
    p.add_argument("--name")
    p.set_defaults(func=cmd_artifacts_list)
    p = arts.add_parser("show")
    p.add_argument("name_or_id")
    p.add_argument("--version", type=int)
    p.set_defaults(func=cmd_artifacts_show)

    sched = sub.add_parser("schedule", help="run a pipeline module on a cron schedule").add_subparsers(dest="s_command", required=True)
    p = sched.add_parser("local", help="run TARGET (file.py[:pipeline]) on a cron schedule on this machine")
    p.add_argument("target")
    p.add_argument("--cron", required=True, help="cron expression (5 fields, or 6 with seconds)")
    p.add_argument("--param", action="append", default=[], help="KEY=VALUE pipeline parameter")
    p.add_argument("--max-runs", type=int, help="stop after this many runs")
    p.set_defaults(func=cmd_schedule_local)
    p = sched.add_parser("k8s", help="a Kubernetes CronJob for TARGET (printed as YAML, or --apply)")
    p.add_argument("target")
    p.add_argument("--cron", required=True)
    p.add_argument("--image", required=True, help="container image holding the module and dynpipe")
    p.add_argument("--name")
    p.add_argument("--namespace", default="default")
    p.add_argument("--param", action="append", default=[])
    p.add_argument("--cpu", type=float)
    p.add_argument("--memory")
    p.add_argument("--store-claim", help="PersistentVolumeClaim holding the dynpipe store")
    p.add_argument("--apply", action="store_true", help="create/replace it in the current kube context")
    p.set_defaults(func=cmd_schedule_k8s)

    p = sub.add_parser("export", help="turn a notebook's %%%%pipeline NAME cells into a runnable pipeline module")
    p.add_argument("notebook", help="the .ipynb file")
    p.add_argument("-n", "--name", help="the %%%%pipeline run to export (default: the first)")
    p.add_argument("-o", "--output", help="module path (default: stdout)")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("demo", help="run a demo pipeline (fan-out, fan-in, caching)")
    p.add_argument("--steps", type=int, default=8, help="width of the fan-out")
    p.set_defaults(func=cmd_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except OSError as exc:
        print(f"dynpipe: {exc.filename or ''}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    except (KeyError, LookupError, ValueError, ArtifactLoadError, StoreError) as exc:
        message = exc.args[0] if exc.args else str(exc)
        print(f"dynpipe: {message}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
