"""``dynpipe schedule …`` and ``dynpipe scheduler``: managed schedules and the process that fires them."""

from __future__ import annotations

import argparse
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from .display import escape_control, format_duration, format_table

_FMT = argparse.RawDescriptionHelpFormatter


def _store() -> Any:
    from .store.schedules import ScheduleStore

    return ScheduleStore()


def _when(ts: float | None, tz: str) -> str:
    if ts is None:
        return "-"
    from .schedule.cron import local_text, to_utc

    return local_text(to_utc(ts), tz)


def cmd_create(args: argparse.Namespace) -> int:
    if args.target == "kubernetes":
        return _create_kubernetes(args)
    from .schedule.cron import CronSchedule, local_text
    from .schedule.manage import build_spec, create_schedule

    local_only = [o for o in ("image", "module_in_image", "output") if getattr(args, o)]
    if local_only or args.apply:
        shown = ", ".join("--" + o.replace("_", "-") for o in local_only + (["apply"] if args.apply else []))
        raise ValueError(f"{shown} only apply to --target kubernetes")
    spec = build_spec(name=args.name, module=args.module, cron=args.cron, timezone=args.timezone,
                      params=args.param, overlap=args.overlap, catchup=args.catchup)
    record = create_schedule(spec)
    nxt = CronSchedule(record.cron, record.timezone).next_after(datetime.now(timezone.utc))
    print(escape_control(
        f"created schedule {record.name}: {record.module}:{record.pipeline} at '{record.cron}' ({record.timezone});"
        f" next run {local_text(nxt, record.timezone)} while 'dynpipe scheduler' is running"
    ))
    return 0


def _create_kubernetes(args: argparse.Namespace) -> int:
    import yaml

    from .schedule.kubernetes import CronJobSpec, apply, manifests, parse_env, parse_toleration
    from .schedule.manage import build_spec
    from .schedule.module_info import PipelineInfo, check_params, resolve_module
    from .schedule.params import split_params

    if not args.image:
        raise ValueError("--target kubernetes needs --image IMAGE (an image with dynpipe and the module's imports)")
    build_spec(name=args.name, module=args.module, cron=args.cron, timezone=args.timezone, params=args.param,
               overlap=args.overlap, catchup=args.catchup)
    if args.catchup != "none":
        raise ValueError("--catchup applies to the local scheduler; a CronJob catches up within --starting-deadline")
    module: Path | None = None
    if args.module_in_image:
        _, _, attr = args.module.rpartition(":")
        info = PipelineInfo(attr or "", attr or "", (), True)
        if not attr:
            raise ValueError("with --module-in-image, give MODULE as FILE:PIPELINE so the pod knows which pipeline")
        if Path(args.module.rpartition(":")[0]).is_file():
            module, info = resolve_module(args.module)
    else:
        module, info = resolve_module(args.module)
    check_params(info, list(split_params(args.param)), module or Path(args.module))
    from pydantic import ValidationError

    try:
        spec = CronJobSpec(
            name=args.name, cron=args.cron, image=args.image, timezone=args.timezone, namespace=args.namespace,
            params=args.param, overlap=args.overlap, service_account=args.service_account, env=parse_env(args.env),
            secret_env=args.secret_env, gpu=args.gpu, cpu=args.cpu, memory=args.memory,
            tolerations=[parse_toleration(t) for t in args.toleration], module_in_image=args.module_in_image,
            store_claim=args.store_claim, starting_deadline=args.starting_deadline,
            active_deadline=args.active_deadline, ttl_after_finished=args.ttl, history=args.history,
        )
    except ValidationError as exc:
        err = exc.errors()[0]
        where = "--" + str(err["loc"][0]).replace("_", "-") if err["loc"] else "option"
        raise ValueError(f"{where}: {str(err['msg']).removeprefix('Value error, ')}") from None
    objects = manifests(spec, module, info)
    text = yaml.safe_dump_all(objects, sort_keys=False)
    if args.output:
        Path(args.output).write_text(text)
        print(escape_control(f"wrote {', '.join(o['kind'] + '/' + o['metadata']['name'] for o in objects)}"
                             f" to {args.output} (kubectl apply -f {args.output})"))
    if args.apply:
        done = apply(objects)
        print(escape_control(f"applied {', '.join(done)} in namespace {spec.namespace}"))
    if not args.output and not args.apply:
        sys.stdout.write(text)
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    from .schedule.cron import CronSchedule

    store = _store()
    now = datetime.now(timezone.utc)
    rows = []
    for s in store.schedules():
        last = store.fires(s.name, limit=1)
        nxt = "-" if s.state != "active" else _when(CronSchedule(s.cron, s.timezone).next_after(now).timestamp(),
                                                     s.timezone)
        rows.append([
            s.name, s.state, f"{s.cron} ({s.timezone})", nxt,
            last[0].run_name or _when(last[0].fire_time, s.timezone) if last else "-",
            last[0].outcome if last else "-", f"{Path(s.module).name}:{s.pipeline}",
        ])
    if not rows:
        print(f"no schedules in {escape_control(store.root)} (create one: dynpipe schedule create --help)")
        return 0
    print(escape_control(format_table(["schedule", "state", "cron", "next run", "last run", "status", "module"], rows),
                         keep_newlines=True))
    return 0


