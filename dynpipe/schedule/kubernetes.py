"""Kubernetes CronJobs for scheduled runs: one pod per due time running the pipeline module.

The pod runs ``python -m dynpipe.schedule.runner TARGET``; its image must contain the
module and dynpipe, and its store root (``DYNPIPE_HOME``) should be a persistent volume so
runs share cache and history.
"""

from __future__ import annotations

import re
from typing import Any

from croniter import croniter

from ..config import ResourceSettings

_NAME_RE = re.compile(r"[^a-z0-9-]+")


def k8s_name(text: str) -> str:
    name = _NAME_RE.sub("-", text.lower()).strip("-")
    return (name or "pipeline")[:52]


def cronjob_manifest(
    *,
    name: str,
    target: str,
    cron: str,
    image: str,
    namespace: str = "default",
    params: list[str] | None = None,
    resources: ResourceSettings | None = None,
    env: dict[str, str] | None = None,
    store_claim: str | None = None,
    store_path: str = "/var/lib/dynpipe",
) -> dict[str, Any]:
    """The CronJob as a plain dict (what ``kubectl apply -f`` takes)."""
    from kubernetes import client

    if not croniter.is_valid(cron) or len(cron.split()) != 5:
        raise ValueError(f"cron expression {cron!r} is not a valid 5-field Kubernetes schedule")
    env_vars = [client.V1EnvVar(name=k, value=v) for k, v in sorted((env or {}).items())]
    volumes = []
    mounts = []
    if store_claim:
        env_vars.append(client.V1EnvVar(name="DYNPIPE_HOME", value=store_path))
        volumes.append(
            client.V1Volume(
                name="dynpipe-store",
                persistent_volume_claim=client.V1PersistentVolumeClaimVolumeSource(claim_name=store_claim),
            )
        )
        mounts.append(client.V1VolumeMount(name="dynpipe-store", mount_path=store_path))
    requirements = None
    if resources is not None:
        amounts: dict[str, str] = {}
        if resources.cpu_count:
            amounts["cpu"] = str(resources.cpu_count)
        if resources.memory_bytes:
            amounts["memory"] = str(resources.memory_bytes)
        if resources.gpu_count:
            amounts["nvidia.com/gpu"] = str(resources.gpu_count)
        requirements = client.V1ResourceRequirements(requests=amounts or None, limits=amounts or None)
    container = client.V1Container(
        name="pipeline",
        image=image,
        command=["python", "-m", "dynpipe.schedule.runner", target, *(params or [])],
        env=env_vars or None,
        volume_mounts=mounts or None,
        resources=requirements,
    )
    job_name = k8s_name(name)
    cronjob = client.V1CronJob(
        api_version="batch/v1",
        kind="CronJob",
        metadata=client.V1ObjectMeta(name=job_name, namespace=namespace, labels={"app.kubernetes.io/managed-by": "dynpipe"}),
        spec=client.V1CronJobSpec(
            schedule=cron,
            concurrency_policy="Forbid",
            job_template=client.V1JobTemplateSpec(
                spec=client.V1JobSpec(
                    backoff_limit=0,
                    template=client.V1PodTemplateSpec(
                        metadata=client.V1ObjectMeta(labels={"dynpipe/pipeline": job_name}),
                        spec=client.V1PodSpec(restart_policy="Never", containers=[container], volumes=volumes or None),
                    ),
                )
            ),
        ),
    )
    return client.ApiClient().sanitize_for_serialization(cronjob)


def apply_cronjob(manifest: dict[str, Any], api: Any = None) -> str:
    """Create or replace the CronJob in the cluster of the current kube config; return its name."""
    from kubernetes import client, config

    if api is None:
        try:
            config.load_incluster_config()
        except config.ConfigException:
            config.load_kube_config()
        api = client.BatchV1Api()
    meta = manifest["metadata"]
    try:
        api.create_namespaced_cron_job(namespace=meta["namespace"], body=manifest)
    except client.ApiException as exc:
        if exc.status != 409:
            raise
        api.replace_namespaced_cron_job(name=meta["name"], namespace=meta["namespace"], body=manifest)
    return str(meta["name"])
