"""The cluster side of whole runs and Kubernetes schedules, through the official client.

Start a run's Job (its ConfigMap owned by the Job, so both go together), follow it to its
end with the pod's log, and manage a schedule's CronJob: its state is ``spec.suspend``,
pause and resume patch it, ``run-now`` creates a Job from its ``jobTemplate`` (as
``kubectl create job --from=cronjob/NAME`` does), delete removes the CronJob, its Jobs and
its ConfigMap. API errors are summarised in one line (``diagnose.api_error``).
"""

from __future__ import annotations

import os
import sys
import time
from typing import Any, TextIO

from ..runtimes.k8s.diagnose import api_error, condition, pending_reason, termination

POLL = 1.0  # seconds between looks at a followed Job: one Job, so a watch buys little
_STUCK = ("ImagePullBackOff", "ErrImagePull", "InvalidImageName", "CreateContainerConfigError")


class ClusterError(RuntimeError):
    """The API server refused or could not be reached; the message is one summarised line."""


def load_client() -> Any:
    """An ``ApiClient`` from the in-cluster config, else the kube config (``KUBECONFIG``)."""
    from kubernetes import client, config

    try:
        config.load_incluster_config()
    except config.ConfigException:
        try:  # KUBECONFIG read now: the client reads it once, when it is imported
            config.load_kube_config(config_file=os.environ.get("KUBECONFIG"))
        except (config.ConfigException, OSError) as exc:
            raise ClusterError(f"no Kubernetes cluster configured (in-cluster or KUBECONFIG): {exc}") from None
    return client.ApiClient()


def _apis(api: Any) -> tuple[Any, Any]:
    from kubernetes import client

    return client.BatchV1Api(api), client.CoreV1Api(api)


def _plain(api: Any, obj: Any) -> dict[str, Any]:
    return dict(api.sanitize_for_serialization(obj))


def start_run_job(objects: list[dict[str, Any]], api: Any) -> str:
    """Create the run's ConfigMap and Job; the ConfigMap is then owned by the Job (collected with it)."""
    batch, core = _apis(api)
    job = objects[-1]
    ns = job["metadata"]["namespace"]
    try:
        for obj in objects[:-1]:
            core.create_namespaced_config_map(namespace=ns, body=obj)
        created = _plain(api, batch.create_namespaced_job(namespace=ns, body=job))
        uid = created.get("metadata", {}).get("uid")
        for obj in objects[:-1]:
            if uid:
                owner = {"apiVersion": "batch/v1", "kind": "Job", "name": job["metadata"]["name"], "uid": uid}
                core.patch_namespaced_config_map(obj["metadata"]["name"], ns,
                                                 {"metadata": {"ownerReferences": [owner]}},
                                                 _content_type="application/merge-patch+json")
    except Exception as exc:  # noqa: BLE001 - summarised, never dumped with headers
        raise ClusterError(f"cannot start the run's Job in namespace {ns}: {api_error(exc)}") from None
    return str(job["metadata"]["name"])


def _job_pod(core: Any, api: Any, ns: str, job: str) -> dict[str, Any] | None:
    pods = core.list_namespaced_pod(ns, label_selector=f"job-name={job}").items
    return _plain(api, pods[-1]) if pods else None


def _stream_log(core: Any, ns: str, pod: str, out: TextIO) -> None:
    resp = core.read_namespaced_pod_log(pod, ns, follow=True, _preload_content=False)
    try:
        for chunk in resp.stream(amt=4096, decode_content=True):
            out.write(chunk.decode("utf-8", "replace"))
            out.flush()
    finally:
        resp.release_conn()