def cmd_state(args: argparse.Namespace) -> int:
    record = _store().set_state(args.name, "paused" if args.s_command == "pause" else "active")
    print(escape_control(f"schedule {record.name} is {record.state}"))
    return 0


def cmd_delete(args: argparse.Namespace) -> int:
    _store().delete(args.name)
    print(escape_control(f"deleted schedule {args.name} (its runs stay in the store)"))
    return 0


def cmd_runs(args: argparse.Namespace) -> int:
    store = _store()
    record = store.get(args.name)
    fires = store.fires(record.name, limit=args.limit or None)
    if not fires:
        print(escape_control(f"schedule {record.name} has not fired yet"))
        return 0
    rows = [[_when(f.fire_time, record.timezone), f.kind, f.run_name or "-", f.outcome, format_duration(f.duration),
             str(f.pid or "-"), f.detail or ""] for f in fires]
    print(escape_control(format_table(["due", "kind", "run", "outcome", "duration", "pid", "detail"], rows),
                         keep_newlines=True))
    return 0


def cmd_run_now(args: argparse.Namespace) -> int:
    from .schedule.scheduler import Scheduler

    store = _store()
    fire = Scheduler(store).run_now(store.get(args.name))
    return 0 if fire.outcome == "completed" else 1


def cmd_scheduler(args: argparse.Namespace) -> int:
    from .schedule.scheduler import Scheduler

    return Scheduler(_store(), grace=args.grace, stop_timeout=args.stop_timeout).serve()


def _parser(sub: Any, name: str, help: str, example: str) -> argparse.ArgumentParser:
    p: argparse.ArgumentParser = sub.add_parser(name, help=help, description=help, epilog=f"example:\n  {example}",
                                                formatter_class=_FMT)
    return p


