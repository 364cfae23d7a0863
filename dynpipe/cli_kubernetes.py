"""``dynpipe kubernetes rbac|gc``: the RBAC the runtime needs; orphaned Jobs and task objects removed."""

from __future__ import annotations

import argparse
import sys
from typing import Any

import yaml

from .runtimes.k8s.rbac import delete_jobs, orphaned_jobs, rbac_manifests
from .runtimes.k8s.sweep import MAX_AGE, RunState, remove, stale_objects, task_folders
from .store.client import Client


def add_parser(sub: Any) -> None:
    """Attach ``kubernetes`` and its subcommands to the top-level parser's subparsers."""
    kube = sub.add_parser("kubernetes", help="RBAC and cleanup for the Kubernetes runtime").add_subparsers(
        dest="k_command", required=True)
    p = kube.add_parser("rbac", help="print the ServiceAccount, Role and RoleBinding the runtime needs (YAML)")
    p.add_argument("--namespace", required=True)
    p.add_argument("--service-account", default="dynpipe")
    p.set_defaults(func=cmd_rbac)
    p = kube.add_parser("gc", help="delete dynpipe Jobs, and task/report objects under k8s-tasks/, of runs"
                        " that are no longer alive")
    p.add_argument("--namespace", required=True)
    p.add_argument("--dry-run", action="store_true", help="list them, delete nothing")
    p.add_argument("--max-age", type=float, default=MAX_AGE, metavar="SECONDS",
                   help="also delete task objects older than this whose run is unknown to this store"
                        f" (default {MAX_AGE:g}, 24 h)")
    p.set_defaults(func=cmd_gc)


def cmd_rbac(args: argparse.Namespace) -> int:
    yaml.safe_dump_all(rbac_manifests(args.namespace, args.service_account), sys.stdout, sort_keys=False)
    return 0


def run_state(client: Client, run_id: str) -> RunState:
    """Alive: the store knows the run and its owner process has not been proven dead."""
    try:
        run = client.get_pipeline_run(run_id)
    except KeyError:
        return "unknown"
    return "alive" if str(getattr(run.status, "value", run.status)) in ("running", "initializing") else "ended"


def run_is_alive(client: Client, run_id: str) -> bool:
    return run_state(client, run_id) == "alive"


def cmd_gc(args: argparse.Namespace, apis: Any = None) -> int:
    from .runtimes.k8s.launch import make_apis

    batch, _ = apis or make_apis()
    client = Client()
    orphans = orphaned_jobs(batch, args.namespace, lambda run_id: run_is_alive(client, run_id))
    for name, run_id in orphans:
        print(f"{'would delete' if args.dry_run else 'deleting'} Job {name} (run {run_id} is not running)")
    if not orphans:
        print(f"no orphaned dynpipe Jobs in namespace {args.namespace}")
    problems = [] if args.dry_run else delete_jobs(batch, args.namespace, [name for name, _ in orphans])
    for line in problems:
        print(f"dynpipe: cannot delete Job {line}", file=sys.stderr)
    return 1 if sweep_task_objects(client, args.dry_run, args.max_age) or problems else 0


def sweep_task_objects(client: Client, dry_run: bool, max_age: float) -> bool:
    """Task and report objects of runs no longer alive (see ``runtimes/k8s/sweep.py``); True on problems."""
    failed = False
    for folder in task_folders(client.store):
        try:
            stale = stale_objects(folder, lambda run_id: run_state(client, run_id), max_age)
        except Exception as exc:  # noqa: BLE001 - e.g. no credentials for the bucket
            print(f"dynpipe: cannot list {folder.label}: {type(exc).__name__}: {exc}", file=sys.stderr)
            failed = True
            continue
        for obj in stale:
            print(f"{'would delete' if dry_run else 'deleting'} {folder.label}/{obj.path.rsplit('/', 1)[-1]}"
                  f" ({obj.why})")
        if not stale:
            print(f"no stale task objects in {folder.label}")
        for line in [] if dry_run else remove(folder, [obj.path for obj in stale]):
            print(f"dynpipe: cannot delete {line}", file=sys.stderr)
            failed = True
    return failed
