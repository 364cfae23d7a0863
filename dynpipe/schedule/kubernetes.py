"""Kubernetes CronJobs for scheduled runs: one pod per due time running the pipeline module.

The job template's pod is the one ``dynpipe run MODULE --on kubernetes`` starts (built once,
in ``run_job``): ``dynpipe run`` on the module, shipped in a ConfigMap mounted at
``/dynpipe/module`` (no image rebuild when the notebook changes) unless it is already in the
image (``module_in_image``), against the shared store. Its image needs dynpipe and the
module's imports. The pod follows the "restricted" Pod Security Standard.

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
from pathlib import Path
from typing import Any

from pydantic import Field

from ..runtimes.k8s.manifests import MANAGED_BY
from .cron import Cron, Overlap, TimeZone
from .module_info import PipelineInfo
from .pod_options import PodOptions, k8s_name, parse_env, parse_toleration
from .run_job import job_spec, pod_template, run_command, ship_module

__all__ = ["CronJobSpec", "apply", "k8s_name", "manifests", "parse_env", "parse_toleration", "run_name_template"]

SCHEDULE_LABEL = "dynpipe/schedule"
_OPTIONAL_POD_FIELDS = ("serviceAccountName", "tolerations")


class CronJobSpec(PodOptions):
    """Everything a scheduled pipeline's CronJob needs; checked when built, errors name the option."""

    name: str
    cron: Cron
    timezone: TimeZone = "UTC"
    params: list[str] = Field(default_factory=list)
    overlap: Overlap = "skip"
    starting_deadline: int = Field(default=300, ge=10)
    history: int = Field(default=3, ge=0, le=100)


def run_name_template(schedule: str) -> str:
    """The run name a CronJob's pod gives its run: the schedule's name tags it (see ``k8s_objects.schedule_runs``)."""
    return f"{schedule}-{{date}}-{{time}}"


def manifests(spec: CronJobSpec, module: Path | None, pipeline: PipelineInfo) -> list[dict[str, Any]]:
    """The ConfigMap (unless the module is in the image) and the CronJob, as ``kubectl apply`` takes them.

    The job template's pod is the one ``dynpipe run --on kubernetes`` starts (``run_job``).
    """
    name = k8s_name(spec.name)
    labels = {**MANAGED_BY, SCHEDULE_LABEL: name}
    target, _, configmap = ship_module(name, spec.namespace, module, spec.module_in_image, pipeline.attr, labels)
    command = run_command(target, spec.params, run_name_template(spec.name))
    template = pod_template(spec, command, labels, configmap, origin=f"schedule:{spec.name}")
    policy = {"skip": "Forbid", "queue": "Forbid", "replace": "Replace"}[spec.overlap]
    deadline = max(spec.starting_deadline, spec.active_deadline) if spec.overlap == "queue" else spec.starting_deadline
    cronjob = {
        "apiVersion": "batch/v1", "kind": "CronJob",
        "metadata": {"name": name, "namespace": spec.namespace, "labels": labels},
        "spec": {
            "schedule": spec.cron, "timeZone": spec.timezone, "startingDeadlineSeconds": deadline,
            "concurrencyPolicy": policy,
            "successfulJobsHistoryLimit": spec.history, "failedJobsHistoryLimit": spec.history,
            "jobTemplate": {"metadata": {"labels": labels}, "spec": job_spec(spec.settings(), template)},
        },
    }
    return [configmap, cronjob] if configmap is not None else [cronjob]


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
    from kubernetes import client

    from .k8s_objects import load_client

    api_client = api_client or load_client()
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
