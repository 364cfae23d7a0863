"""Kubernetes CronJobs for scheduled runs: one pod per due time running the pipeline module.

The module reaches the pod in a ConfigMap mounted at ``/dynpipe/module`` (no image rebuild
when the notebook changes) unless it is already in the image (``module_in_image``). The pod
runs ``python -m dynpipe.schedule.runner``; its image needs dynpipe and the module's imports.
The pod follows the "restricted" Pod Security Standard.

Overlap policies map to ``concurrencyPolicy``: ``skip`` -> Forbid (a blocked due time still
starts if the running Job ends within ``startingDeadlineSeconds``: lower it for strict
skipping); ``replace`` -> Replace;
``queue`` -> Forbid with ``startingDeadlineSeconds`` as long as a run may last, because
Kubernetes has no queue: a due time blocked by a running Job is started by the controller
once that Job ends, as long as it is within the starting deadline (at most the newest
blocked time waits, like a queue of one). ``Allow`` would run them side by side, which is
not what "queue" promises.
"""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from .cron import Cron, Overlap, TimeZone
from .module_info import PipelineInfo

_INVALID = re.compile(r"[^a-z0-9-]+")
MODULE_DIR = "/dynpipe/module"
CONFIGMAP_LIMIT = 1_000_000  # bytes; the API server refuses ConfigMaps over 1 MiB
_EFFECTS = ("NoSchedule", "PreferNoSchedule", "NoExecute")
_OPTIONAL_POD_FIELDS = ("serviceAccountName", "tolerations")


def k8s_name(text: str, limit: int = 52) -> str:
    """A valid DNS-1123 name: lower case, digits and '-', starting and ending alphanumeric.

    52 characters for a CronJob: the controller appends an 11-character suffix for its Jobs.
    """
    name = re.sub(r"-{2,}", "-", _INVALID.sub("-", text.lower())).strip("-")
    return name[:limit].rstrip("-") or "dynpipe"


def parse_toleration(text: str) -> dict[str, Any]:
    """``key[=value]:Effect`` (kubectl's taint syntax) as a toleration."""
    spec, sep, effect = text.rpartition(":")
    if not sep or effect not in _EFFECTS or not spec:
        raise ValueError(
            f"toleration {text!r}: expected KEY[=VALUE]:EFFECT with EFFECT one of {', '.join(_EFFECTS)}"
            " (e.g. nvidia.com/gpu:NoSchedule)"
        )
    key, eq, value = spec.partition("=")
    if eq:
        return {"key": key, "operator": "Equal", "value": value, "effect": effect}
    return {"key": key, "operator": "Exists", "effect": effect}


def parse_env(pairs: list[str]) -> dict[str, str]:
    env: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_.-]*", key):
            raise ValueError(f"--env {pair!r}: expected NAME=VALUE with a valid variable name")
        env[key] = value
    return env


