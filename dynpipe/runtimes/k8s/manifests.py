"""The Job of one step attempt, as a plain dict the API server accepts.

Secure by default (non-root, no privilege escalation, all capabilities dropped, the
runtime's seccomp profile, a read-only root filesystem with an ``emptyDir`` at ``/tmp``),
bounded (``activeDeadlineSeconds``, ``ttlSecondsAfterFinished``), and with a
``podFailurePolicy`` that fails the Job at once when its pod is disrupted (eviction,
preemption, node drain) so the engine's retry logic, not Kubernetes, decides what next.
"""

from __future__ import annotations

import math
import re
from typing import Any

from ..task import StepTask
from .config import EnvSource, KubernetesSettings

WORKER_COMMAND = ["python", "-m", "dynpipe.runtimes.worker"]
MANAGED_BY = {"app.kubernetes.io/managed-by": "dynpipe"}
RUN_LABEL = "dynpipe/run-id"
JOB_LABEL = "dynpipe/job"
STEP_LABEL = "dynpipe/step"

_DNS1123 = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")

DEFAULT_POD_SECURITY: dict[str, Any] = {
    "runAsNonRoot": True,
    "runAsUser": 1000,
    "runAsGroup": 1000,
    "fsGroup": 1000,
    "seccompProfile": {"type": "RuntimeDefault"},
}
DEFAULT_CONTAINER_SECURITY: dict[str, Any] = {
    "allowPrivilegeEscalation": False,
    "readOnlyRootFilesystem": True,
    "runAsNonRoot": True,
    "capabilities": {"drop": ["ALL"]},
    "seccompProfile": {"type": "RuntimeDefault"},
}


def is_dns1123_label(name: str) -> bool:
    return len(name) <= 63 and bool(_DNS1123.match(name))


def is_label_value(value: str) -> bool:
    return len(value) <= 63 and bool(_LABEL_VALUE.match(value))


def label_value(text: str) -> str:
    """``text`` made a valid label value (≤ 63 chars, alphanumeric at both ends)."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", text)[:63].strip("-_.") or "x"


def pod_spec_for(settings: KubernetesSettings, container: dict[str, Any],
                 volumes: list[dict[str, Any]]) -> dict[str, Any]:
    """The pod spec around one container: what ``settings`` says about the pod (security
    context, service account, pull secrets, placement). Step Jobs and whole-run pods share it."""
    pod: dict[str, Any] = {
        "restartPolicy": "Never",
        "containers": [container],
        "volumes": volumes,
        "securityContext": _merged(DEFAULT_POD_SECURITY, settings.pod_security_context),
        "automountServiceAccountToken": settings.service_account is not None,
    }
    if settings.service_account:
        pod["serviceAccountName"] = settings.service_account
    if settings.image_pull_secrets:
        pod["imagePullSecrets"] = [{"name": s} for s in settings.image_pull_secrets]
    if settings.node_selector:
        pod["nodeSelector"] = dict(settings.node_selector)
    if settings.tolerations:
        pod["tolerations"] = [dict(t) for t in settings.tolerations]
    if settings.affinity:
        pod["affinity"] = dict(settings.affinity)
    return pod


def job_name(task: StepTask) -> str:
    """A DNS-1123 name, unique per attempt, that still says which step it is."""
    slug = re.sub(r"[^a-z0-9-]+", "-", task.invocation_id.lower()).strip("-")[:30].strip("-") or "step"
    return f"dynpipe-{slug}-{task.step_run_id[:8].lower()}-a{task.attempt}"


def resource_requirements(resources: Any) -> dict[str, dict[str, str]]:
    """ResourceSettings -> ``resources`` of a container (requests == limits)."""
    if resources is None:
        return {}
    requests: dict[str, str] = {}
    limits: dict[str, str] = {}
    cpus = getattr(resources, "cpu_count", None)
    if cpus is not None:
        cpu = f"{int(cpus)}" if float(cpus).is_integer() else f"{math.ceil(cpus * 1000)}m"
        requests["cpu"] = limits["cpu"] = cpu
    memory = getattr(resources, "memory_bytes", None)
    if memory is not None:
        requests["memory"] = limits["memory"] = str(int(memory))
    gpus = getattr(resources, "gpu_count", None)
    if gpus:
        limits["nvidia.com/gpu"] = str(gpus)
    out: dict[str, dict[str, str]] = {}
    if requests:
        out["requests"] = requests
    if limits:
        out["limits"] = limits
    return out


def _env_entry(name: str, value: str | EnvSource) -> dict[str, Any]:
    if isinstance(value, str):
        return {"name": name, "value": value}
    ref = value.secret_key_ref or value.config_map_key_ref
    assert ref is not None
    key = "secretKeyRef" if value.secret_key_ref is not None else "configMapKeyRef"
    body: dict[str, Any] = {"name": ref.name, "key": ref.key}
    if ref.optional is not None:
        body["optional"] = ref.optional
    return {"name": name, "valueFrom": {key: body}}


def _merged(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in override.items():
        if value is None:
            out.pop(key, None)  # an explicit None removes a default
        elif isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merged(out[key], value)
        else:
            out[key] = value
    return out


def _check_labels(labels: dict[str, str], where: str) -> None:
    for key, value in labels.items():
        if not is_label_value(value):
            raise ValueError(f"{where}: label {key}={value!r} is not a valid label value"
                             " (at most 63 characters: letters, digits, '-', '_', '.', alphanumeric at both ends)")


def owner_references(owner: tuple[str, str] | None) -> list[dict[str, Any]]:
    """The orchestrator's pod as owner, so deleting it garbage-collects its Jobs."""
    if owner is None:
        return []
    name, uid = owner
    return [{"apiVersion": "v1", "kind": "Pod", "name": name, "uid": uid,
             "controller": False, "blockOwnerDeletion": False}]


