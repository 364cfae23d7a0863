"""``dynpipe kubernetes rbac|gc``: the RBAC the runtime needs, and orphaned Jobs removed."""

from __future__ import annotations

import argparse
import sys
from typing import Any

import yaml

from .runtimes.k8s.rbac import delete_jobs, orphaned_jobs, rbac_manifests
from .store.client import Client


def add_parser(sub: Any) -> None:
    """Attach ``kubernetes`` and its subcommands to the top-level parser's subparsers."""
    kube = sub.add_parser("kubernetes", help="RBAC and cleanup for the Kubernetes runtime").add_subparsers(
        dest="k_command", required=True)
    p = kube.add_parser("rbac", help="print the ServiceAccount, Role and RoleBinding the runtime needs (YAML)")
    p.add_argument("--namespace", required=True)
    p.add_argument("--service-account", default="dynpipe")
    p.set_defaults(func=cmd_rbac)
    p = kube.add_parser("gc", help="delete dynpipe Jobs whose run is no longer alive")
    p.add_argument("--namespace", required=True)
    p.add_argument("--dry-run", action="store_true", help="list them, delete nothing")
    p.set_defaults(func=cmd_gc)


def cmd_rbac(args: argparse.Namespace) -> int:
    yaml.safe_dump_all(rbac_manifests(args.namespace, args.service_account), sys.stdout, sort_keys=False)
    return 0


def run_is_alive(client: Client, run_id: str) -> bool:
    """Alive: the store knows the run and its owner process has not been proven dead."""
    try:
        run = client.get_pipeline_run(run_id)
    except KeyError:
        return False
    return str(getattr(run.status, "value", run.status)) in ("running", "initializing")


def cmd_gc(args: argparse.Namespace, apis: Any = None) -> int:
    from .runtimes.k8s.launch import make_apis

    batch, _ = apis or make_apis()
    client = Client()
    orphans = orphaned_jobs(batch, args.namespace, lambda run_id: run_is_alive(client, run_id))
    for name, run_id in orphans:
        print(f"{'would delete' if args.dry_run else 'deleting'} Job {name} (run {run_id} is not running)")
    if args.dry_run or not orphans:
        if not orphans:
            print(f"no orphaned dynpipe Jobs in namespace {args.namespace}")
        return 0
    problems = delete_jobs(batch, args.namespace, [name for name, _ in orphans])
    for line in problems:
        print(f"dynpipe: cannot delete Job {line}", file=sys.stderr)
    return 1 if problems else 0
