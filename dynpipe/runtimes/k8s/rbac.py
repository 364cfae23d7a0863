"""What the runtime may do in a namespace (RBAC), and cleaning up after dead orchestrators.

The Role grants exactly what the runtime calls: Jobs create/get/list/watch/delete,
``jobs/status`` get, Pods list/watch (pending reasons, evictions) and ``pods/log`` get
(live logs). Jobs of an orchestrator that died are found by their run label and deleted
once the store says the run is no longer alive.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from .manifests import MANAGED_BY, RUN_LABEL

RULES: list[dict[str, Any]] = [
    {"apiGroups": ["batch"], "resources": ["jobs"], "verbs": ["create", "get", "list", "watch", "delete"]},
    {"apiGroups": ["batch"], "resources": ["jobs/status"], "verbs": ["get"]},
    {"apiGroups": [""], "resources": ["pods"], "verbs": ["list", "watch"]},
    {"apiGroups": [""], "resources": ["pods/log"], "verbs": ["get"]},
]


def rbac_manifests(namespace: str, service_account: str = "dynpipe") -> list[dict[str, Any]]:
    """ServiceAccount, Role and RoleBinding for an orchestrator running in ``namespace``."""
    meta = {"namespace": namespace, "labels": dict(MANAGED_BY)}
    return [
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": service_account, **meta}},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
         "metadata": {"name": "dynpipe-runner", **meta}, "rules": [dict(r) for r in RULES]},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
         "metadata": {"name": f"dynpipe-runner-{service_account}"[:253], **meta},
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "dynpipe-runner"},
         "subjects": [{"kind": "ServiceAccount", "name": service_account, "namespace": namespace}]},
    ]


def orphaned_jobs(batch: Any, namespace: str, run_is_alive: Callable[[str], bool]) -> list[tuple[str, str]]:
    """(job, run id) of dynpipe's Jobs in ``namespace`` whose run is no longer alive."""
    selector = ",".join(f"{k}={v}" for k, v in MANAGED_BY.items())
    resp = batch.list_namespaced_job(namespace, label_selector=selector, _preload_content=False)
    try:
        items = json.loads(resp.data).get("items") or []
    finally:
        resp.release_conn()
    verdicts: dict[str, bool] = {}
    orphans: list[tuple[str, str]] = []
    for job in items:
        meta = job.get("metadata") or {}
        run_id = (meta.get("labels") or {}).get(RUN_LABEL)
        if not run_id:
            continue
        if run_id not in verdicts:
            verdicts[run_id] = run_is_alive(run_id)
        if not verdicts[run_id]:
            orphans.append((meta["name"], run_id))
    return orphans


def delete_jobs(batch: Any, namespace: str, names: list[str]) -> list[str]:
    """Delete Jobs with their Pods; return the ones that could not be deleted, with why."""
    from .diagnose import api_error

    problems = []
    for name in names:
        try:
            batch.delete_namespaced_job(name, namespace, propagation_policy="Background")
        except Exception as exc:  # noqa: BLE001 - report and go on
            if getattr(exc, "status", None) != 404:
                problems.append(f"{name}: {api_error(exc)}")
    return problems
