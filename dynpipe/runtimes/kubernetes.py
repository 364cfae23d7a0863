"""Isolated steps on Kubernetes: one Job (one Pod) per step attempt.

Select it with ``DYNPIPE_ISOLATED_BACKEND=kubernetes``; ``runtime="isolated"`` steps
then run as ``python -m dynpipe.runtimes.worker --task <file>`` in a container of
``DYNPIPE_K8S_IMAGE`` — the same worker entry point and ``execute_task`` as the local
pool, so semantics match.

The store root must be shared: the orchestrator writes the task payload under
``<store root>/k8s-tasks/``, the pod reads it, loads its inputs and writes its output
artifacts into the same store root, and leaves its result next to the task file. Mount
a ReadWriteMany volume at the *same path* in the orchestrator and the pods
(``DYNPIPE_K8S_PVC`` names the claim; it is mounted at the store root) — or point
``DYNPIPE_HOME`` at a path that is already shared. The image must contain dynpipe and
every module that defines a step by import path; steps from ``__main__`` or a notebook
travel by value.

``ResourceSettings`` becomes the container's requests and limits (cpu, memory in
bytes, ``nvidia.com/gpu``). Retries stay in the engine (``backoffLimit: 0``);
``cancel()`` deletes the Job with its Pod. Settings (environment variables):
``DYNPIPE_K8S_NAMESPACE`` (default ``default``), ``DYNPIPE_K8S_IMAGE`` (required),
``DYNPIPE_K8S_PVC``, ``DYNPIPE_K8S_SERVICE_ACCOUNT``, ``DYNPIPE_K8S_POLL`` (seconds).
"""

from __future__ import annotations

from .. import settings

import dataclasses
import math
import os
import re
import threading
import time
from pathlib import Path
from typing import Any

from .base import CompletedLaunch, Launch, LogCallback, StepRuntime
from .shipping import MaterializerShipment, func_ref
from .task import StepTask, TaskResult
from .worker import decode_result, encode_task

WORKER_COMMAND = ["python", "-m", "dynpipe.runtimes.worker"]


def job_name(task: StepTask) -> str:
    """A DNS-1123 name, unique per attempt, that still says which step it is."""
    slug = re.sub(r"[^a-z0-9-]+", "-", task.invocation_id.lower()).strip("-")[:30] or "step"
    return f"dynpipe-{slug}-{task.step_run_id[:8]}-a{task.attempt}"


def resource_requirements(settings: Any) -> dict[str, dict[str, str]]:
    """ResourceSettings -> ``resources`` of a container (requests == limits)."""
    if settings is None:
        return {}
    requests: dict[str, str] = {}
    limits: dict[str, str] = {}
    cpus = getattr(settings, "cpu_count", None)
    if cpus is not None:
        cpu = f"{int(cpus)}" if float(cpus).is_integer() else f"{math.ceil(cpus * 1000)}m"
        requests["cpu"] = limits["cpu"] = cpu
    memory = getattr(settings, "memory_bytes", None)
    if memory is not None:
        requests["memory"] = limits["memory"] = str(int(memory))
    gpus = getattr(settings, "gpu_count", None)
    if gpus:
        limits["nvidia.com/gpu"] = str(gpus)
    out: dict[str, dict[str, str]] = {}
    if requests:
        out["requests"] = requests
    if limits:
        out["limits"] = limits
    return out


@dataclasses.dataclass
class KubernetesSettings:
    namespace: str = "default"
    image: str | None = None
    pvc: str | None = None
    service_account: str | None = None
    poll_interval: float = 2.0
    ttl_seconds_after_finished: int = 3600

    @classmethod
    def from_env(cls) -> KubernetesSettings:
        return cls(
            namespace=settings.k8s_namespace(),
            image=settings.k8s_image(),
            pvc=settings.k8s_pvc(),
            service_account=settings.k8s_service_account(),
            poll_interval=settings.k8s_poll_interval(),
        )