class CronJobSpec(BaseModel):
    """Everything a scheduled pipeline's CronJob needs; checked when built, errors name the option."""

    model_config = ConfigDict(extra="forbid")
    name: str
    cron: Cron
    image: str = Field(min_length=1)
    timezone: TimeZone = "UTC"
    namespace: str = "default"
    params: list[str] = Field(default_factory=list)
    overlap: Overlap = "skip"
    service_account: str | None = None
    env: dict[str, str] = Field(default_factory=dict)
    secret_env: list[str] = Field(default_factory=list)
    gpu: int = Field(default=0, ge=0)
    cpu: float | None = Field(default=None, gt=0)
    memory: str | None = None
    tolerations: list[dict[str, Any]] = Field(default_factory=list)
    module_in_image: str | None = None
    store_claim: str | None = None
    store_path: str = "/var/lib/dynpipe"
    starting_deadline: int = Field(default=300, ge=10)
    active_deadline: int = Field(default=6 * 3600, ge=1)
    ttl_after_finished: int = Field(default=24 * 3600, ge=0)
    history: int = Field(default=3, ge=0, le=100)
    run_as_user: int = Field(default=1000, ge=1)

    @field_validator("module_in_image")
    @classmethod
    def _in_image(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith("/"):
            raise ValueError(f"--module-in-image {value!r}: give the module's absolute path inside the image")
        return value


def manifests(spec: CronJobSpec, module: Path | None, pipeline: PipelineInfo) -> list[dict[str, Any]]:
    """The ConfigMap (unless the module is in the image) and the CronJob, as ``kubectl apply`` takes them."""
    name = k8s_name(spec.name)
    labels = {"app.kubernetes.io/managed-by": "dynpipe", "dynpipe/schedule": name}
    out: list[dict[str, Any]] = []
    volumes: list[dict[str, Any]] = []
    mounts: list[dict[str, Any]] = []
    if spec.module_in_image:
        target = spec.module_in_image
    else:
        if module is None:
            raise ValueError("a CronJob needs the module file, or --module-in-image PATH")
        source = module.read_text()
        if len(source.encode()) > CONFIGMAP_LIMIT:
            raise ValueError(f"module {module} is over 1 MB, too large for a ConfigMap: use --module-in-image")
        key = k8s_name(module.stem, 200).replace("-", "_") + ".py"
        cm_name = k8s_name(f"{name}-module", 63)
        out.append({
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": cm_name, "namespace": spec.namespace, "labels": labels},
            "data": {key: source},
        })
        volumes.append({"name": "module", "configMap": {"name": cm_name}})
        mounts.append({"name": "module", "mountPath": MODULE_DIR, "readOnly": True})
        target = f"{MODULE_DIR}/{key}"
    env = [{"name": k, "value": v} for k, v in sorted(spec.env.items())]
    env.append({"name": "DYNPIPE_HOME", "value": spec.store_path})
    volumes.append(
        {"name": "store", "persistentVolumeClaim": {"claimName": spec.store_claim}}
        if spec.store_claim else {"name": "store", "emptyDir": {}}
    )
    mounts.append({"name": "store", "mountPath": spec.store_path})
    amounts: dict[str, str] = {}
    if spec.cpu:
        amounts["cpu"] = f"{spec.cpu:g}"
    if spec.memory:
        amounts["memory"] = spec.memory
    if spec.gpu:
        amounts["nvidia.com/gpu"] = str(spec.gpu)
    command = ["python", "-m", "dynpipe.schedule.runner", f"{target}:{pipeline.attr}",
               "--run-name", f"{name}-{{date}}-{{time}}", "--schedule", spec.name, *spec.params]
    container: dict[str, Any] = {
        "name": "pipeline", "image": spec.image, "command": command, "env": env, "volumeMounts": mounts,
        "securityContext": {
            "runAsNonRoot": True, "allowPrivilegeEscalation": False,
            "capabilities": {"drop": ["ALL"]}, "seccompProfile": {"type": "RuntimeDefault"},
        },
    }
    if spec.secret_env:
        container["envFrom"] = [{"secretRef": {"name": s}} for s in spec.secret_env]
    if amounts:
        container["resources"] = {"requests": amounts, "limits": amounts}
    pod: dict[str, Any] = {
        "restartPolicy": "Never",
        "securityContext": {
            "runAsNonRoot": True, "runAsUser": spec.run_as_user, "runAsGroup": spec.run_as_user,
            "fsGroup": spec.run_as_user, "seccompProfile": {"type": "RuntimeDefault"},
        },
        "containers": [container],
        "volumes": volumes,
    }
    if spec.service_account:
        pod["serviceAccountName"] = spec.service_account
    if spec.tolerations:
        pod["tolerations"] = spec.tolerations
    policy = {"skip": "Forbid", "queue": "Forbid", "replace": "Replace"}[spec.overlap]
    deadline = max(spec.starting_deadline, spec.active_deadline) if spec.overlap == "queue" else spec.starting_deadline
    out.append({
        "apiVersion": "batch/v1", "kind": "CronJob",
        "metadata": {"name": name, "namespace": spec.namespace, "labels": labels},
        "spec": {
            "schedule": spec.cron, "timeZone": spec.timezone, "startingDeadlineSeconds": deadline,
            "concurrencyPolicy": policy,
            "successfulJobsHistoryLimit": spec.history, "failedJobsHistoryLimit": spec.history,
            "jobTemplate": {
                "metadata": {"labels": labels},
                "spec": {
                    "backoffLimit": 0, "activeDeadlineSeconds": spec.active_deadline,
                    "ttlSecondsAfterFinished": spec.ttl_after_finished,
                    "template": {"metadata": {"labels": labels}, "spec": pod},
                },
            },
        },
    })
    return out


def _merge_patch(obj: dict[str, Any]) -> dict[str, Any]:
    """``obj`` as a JSON merge patch: lists replace what is there, and the optional pod fields it
    leaves out are sent as null so that an option dropped since the last apply is removed."""
    if obj["kind"] != "CronJob":
        return obj
    patch = copy.deepcopy(obj)
    pod = patch["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    for key in _OPTIONAL_POD_FIELDS:
        pod.setdefault(key, None)
    return patch


def apply(objects: list[dict[str, Any]], api_client: Any = None) -> list[str]:
    """Create the objects, or update those that exist (a merge patch: running Jobs are kept);
    ``kind/name`` of each. ``api_client`` defaults to the in-cluster config, else the kube config.
    """
    from kubernetes import client, config

    if api_client is None:
        try:
            config.load_incluster_config()
        except config.ConfigException:
            config.load_kube_config()
        api_client = client.ApiClient()
    core, batch = client.CoreV1Api(api_client), client.BatchV1Api(api_client)
    calls: dict[str, tuple[Any, Any]] = {
        "ConfigMap": (core.create_namespaced_config_map, core.patch_namespaced_config_map),
        "CronJob": (batch.create_namespaced_cron_job, batch.patch_namespaced_cron_job),
    }
    done = []
    for obj in objects:
        create, patch = calls[obj["kind"]]
        meta = obj["metadata"]
        try:
            create(namespace=meta["namespace"], body=obj)
            done.append(f"{obj['kind']}/{meta['name']} created")
        except client.ApiException as exc:
            if exc.status != 409:
                raise
            patch(name=meta["name"], namespace=meta["namespace"], body=_merge_patch(obj),
                  _content_type="application/merge-patch+json")
            done.append(f"{obj['kind']}/{meta['name']} updated")
    return done
