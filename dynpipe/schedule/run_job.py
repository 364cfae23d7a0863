"""The orchestrator's pod: a whole run of a pipeline module in the cluster.

One builder serves ``dynpipe run MODULE --on kubernetes`` (a Job) and scheduled runs (a
CronJob's ``jobTemplate``), so both are the same pod: ``dynpipe run`` on the module shipped
in a ConfigMap (or already in the image), the step pods' ``KubernetesSettings`` (image,
service account, env and Secrets, tolerations, secure defaults, deadline, TTL) and the
shared store passed through the environment. A store the cluster cannot reach (the local
SQLite file, a local artifact folder) is refused before anything is created, because the
run would be recorded in the pod's own disk and lost with it.
"""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from ..runtimes.k8s.config import EnvSource, KubernetesSettings
from ..runtimes.k8s.manifests import (
    DEFAULT_CONTAINER_SECURITY,
    MANAGED_BY,
    _env_entry,
    _merged,
    pod_spec_for,
)
from ..store.urls import is_postgres_url, mask_password
from .module_info import PipelineInfo, resolve_module
from .pod_options import PodOptions, k8s_name

MODULE_DIR = "/dynpipe/module"
STORE_PATH = "/var/lib/dynpipe"
CONFIGMAP_LIMIT = 1_000_000  # bytes; the API server refuses ConfigMaps over 1 MiB
RUN_COMMAND = ["python", "-m", "dynpipe.cli", "run"]
RUN_JOB_LABEL = "dynpipe/run-job"
CONFIG_KEY = "run-config.yaml"


def module_of(target: str, in_image: str | None) -> tuple[Path | None, PipelineInfo]:
    """The local module file (parsed, never imported) and its pipeline; with ``in_image`` the file may be absent."""
    if in_image:
        where, sep, attr = target.rpartition(":")
        if not sep or not attr or "/" in attr:
            raise ValueError("with --module-in-image, give MODULE as FILE:PIPELINE so the pod knows which pipeline")
        if Path(where).is_file():
            return resolve_module(target)
        return None, PipelineInfo(attr, attr, (), True)
    return resolve_module(target)


def ship_module(base: str, namespace: str, module: Path | None, in_image: str | None, attr: str,
                labels: dict[str, str], config: Path | None = None) -> tuple[str, str | None, dict[str, Any] | None]:
    """``(target the pod runs, config path in the pod, ConfigMap or None)``: the module (unless it is
    in the image) and the YAML config template travel in one ConfigMap."""
    data: dict[str, str] = {}
    if in_image:
        target = f"{in_image}:{attr}"
    elif module is None:
        raise ValueError("the pod needs the module file, or --module-in-image PATH")
    else:
        key = k8s_name(module.stem, 200).replace("-", "_") + ".py"
        data[key] = module.read_text()
        target = f"{MODULE_DIR}/{key}:{attr}"
    in_pod = None
    if config is not None:
        data[CONFIG_KEY] = config.read_text()
        in_pod = f"{MODULE_DIR}/{CONFIG_KEY}"
    if sum(len(v.encode()) for v in data.values()) > CONFIGMAP_LIMIT:
        raise ValueError(f"module {module} (with its config) is over 1 MB, too large for a ConfigMap:"
                         " use --module-in-image")
    if not data:
        return target, None, None
    configmap = {
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": k8s_name(f"{base}-module", 63), "namespace": namespace, "labels": dict(labels)},
        "data": data,
    }
    return target, in_pod, configmap


def run_command(target: str, params: list[str], run_name: str | None = None, config: str | None = None) -> list[str]:
    """``dynpipe run`` as the pod's command: relative to nothing on the user's machine."""
    command = [*RUN_COMMAND, target]
    for pair in params:
        command += ["-p", pair]
    if config:
        command += ["--config", config]
    if run_name:
        command += ["--run-name", run_name]
    return command


def _is_remote(url: str) -> bool:
    scheme = urlsplit(url).scheme
    return len(scheme) > 1 and scheme not in ("file", "local")


def store_env(given: dict[str, str | EnvSource], store_claim: str | None, allow_local: bool,
              store_url: str | None, artifact_store: str | None) -> list[dict[str, Any]]:
    """The env entries that point the pod at the shared store; refuse a store it cannot reach.

    ``given`` is the env the user set for the pod (it wins: they said where the store is);
    ``store_url``/``artifact_store`` are this machine's settings, passed on when the cluster
    can reach them. A PostgreSQL URL holding a password is never written into a manifest.
    """
    out: list[dict[str, Any]] = []
    local: list[str] = []
    if "DYNPIPE_STORE_URL" not in given:
        if store_url is not None and is_postgres_url(store_url):
            if urlsplit(store_url).password or "password=" in store_url:
                raise ValueError(
                    f"DYNPIPE_STORE_URL ({mask_password(store_url)}) holds a password, which would be written"
                    " in clear text into the manifest: put the URL in a Secret (kubectl create secret generic"
                    " dynpipe-store --from-literal=url=...) and pass --env-secret DYNPIPE_STORE_URL=dynpipe-store:url"
                )
            out.append({"name": "DYNPIPE_STORE_URL", "value": store_url})
        elif store_claim is None:
            local.append(f"run metadata in the local SQLite file {store_url or 'metadata.db of the store folder'}")
    if "DYNPIPE_ARTIFACT_STORE" not in given:
        if artifact_store is not None and _is_remote(artifact_store):
            out.append({"name": "DYNPIPE_ARTIFACT_STORE", "value": artifact_store})
        elif store_claim is None:
            local.append(f"artifacts in the local folder {artifact_store or 'artifacts/ of the store folder'}")
    if local and not allow_local:
        raise ValueError(
            f"the store is not reachable from the cluster ({'; '.join(local)}): the run would be recorded on the"
            " pod's own disk and lost with it. Set DYNPIPE_STORE_URL to a PostgreSQL URL and DYNPIPE_ARTIFACT_STORE"
            " to an object store URL (s3://...) the cluster reaches (or pass them with --env/--env-secret), put"
            " the store on a volume with --store-claim, or pass --allow-local-store to run anyway"
        )
    return out