def job_manifest(task: StepTask, task_path: str, settings: KubernetesSettings) -> dict[str, Any]:
    """The Job for one attempt, as the dict ``create_namespaced_job`` accepts."""
    if not settings.image:
        raise ValueError(
            f"step {task.invocation_id!r}: DYNPIPE_K8S_IMAGE is not set; the Kubernetes runtime"
            " needs an image that contains dynpipe and the pipeline's code"
        )
    container: dict[str, Any] = {
        "name": "step",
        "image": settings.image,
        "command": [*WORKER_COMMAND, "--task", task_path],
        "env": [
            {"name": "DYNPIPE_HOME", "value": task.store_root},
            {"name": "PYTHONUNBUFFERED", "value": "1"},
        ],
    }
    resources = resource_requirements(task.resources)
    if resources:
        container["resources"] = resources
    pod_spec: dict[str, Any] = {"restartPolicy": "Never", "containers": [container]}
    if settings.pvc:
        container["volumeMounts"] = [{"name": "dynpipe-store", "mountPath": task.store_root}]
        pod_spec["volumes"] = [
            {"name": "dynpipe-store", "persistentVolumeClaim": {"claimName": settings.pvc}}
        ]
    if settings.service_account:
        pod_spec["serviceAccountName"] = settings.service_account
    labels = {
        "app.kubernetes.io/managed-by": "dynpipe",
        "dynpipe/run-id": task.run_id[:63],
        "dynpipe/step": re.sub(r"[^A-Za-z0-9_.-]+", "-", task.step_name)[:63].strip("-_.") or "step",
    }
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": job_name(task),
            "labels": labels,
            "annotations": {"dynpipe/invocation-id": task.invocation_id, "dynpipe/run-name": task.run_name},
        },
        "spec": {
            "backoffLimit": 0,
            "ttlSecondsAfterFinished": settings.ttl_seconds_after_finished,
            "template": {"metadata": {"labels": labels}, "spec": pod_spec},
        },
    }


def _make_apis() -> tuple[Any, Any]:
    """Real clients: in-cluster config when running in a pod, else ~/.kube/config."""
    from kubernetes import client, config  # type: ignore[import-untyped]

    try:
        config.load_incluster_config()
    except config.ConfigException:
        config.load_kube_config()
    return client.BatchV1Api(), client.CoreV1Api()


def _failed(task: StepTask, message: str, logs: str = "") -> TaskResult:
    msg = f"step {task.invocation_id!r}: {message}"
    return TaskResult.from_exception(
        RuntimeError(msg), logs=logs + f"dynpipe: {message}\n", error_type="KubernetesJobError", traceback=msg + "\n"
    )


