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

    from .schedule.kubernetes import CronJobSpec, apply, manifests
    from .schedule.manage import build_spec, record_kubernetes_schedule
    from .schedule.module_info import check_params
    from .schedule.params import split_params
    from .schedule.pod_options import build, options_from_args
    from .schedule.run_job import module_of

    if not (args.image or _env_image()):
        raise ValueError("--target kubernetes needs --image IMAGE (an image with dynpipe and the module's imports)")
    local = build_spec(name=args.name, module=args.module, cron=args.cron, timezone=args.timezone,
                       params=args.param, overlap=args.overlap, catchup=args.catchup)
    if args.catchup != "none":
        raise ValueError("--catchup applies to the local scheduler; a CronJob catches up within --starting-deadline")
    module, info = module_of(args.module, args.module_in_image)
    check_params(info, list(split_params(args.param)), module or Path(args.module))
    spec = build(CronJobSpec, name=args.name, cron=args.cron, timezone=args.timezone, params=args.param,
                 overlap=args.overlap, starting_deadline=args.starting_deadline, history=args.history,
                 **options_from_args(args))
    objects = manifests(spec, module, info)
    text = yaml.safe_dump_all(objects, sort_keys=False)
    if args.output:
        Path(args.output).write_text(text)
        print(escape_control(f"wrote {', '.join(o['kind'] + '/' + o['metadata']['name'] for o in objects)}"
                             f" to {args.output} (kubectl apply -f {args.output})"))
    if args.apply:
        store = _store()
        try:  # a name already taken fails before anything reaches the cluster
            store.get(spec.name)
            raise ValueError(f"a schedule named {spec.name!r} already exists in {store.where}"
                             " (delete it first, or choose another name)")
        except KeyError:
            pass
        done = apply(objects)
        cron = objects[-1]["metadata"]["name"]
        configmap = objects[0]["metadata"]["name"] if len(objects) > 1 else None
        record_kubernetes_schedule(local, module, info.attr, info.name, spec.namespace, cron, configmap)
        print(escape_control(f"applied {', '.join(done)} in namespace {spec.namespace}; stored schedule"
                             f" {spec.name} (dynpipe schedule list)"))
    if not args.output and not args.apply:
        sys.stdout.write(text)
    return 0


def _env_image() -> str | None:
    from .settings import k8s_image

    return k8s_image()


def _cluster(record: Any, api: Any | None) -> tuple[Any, str, str]:
    """The API client (made once per command), namespace and CronJob of a Kubernetes schedule."""
    from .schedule.k8s_objects import load_client

    return api or load_client(), record.placement["namespace"], record.placement["cronjob"]


def cmd_list(args: argparse.Namespace) -> int:
    from .schedule.cron import CronSchedule
    from .schedule.k8s_objects import ClusterError, cronjob_state
    from .schedule.manage import cluster_runs

    store = _store()
    now = datetime.now(timezone.utc)
    rows = []
    api = None
    for s in store.schedules():
        if s.target == "kubernetes":
            ns, cron = s.placement["namespace"], s.placement["cronjob"]
            try:
                api, _, _ = _cluster(s, api)
                state = cronjob_state(api, ns, cron)  # the cluster's word, not the stored one
            except ClusterError as exc:
                state = f"unknown ({exc})"
            last = cluster_runs(s, store.root, limit=1)
            target = f"k8s {ns}/{cron}"
        else:
            state, last, target = s.state, store.fires(s.name, limit=1), "local"
        nxt = "-" if state != "active" else _when(CronSchedule(s.cron, s.timezone).next_after(now).timestamp(),
                                                   s.timezone)
        rows.append([
            s.name, state, f"{s.cron} ({s.timezone})", nxt,
            last[0].run_name or _when(last[0].fire_time, s.timezone) if last else "-",
            last[0].outcome if last else "-", target, f"{Path(s.module).name}:{s.pipeline}",
        ])
    if not rows:
        print(f"no schedules in {escape_control(store.where)} (create one: dynpipe schedule create --help)")
        return 0
    heads = ["schedule", "state", "cron", "next run", "last run", "status", "target", "module"]
    print(escape_control(format_table(heads, rows), keep_newlines=True))
    return 0


def cmd_state(args: argparse.Namespace) -> int:
    store = _store()
    state = "paused" if args.s_command == "pause" else "active"
    where = ""
    if store.get(args.name).target == "kubernetes":
        from .schedule.k8s_objects import set_suspended

        api, ns, cron = _cluster(store.get(args.name), None)
        set_suspended(api, ns, cron, state == "paused")
        where = f" (CronJob {ns}/{cron} suspend: {str(state == 'paused').lower()})"
    record = store.set_state(args.name, state)
    print(escape_control(f"schedule {record.name} is {record.state}{where}"))
    return 0