def follow_job(api: Any, ns: str, name: str, out: TextIO | None = None, pending_timeout: float = 600.0,
               deadline: float | None = None) -> tuple[bool, str]:
    """Wait for Job ``name`` to end, streaming its pod's log to ``out``; ``(succeeded, one-line status)``.

    A pod stuck pending (image pull, unschedulable) past ``pending_timeout`` ends the wait with
    the reason; ``deadline`` (seconds) bounds the whole wait.
    """
    out = out or sys.stdout
    batch, core = _apis(api)
    started = time.monotonic()
    streamed = False
    said = ""
    while True:
        try:
            job = _plain(api, batch.read_namespaced_job(name, ns))
        except Exception as exc:  # noqa: BLE001
            return False, f"Job {ns}/{name}: {api_error(exc)}"
        pod = _job_pod(core, api, ns, name)
        phase = ((pod or {}).get("status") or {}).get("phase")
        if pod is not None and not streamed and phase in ("Running", "Succeeded", "Failed"):
            streamed = True
            try:
                _stream_log(core, ns, pod["metadata"]["name"], out)
            except Exception as exc:  # noqa: BLE001 - the status below still tells the outcome
                out.write(f"dynpipe: cannot read the pod's log: {api_error(exc)}\n")
            continue
        if condition(job, "Complete"):
            return True, f"Job {ns}/{name} completed"
        failed = condition(job, "Failed")
        if failed:
            ended = termination(pod)
            why = f"{failed.get('reason') or 'Failed'}: {failed.get('message') or ''}".rstrip(": ")
            if ended:
                why += f" ({ended[0]}: {ended[1]})"
            return False, f"Job {ns}/{name} failed: {why}"
        waited = time.monotonic() - started
        if phase in (None, "Pending"):
            reason = pending_reason(pod) if pod is not None else ""
            if reason and reason != said and not reason.startswith("no pod"):
                said = reason
                out.write(f"dynpipe: pod pending: {reason}\n")
            if waited > pending_timeout or (reason.split(":")[0] in _STUCK and waited > min(pending_timeout, 60)):
                return False, f"Job {ns}/{name}: pod still pending after {waited:.0f}s: {reason or 'no pod yet'}"
        if deadline is not None and waited > deadline:
            return False, f"Job {ns}/{name}: still running after {deadline:g}s (left running)"
        time.sleep(POLL)


# -- schedules --------------------------------------------------------------------------------
def cronjob_state(api: Any, ns: str, name: str) -> str:
    """``active``, ``paused`` (``spec.suspend``), ``missing`` or ``unknown (why)``."""
    from kubernetes.client import ApiException

    batch, _ = _apis(api)
    try:
        cron = _plain(api, batch.read_namespaced_cron_job(name, ns))
    except ApiException as exc:
        return "missing" if exc.status == 404 else f"unknown ({api_error(exc)})"
    except Exception as exc:  # noqa: BLE001 - a list must still show the other schedules
        return f"unknown ({api_error(exc)})"
    return "paused" if (cron.get("spec") or {}).get("suspend") else "active"


def set_suspended(api: Any, ns: str, name: str, suspend: bool) -> None:
    batch, _ = _apis(api)
    try:
        batch.patch_namespaced_cron_job(name, ns, {"spec": {"suspend": suspend}},
                                        _content_type="application/merge-patch+json")
    except Exception as exc:  # noqa: BLE001
        raise ClusterError(f"cannot {'pause' if suspend else 'resume'} CronJob {ns}/{name}: {api_error(exc)}") from None


def delete_cronjob(api: Any, ns: str, name: str, configmap: str | None) -> list[str]:
    """Delete the CronJob (its Jobs and pods with it) and its ConfigMap; what was deleted or already gone."""
    from kubernetes.client import ApiException, V1DeleteOptions

    batch, core = _apis(api)
    done = []
    calls: list[tuple[str, Any]] = [(f"CronJob/{name}", batch.delete_namespaced_cron_job)]
    if configmap:
        calls.append((f"ConfigMap/{configmap}", core.delete_namespaced_config_map))
    for what, delete in calls:
        try:
            delete(what.split("/", 1)[1], ns, body=V1DeleteOptions(propagation_policy="Background"))
            done.append(f"{what} deleted")
        except ApiException as exc:
            if exc.status != 404:
                raise ClusterError(f"cannot delete {what} in {ns}: {api_error(exc)}") from None
            done.append(f"{what} was already gone")
    return done


def job_from_cronjob(api: Any, ns: str, name: str) -> str:
    """Create a Job from the CronJob's template now (``kubectl create job --from``); the Job's name."""
    batch, _ = _apis(api)
    try:
        cron = _plain(api, batch.read_namespaced_cron_job(name, ns))
    except Exception as exc:  # noqa: BLE001
        raise ClusterError(f"cannot read CronJob {ns}/{name}: {api_error(exc)}") from None
    template = cron["spec"]["jobTemplate"]
    job_name = f"{name[:52]}-{int(time.time()):x}"[:63].rstrip("-")
    metadata: dict[str, Any] = {
        "name": job_name, "namespace": ns, "labels": dict((template.get("metadata") or {}).get("labels") or {}),
        "annotations": {"cronjob.kubernetes.io/instantiate": "manual"},
    }
    uid = (cron.get("metadata") or {}).get("uid")
    if uid:
        metadata["ownerReferences"] = [{"apiVersion": "batch/v1", "kind": "CronJob", "name": name, "uid": uid,
                                        "controller": True, "blockOwnerDeletion": True}]
    body = {"apiVersion": "batch/v1", "kind": "Job", "metadata": metadata, "spec": template["spec"]}
    try:
        batch.create_namespaced_job(ns, body)
    except Exception as exc:  # noqa: BLE001
        raise ClusterError(f"cannot create a Job from CronJob {ns}/{name}: {api_error(exc)}") from None
    return job_name