class KubernetesLaunch(Launch):
    """One Job: a thread polls its status and reads the result file when it ends."""

    def __init__(self, runtime: KubernetesRuntime, task: StepTask, name: str, task_path: Path,
                 on_line: LogCallback | None) -> None:
        self.runtime = runtime
        self.task = task
        self.name = name
        self.task_path = task_path
        self.on_line = on_line
        self._event = threading.Event()
        self._result: TaskResult | None = None
        self._cancelled = False
        self._thread = threading.Thread(target=self._watch, name=f"dynpipe-k8s-{name}", daemon=True)
        self._thread.start()

    def result(self, timeout: float | None = None) -> TaskResult:
        if not self._event.wait(timeout):
            raise TimeoutError(f"Job {self.name} of step {self.task.invocation_id!r} is still running")
        assert self._result is not None
        return self._result

    def done(self) -> bool:
        return self._event.is_set()

    def cancel(self) -> bool:
        if self._event.is_set():
            return False
        self._cancelled = True
        try:
            self.runtime.batch_api.delete_namespaced_job(
                self.name, self.runtime.settings.namespace,
                propagation_policy="Background", grace_period_seconds=0,
            )
        except Exception:  # noqa: BLE001 - already gone
            pass
        self._finish(_failed(self.task, f"Job {self.name} was deleted (the step was cancelled)"))
        return True

    def _finish(self, result: TaskResult) -> None:
        if self._event.is_set():
            return
        for path in (self.task_path, Path(f"{self.task_path}.result")):
            try:
                path.unlink()
            except OSError:
                pass
        self._result = result
        self._event.set()

    def _watch(self) -> None:
        api = self.runtime.batch_api
        ns = self.runtime.settings.namespace
        result_path = Path(f"{self.task_path}.result")
        errors = 0
        while not self._event.is_set():
            try:
                job = api.read_namespaced_job_status(self.name, ns)
                errors = 0
            except Exception as exc:  # noqa: BLE001 - transient API errors: retry a few times
                errors += 1
                if errors >= 5:
                    self._finish(_failed(self.task, f"cannot read the status of Job {self.name}: {exc}"))
                    break
                time.sleep(self.runtime.settings.poll_interval)
                continue
            status = getattr(job, "status", None)
            if getattr(status, "succeeded", None):
                self._collect(result_path)
                break
            if getattr(status, "failed", None):
                reason = self.runtime.pod_failure_reason(self.name)
                self._finish(_failed(self.task, f"Job {self.name} failed: {reason}", self._pod_logs()))
                break
            self._event.wait(self.runtime.settings.poll_interval)

    def _collect(self, result_path: Path) -> None:
        try:
            result = decode_result(result_path.read_bytes())
        except Exception as exc:  # noqa: BLE001
            self._finish(_failed(
                self.task,
                f"Job {self.name} succeeded but its result {result_path} cannot be read ({exc});"
                " is the store root on a volume shared with the pods?",
            ))
            return
        if self.on_line is not None:
            for line in result.logs.splitlines():
                self.on_line(line)
        self._finish(result)

    def _pod_logs(self) -> str:
        core = self.runtime.core_api
        if core is None:
            return ""
        try:
            pods = core.list_namespaced_pod(self.runtime.settings.namespace, label_selector=f"job-name={self.name}")
            items = getattr(pods, "items", None) or []
            if not items:
                return ""
            text = core.read_namespaced_pod_log(items[0].metadata.name, self.runtime.settings.namespace)
            return text if text.endswith("\n") or not text else text + "\n"
        except Exception:  # noqa: BLE001 - logs are a courtesy
            return ""


class KubernetesRuntime(StepRuntime):
    """Runs each isolated step attempt as a Kubernetes Job."""

    name = "isolated"

    def __init__(self, settings: KubernetesSettings | None = None, batch_api: Any = None, core_api: Any = None) -> None:
        self.settings = settings or KubernetesSettings.from_env()
        self._batch_api = batch_api
        self._core_api = core_api
        self._shipment = MaterializerShipment()

    @property
    def batch_api(self) -> Any:
        if self._batch_api is None:
            self._batch_api, self._core_api = _make_apis()
        return self._batch_api

    @property
    def core_api(self) -> Any:
        return self._core_api

    def launch(self, task: StepTask, on_log_line: LogCallback | None = None) -> Launch:
        try:
            ref = func_ref(task.func)
            sendable = dataclasses.replace(task, func=ref or task.func)
            extras: dict[str, Any] = {}
            mats = self._shipment.blobs()
            if mats is not None:
                extras["materializers"] = mats
            payload = encode_task(sendable, extras)
            folder = Path(task.store_root) / "k8s-tasks"
            folder.mkdir(parents=True, exist_ok=True)
            name = job_name(task)
            task_path = folder / f"{name}.task"
            task_path.write_bytes(payload)
            manifest = job_manifest(task, str(task_path), self.settings)
            self.batch_api.create_namespaced_job(self.settings.namespace, manifest)
        except Exception as exc:  # noqa: BLE001 - one step fails with a clear reason
            return CompletedLaunch(_failed(task, f"cannot start a Kubernetes Job: {type(exc).__name__}: {exc}"))
        return KubernetesLaunch(self, task, name, task_path, on_log_line)

    def pod_failure_reason(self, job: str) -> str:
        """Why the Job's pod ended (e.g. ``OOMKilled``, exit code), as far as the API says."""
        core = self.core_api
        if core is None:
            return "the pod failed"
        try:
            pods = core.list_namespaced_pod(self.settings.namespace, label_selector=f"job-name={job}")
            for pod in getattr(pods, "items", None) or []:
                for cs in getattr(pod.status, "container_statuses", None) or []:
                    term = getattr(getattr(cs, "state", None), "terminated", None)
                    if term is not None:
                        return f"container {term.reason or 'terminated'} (exit code {term.exit_code})"
        except Exception:  # noqa: BLE001
            pass
        return "the pod failed"