def cmd_delete(args: argparse.Namespace) -> int:
    store = _store()
    record = store.get(args.name)
    done: list[str] = []
    if record.target == "kubernetes":
        from .schedule.k8s_objects import delete_cronjob

        api, ns, cron = _cluster(record, None)
        done = delete_cronjob(api, ns, cron, record.placement.get("configmap"))
    store.delete(args.name)
    cluster = f"; {', '.join(done)} in namespace {record.placement['namespace']}" if done else ""
    print(escape_control(f"deleted schedule {args.name} (its runs stay in the store){cluster}"))
    return 0


def cmd_runs(args: argparse.Namespace) -> int:
    from .schedule.manage import cluster_runs

    store = _store()
    record = store.get(args.name)
    if record.target == "kubernetes":
        fires = cluster_runs(record, store.root, limit=args.limit or None)
    else:
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
    record = store.get(args.name)
    if record.target == "kubernetes":
        from .schedule.k8s_objects import job_from_cronjob

        api, ns, cron = _cluster(record, None)
        job = job_from_cronjob(api, ns, cron)
        print(escape_control(f"started Job {job} from CronJob {ns}/{cron}; follow it with:"
                             f" kubectl logs -f job/{job} -n {ns}"))
        return 0
    fire = Scheduler(store).run_now(record)
    return 0 if fire.outcome == "completed" else 1


def cmd_scheduler(args: argparse.Namespace) -> int:
    from .schedule.scheduler import Scheduler

    return Scheduler(_store(), grace=args.grace, stop_timeout=args.stop_timeout).serve()


def _guarded(fn: Any) -> Any:
    """``fn`` with a cluster's refusal printed as one line (exit 1), like the CLI's other errors."""

    def run(args: argparse.Namespace) -> int:
        from .schedule.k8s_objects import ClusterError

        try:
            return int(fn(args))
        except ClusterError as exc:
            print(f"dynpipe: {escape_control(exc)}", file=sys.stderr)
            return 1

    return run


def _parser(sub: Any, name: str, help: str, example: str) -> argparse.ArgumentParser:
    p: argparse.ArgumentParser = sub.add_parser(name, help=help, description=help, epilog=f"example:\n  {example}",
                                                formatter_class=_FMT)
    return p


def add_schedule_commands(sub: Any) -> None:
    """Register ``schedule`` and ``scheduler`` on the ``dynpipe`` command's subparsers."""
    from .schedule.pod_options import add_pod_arguments

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
    k = p.add_argument_group("kubernetes target (--target kubernetes): the pod of 'dynpipe run --on kubernetes'")
    add_pod_arguments(k, ttl_default=24 * 3600)
    k.add_argument("--starting-deadline", type=int, default=300,
                   help="seconds a missed due time may still start (default 300), e.g. --starting-deadline 600")
    k.add_argument("--history", type=int, default=3,
                   help="finished Jobs kept per outcome (default 3), e.g. --history 5")
    k.add_argument("-o", "--output", help="write the manifests to this file, e.g. -o nightly.yaml")
    k.add_argument("--apply", action="store_true", help="create or update them in the current kube context and"
                                                        " store the schedule (list, pause, resume, delete,"
                                                        " run-now), e.g. --apply")
    p.set_defaults(func=_guarded(cmd_create))

    p = _parser(sched, "list", "schedules with their state, next run, last run and its status", "dynpipe schedule list")
    p.set_defaults(func=_guarded(cmd_list))
    for verb, text in (("pause", "stop firing a schedule until it is resumed"),
                       ("resume", "fire a paused schedule again (due times while paused are not caught up)")):
        p = _parser(sched, verb, text, f"dynpipe schedule {verb} nightly")
        p.add_argument("name", help="schedule name, e.g. nightly")
        p.set_defaults(func=_guarded(cmd_state))
    p = _parser(sched, "delete", "delete a schedule and its fire history (its runs stay)",
                "dynpipe schedule delete nightly")
    p.add_argument("name", help="schedule name, e.g. nightly")
    p.set_defaults(func=_guarded(cmd_delete))
    p = _parser(sched, "run-now", "run a schedule once now, in the foreground (Ctrl-C stops the run)",
                "dynpipe schedule run-now nightly")
    p.add_argument("name", help="schedule name, e.g. nightly")
    p.set_defaults(func=_guarded(cmd_run_now))
    p = _parser(sched, "runs", "what each due time of a schedule became: run name, outcome, duration",
                "dynpipe schedule runs nightly --limit 5")
    p.add_argument("name", help="schedule name, e.g. nightly")
    p.add_argument("--limit", type=int, default=20, help="at most this many, newest first (0: all), e.g. --limit 5")
    p.set_defaults(func=_guarded(cmd_runs))

    p = _parser(sub, "scheduler", "fire every active schedule of the store until SIGTERM or Ctrl-C (stops its runs)",
                "DYNPIPE_HOME=/srv/dynpipe dynpipe scheduler")
    p.add_argument("--grace", type=float, default=60.0,
                   help="seconds late a due time still runs as on time; older ones are missed (default 60),"
                        " e.g. --grace 300")
    p.add_argument("--stop-timeout", type=float, default=30.0,
                   help="seconds a stopped run gets to end before it is killed (default 30), e.g. --stop-timeout 10")
    p.set_defaults(func=cmd_scheduler)