def job_manifest(task: StepTask, task_url: str, settings: KubernetesSettings,
                 owner: tuple[str, str] | None = None) -> dict[str, Any]:
    """The Job for one attempt, as the dict ``create_namespaced_job`` accepts."""
    where = f"step {task.invocation_id!r}"
    if not settings.image:
        raise ValueError(
            f"{where}: no image; set settings={{'kubernetes': {{'image': ...}}}} or DYNPIPE_K8S_IMAGE to an"
            " image that contains dynpipe and the pipeline's code"
        )
    name = job_name(task)
    env = [
        # The store root only where a volume shares it; object-store pods never see it.
        *([{"name": "DYNPIPE_HOME", "value": task.store_root}] if settings.pvc else []),
        {"name": "PYTHONUNBUFFERED", "value": "1"},
        *(_env_entry(k, v) for k, v in settings.env.items()),
    ]
    container: dict[str, Any] = {
        "name": "step",
        "image": settings.image,
        "command": [*WORKER_COMMAND, "--task", task_url],
        "env": env,
        "securityContext": _merged(DEFAULT_CONTAINER_SECURITY, settings.container_security_context),
        "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],
    }
    resources = resource_requirements(task.resources)
    if resources:
        container["resources"] = resources
    volumes: list[dict[str, Any]] = [{"name": "tmp", "emptyDir": {}}]
    if settings.pvc:
        container["volumeMounts"].append({"name": "dynpipe-store", "mountPath": task.store_root})
        volumes.append({"name": "dynpipe-store", "persistentVolumeClaim": {"claimName": settings.pvc}})
    pod_spec = pod_spec_for(settings, container, volumes)
    _check_labels(settings.labels, where)
    labels = {
        **settings.labels,
        **MANAGED_BY,
        RUN_LABEL: label_value(task.run_id),
        STEP_LABEL: label_value(task.step_name),
        JOB_LABEL: name,
    }
    annotations = {
        **settings.annotations,
        "dynpipe/invocation-id": task.invocation_id,
        "dynpipe/run-name": task.run_name,
        "dynpipe/attempt": str(task.attempt),
    }
    spec: dict[str, Any] = {
        "backoffLimit": 0,
        "ttlSecondsAfterFinished": settings.ttl_seconds_after_finished,
        "podFailurePolicy": {"rules": [
            {"action": "FailJob", "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}]},
        ]},
        "template": {"metadata": {"labels": labels, "annotations": annotations}, "spec": pod_spec},
    }
    if settings.active_deadline_seconds is not None:
        spec["activeDeadlineSeconds"] = settings.active_deadline_seconds
    metadata: dict[str, Any] = {"name": name, "namespace": settings.namespace,
                                "labels": labels, "annotations": annotations}
    refs = owner_references(owner)
    if refs:
        metadata["ownerReferences"] = refs
    return {"apiVersion": "batch/v1", "kind": "Job", "metadata": metadata, "spec": spec}