def orchestrator_pod(settings: KubernetesSettings, command: list[str], *, labels: dict[str, str],
                     resources: dict[str, dict[str, str]] | None = None, env_from_secrets: list[str] | None = None,
                     configmap: dict[str, Any] | None = None, store_claim: str | None = None,
                     store_path: str = STORE_PATH, extra_env: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """The pod template (``metadata`` and ``spec``) of the process that orchestrates one run."""
    if not settings.image:
        raise ValueError("no image: give --image IMAGE (an image with dynpipe and the module's imports)")
    env: list[dict[str, Any]] = [
        {"name": "DYNPIPE_HOME", "value": store_path},
        {"name": "HOME", "value": "/tmp"},
        {"name": "PYTHONUNBUFFERED", "value": "1"},
        # The pod's own name and uid: the Jobs of its isolated steps name it as their owner.
        {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        {"name": "POD_UID", "valueFrom": {"fieldRef": {"fieldPath": "metadata.uid"}}},
        *(extra_env or []),
        *(_env_entry(k, v) for k, v in sorted(settings.env.items())),
    ]
    mounts: list[dict[str, Any]] = [{"name": "tmp", "mountPath": "/tmp"}, {"name": "store", "mountPath": store_path}]
    volumes: list[dict[str, Any]] = [
        {"name": "tmp", "emptyDir": {}},
        {"name": "store", "persistentVolumeClaim": {"claimName": store_claim}}
        if store_claim else {"name": "store", "emptyDir": {}},
    ]
    if configmap is not None:
        volumes.append({"name": "module", "configMap": {"name": configmap["metadata"]["name"]}})
        mounts.append({"name": "module", "mountPath": MODULE_DIR, "readOnly": True})
    container: dict[str, Any] = {
        "name": "pipeline", "image": settings.image, "command": command, "env": env, "volumeMounts": mounts,
        "securityContext": _merged(DEFAULT_CONTAINER_SECURITY, settings.container_security_context),
    }
    if env_from_secrets:
        container["envFrom"] = [{"secretRef": {"name": s}} for s in env_from_secrets]
    if resources:
        container["resources"] = resources
    pod = pod_spec_for(settings, container, volumes)
    metadata: dict[str, Any] = {"labels": {**settings.labels, **labels}}
    if settings.annotations:
        metadata["annotations"] = dict(settings.annotations)
    return {"metadata": metadata, "spec": pod}


def job_spec(settings: KubernetesSettings, template: dict[str, Any]) -> dict[str, Any]:
    """A Job spec around the pod template: no Kubernetes retries (the run has its own), bounded and collected."""
    spec: dict[str, Any] = {"backoffLimit": 0, "ttlSecondsAfterFinished": settings.ttl_seconds_after_finished,
                            "template": template}
    if settings.active_deadline_seconds is not None:
        spec["activeDeadlineSeconds"] = settings.active_deadline_seconds
    return spec


def pod_template(opts: PodOptions, command: list[str], labels: dict[str, str],
                 configmap: dict[str, Any] | None, origin: str | None = None) -> dict[str, Any]:
    """The orchestrator's pod template for ``opts``, pointed at this machine's shared store;
    ``origin`` is recorded as its runs' origin (``schedule:NAME`` for a CronJob)."""
    from .. import project_config

    settings = opts.settings()
    extra = store_env(settings.env, opts.store_claim, opts.allow_local_store, project_config.store_url(),
                      project_config.artifact_store_url())
    if origin is not None:
        extra = [*extra, {"name": "DYNPIPE_RUN_ORIGIN", "value": origin}]
    return orchestrator_pod(settings, command, labels=labels, resources=opts.resources(),
                            env_from_secrets=opts.secret_env, configmap=configmap, store_claim=opts.store_claim,
                            extra_env=extra)


def run_job_manifests(opts: PodOptions, module: Path | None, attr: str, params: list[str], pipeline_name: str,
                      config: Path | None = None) -> list[dict[str, Any]]:
    """The ConfigMap (unless the module is in the image) and the Job of one run, as ``kubectl apply`` takes them."""
    name = k8s_name(f"run-{pipeline_name}", 56) + "-" + secrets.token_hex(3)
    labels = {**MANAGED_BY, RUN_JOB_LABEL: name}
    target, in_pod, configmap = ship_module(name, opts.namespace, module, opts.module_in_image, attr, labels, config)
    template = pod_template(opts, run_command(target, params, config=in_pod), labels, configmap)
    job = {"apiVersion": "batch/v1", "kind": "Job",
           "metadata": {"name": name, "namespace": opts.namespace, "labels": labels},
           "spec": job_spec(opts.settings(), template)}
    return [configmap, job] if configmap is not None else [job]