def add_schedule_commands(sub: Any) -> None:
    """Register ``schedule`` and ``scheduler`` on the ``dynpipe`` command's subparsers."""
    sched = sub.add_parser(
        "schedule", help="run a pipeline module on a cron schedule (local scheduler or Kubernetes CronJob)",
        description="Schedules are stored in the store, fired by 'dynpipe scheduler', and tag their runs.",
        epilog='example:\n  dynpipe schedule create nightly train.py --cron "0 3 * * *" --timezone Europe/Berlin',
        formatter_class=_FMT,
    ).add_subparsers(dest="s_command", required=True)

    p = _parser(sched, "create", "create a schedule for a pipeline module (from dynpipe export)",
                'dynpipe schedule create nightly train.py:train --cron "0 3 * * *" -p epochs=5 --overlap queue')
    p.add_argument("name", help="schedule name (letters, digits, . _ -), e.g. nightly")
    p.add_argument("module", help="FILE.py or FILE.py:PIPELINE, e.g. train.py:train (parsed, not imported)")
    p.add_argument("--cron", required=True,
                   help="five fields 'minute hour day month weekday' or @hourly/@daily/@weekly/@monthly/@yearly,"
                        " e.g. '*/15 * * * *'")
    p.add_argument("--timezone", default="UTC", help="IANA time zone of the cron fields (default UTC),"
                                                     " e.g. Europe/Berlin")
    p.add_argument("-p", "--param", action="append", default=[], metavar="KEY=VALUE",
                   help="pipeline parameter, repeatable; VALUE is JSON or text, e.g. -p epochs=5 -p tag=nightly")
    p.add_argument("--overlap", choices=("skip", "queue", "replace"), default="skip",
                   help="when the previous run is still going: skip this one, queue it, or stop the previous one"
                        " (default skip), e.g. --overlap queue")
    p.add_argument("--catchup", choices=("none", "latest", "all"), default="none",
                   help="due times missed while no scheduler ran: record them as missed (none), run the newest"
                        " (latest) or run them all in order (all); default none, e.g. --catchup latest")
    p.add_argument("--target", choices=("local", "kubernetes"), default="local",
                   help="local: stored, fired by 'dynpipe scheduler'; kubernetes: a CronJob (below)"
                        " e.g. --target kubernetes")
    k = p.add_argument_group("kubernetes target (--target kubernetes)")
    k.add_argument("--image", help="container image with dynpipe and the module's imports, e.g. registry/ml:1.2")
    k.add_argument("--namespace", default="default", help="namespace (default 'default'), e.g. --namespace ml")
    k.add_argument("--service-account", help="pod service account, e.g. --service-account pipelines")
    k.add_argument("--env", action="append", default=[], metavar="K=V", help="environment variable, repeatable,"
                                                                           " e.g. --env LOG_LEVEL=debug")
    k.add_argument("--secret-env", action="append", default=[], metavar="SECRET",
                   help="a Secret whose keys become environment variables, repeatable, e.g. --secret-env s3-creds")
    k.add_argument("--gpu", type=int, default=0, help="GPUs (nvidia.com/gpu) per run, e.g. --gpu 1")
    k.add_argument("--cpu", type=float, help="CPUs per run, e.g. --cpu 2")
    k.add_argument("--memory", help="memory per run, e.g. --memory 4Gi")
    k.add_argument("--toleration", action="append", default=[], metavar="KEY[=VALUE]:EFFECT",
                   help="tolerate a taint, repeatable, e.g. --toleration nvidia.com/gpu:NoSchedule")
    k.add_argument("--module-in-image", metavar="PATH",
                   help="run the module at this path in the image instead of shipping it in a ConfigMap,"
                        " e.g. --module-in-image /app/train.py (MODULE then names FILE:PIPELINE)")
    k.add_argument("--store-claim", help="PersistentVolumeClaim holding the dynpipe store (else an emptyDir),"
                                         " e.g. --store-claim dynpipe-store")
    k.add_argument("--starting-deadline", type=int, default=300,
                   help="seconds a missed due time may still start (default 300), e.g. --starting-deadline 600")
    k.add_argument("--active-deadline", type=int, default=6 * 3600,
                   help="seconds a run may last before it is killed (default 21600), e.g. --active-deadline 3600")
    k.add_argument("--ttl", type=int, default=24 * 3600,
                   help="seconds finished Jobs are kept (default 86400), e.g. --ttl 3600")
    k.add_argument("--history", type=int, default=3,
                   help="finished Jobs kept per outcome (default 3), e.g. --history 5")
    k.add_argument("-o", "--output", help="write the manifests to this file, e.g. -o nightly.yaml")
    k.add_argument("--apply", action="store_true", help="create or replace them in the current kube context,"
                                                        " e.g. --apply")
    p.set_defaults(func=cmd_create)

    p = _parser(sched, "list", "schedules with their state, next run, last run and its status", "dynpipe schedule list")
    p.set_defaults(func=cmd_list)
    for verb, text in (("pause", "stop firing a schedule until it is resumed"),
                       ("resume", "fire a paused schedule again (due times while paused are not caught up)")):
        p = _parser(sched, verb, text, f"dynpipe schedule {verb} nightly")
        p.add_argument("name", help="schedule name, e.g. nightly")
        p.set_defaults(func=cmd_state)
    p = _parser(sched, "delete", "delete a schedule and its fire history (its runs stay)",
                "dynpipe schedule delete nightly")
    p.add_argument("name", help="schedule name, e.g. nightly")
    p.set_defaults(func=cmd_delete)
    p = _parser(sched, "run-now", "run a schedule once now, in the foreground (Ctrl-C stops the run)",
                "dynpipe schedule run-now nightly")
    p.add_argument("name", help="schedule name, e.g. nightly")
    p.set_defaults(func=cmd_run_now)
    p = _parser(sched, "runs", "what each due time of a schedule became: run name, outcome, duration",
                "dynpipe schedule runs nightly --limit 5")
    p.add_argument("name", help="schedule name, e.g. nightly")
    p.add_argument("--limit", type=int, default=20, help="at most this many, newest first (0: all), e.g. --limit 5")
    p.set_defaults(func=cmd_runs)

    p = _parser(sub, "scheduler", "fire every active schedule of the store until SIGTERM or Ctrl-C (stops its runs)",
                "DYNPIPE_HOME=/srv/dynpipe dynpipe scheduler")
    p.add_argument("--grace", type=float, default=60.0,
                   help="seconds late a due time still runs as on time; older ones are missed (default 60),"
                        " e.g. --grace 300")
    p.add_argument("--stop-timeout", type=float, default=30.0,
                   help="seconds a stopped run gets to end before it is killed (default 30), e.g. --stop-timeout 10")
    p.set_defaults(func=cmd_scheduler)
