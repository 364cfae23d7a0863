"""Start a step attempt as a Job and turn what the watch sees into a TaskResult.

A launch never polls: it is an observer of its run's watch. It follows its pod's log
stream live (one stream per running pod), fails a pod that stays pending past
``pending_timeout`` naming Kubernetes' reason, and explains every other way a Job ends.
"""

from __future__ import annotations

import dataclasses
import sys
import threading
import time
import uuid
from typing import Any

from ... import settings as env
from ..base import CompletedLaunch, Launch, LogCallback, StepRuntime
from ..shipping import MaterializerShipment, func_ref
from ..task import StepTask, TaskResult
from ..worker import encode_task
from .config import SETTINGS_KEY, KubernetesSettings, resolve_settings
from .diagnose import api_error, condition, disruption, is_running, is_running_only, job_failure, pending_reason
from .manifests import WORKER_COMMAND, job_manifest, job_name, label_value
from .result import BadReport, decode_report
from .transport import (
    LocalStoreNotShared,
    ObjectStoreTransport,
    PodTask,
    SharedVolumeTransport,
    TaskTransport,
    choose_transport,
)
from .watch import RunWatcher

LOG_DRAIN_SECONDS = 5.0


def failed(task: StepTask, error_type: str, message: str, logs: str = "") -> TaskResult:
    msg = f"step {task.invocation_id!r}: {message}"
    return TaskResult.from_exception(RuntimeError(msg), logs=logs + f"dynpipe: {message}\n",
                                     error_type=error_type, traceback=msg + "\n")


def python_version() -> str:
    """This kernel's Python major.minor: a step sent by value only loads under it (the pod checks)."""
    return f"{sys.version_info[0]}.{sys.version_info[1]}"


def make_apis() -> tuple[Any, Any]:
    """Real clients: in-cluster config when running in a pod, else ~/.kube/config."""
    from kubernetes import client, config

    try:
        config.load_incluster_config()
    except config.ConfigException:
        config.load_kube_config()
    return client.BatchV1Api(), client.CoreV1Api()


class KubernetesLaunch(Launch):
    """One Job, driven by the run's watch events."""

    def __init__(self, runtime: KubernetesRuntime, task: StepTask, name: str, transport: TaskTransport,
                 pod_task: PodTask, settings: KubernetesSettings, watcher: RunWatcher,
                 on_line: LogCallback | None) -> None:
        self.runtime = runtime
        self.task = task
        self.name = name
        self.transport = transport
        self.pod_task = pod_task
        self.settings = settings
        self.watcher = watcher
        self.on_line = on_line
        self.created = time.monotonic()
        self.pod: dict[str, Any] | None = None
        self.seen_job = False
        self.started_running = False
        self._lock = threading.Lock()
        self._event = threading.Event()
        self._result: TaskResult | None = None
        self._ending = False
        self._log_thread: threading.Thread | None = None
        self._log_lines: list[str] = []
        self._prefix = f"[{task.invocation_id}] "

    # -- Launch -------------------------------------------------------------------------
    def result(self, timeout: float | None = None) -> TaskResult:
        if not self._event.wait(timeout):
            raise TimeoutError(f"Job {self.name} of step {self.task.invocation_id!r} is still running")
        assert self._result is not None
        return self._result

    def done(self) -> bool:
        return self._event.is_set()

    def cancel(self) -> bool:
        if not self._claim():
            return False
        self._delete_job()
        self._finish(failed(self.task, "Cancelled", f"Job {self.name} was deleted (the step was cancelled)",
                            self._logs()))
        return True

    # -- observer -----------------------------------------------------------------------
    def on_job(self, kind: str, job: dict[str, Any] | None) -> None:
        if kind == "MISSING":
            if self.seen_job:
                self._external_delete()
            return
        assert job is not None
        self.seen_job = True
        if kind == "DELETED":
            self._external_delete()
            return
        if condition(job, "Complete") is not None:
            if self._claim():
                self._in_background(self._collect)
        elif condition(job, "Failed") is not None and self._claim():
            self._in_background(self._job_failed, job)

    def on_pod(self, kind: str, pod: dict[str, Any]) -> None:
        self.pod = pod
        if kind == "DELETED":
            return
        if is_running(pod):
            self.started_running = True
            self._follow_logs(pod)
        why = disruption(pod)
        if why is not None and self._claim():
            self._in_background(self._end_with, "PodDisrupted", f"Job {self.name}: {why}")

    def on_tick(self, now: float) -> None:
        if self.started_running or self._event.is_set():
            return
        if now - self.created < self.settings.pending_timeout:
            return
        if self._claim():
            reason = pending_reason(self.pod)
            self._in_background(self._delete_and_end, "PodPending", f"the pod of Job {self.name} was still pending"
                                f" after pending_timeout={self.settings.pending_timeout:g}s: {reason}")

    def on_watch_failed(self, message: str) -> None:
        if self._claim():
            self._in_background(self._delete_and_end, "KubernetesWatchError", message)

    # -- endings ------------------------------------------------------------------------
    def _claim(self) -> bool:
        """The first ending wins; later events for the same Job are ignored."""
        with self._lock:
            if self._ending:
                return False
            self._ending = True
            return True

    def _in_background(self, func: Any, *args: Any) -> None:
        """Endings wait for the log stream and may call the API: never on the watch thread."""
        threading.Thread(target=func, args=args, name=f"dynpipe-k8s-end-{self.name}", daemon=True).start()

    def _external_delete(self) -> None:
        if self._claim():
            self._in_background(self._end_with, "JobDeleted",
                                f"Job {self.name} was deleted outside dynpipe while the step was running")

    def _job_failed(self, job: dict[str, Any]) -> None:
        self._drain_logs()  # the pod's final status may trail the Job's
        pod = self.pod if self.pod is not None and not is_running_only(self.pod) else self._read_pod()
        error_type, message = job_failure(job, pod or self.pod, self.settings.active_deadline_seconds)
        self._end_with(error_type, f"Job {self.name}: {message}")

    def _delete_and_end(self, error_type: str, message: str) -> None:
        self._delete_job()
        self._end_with(error_type, message)

    def _end_with(self, error_type: str, message: str) -> None:
        self._drain_logs()
        self._finish(failed(self.task, error_type, message, self._logs()))

    def _collect(self) -> None:
        self._drain_logs()
        transport = self.transport
        where = transport.report_location(self.pod_task)
        try:
            data = transport.get_report(self.pod_task)
        except Exception as exc:  # noqa: BLE001 - the store is unreachable from here
            self._finish(failed(self.task, "MissingResult", f"Job {self.name} succeeded but its report at {where}"
                                f" cannot be read: {type(exc).__name__}: {exc}", self._logs()))
            return
        if data is None:
            shared = "" if transport.store_url else "; is the store root on a volume shared with the pods?"
            result = failed(self.task, "MissingResult", f"Job {self.name} succeeded but left no report at"
                            f" {where}{shared}", self._logs())
        else:
            try:
                result = decode_report(data, self.task, transport.artifact_size, transport.store_url)
            except BadReport as exc:
                result = failed(self.task, "BadPodReport", f"Job {self.name}: {exc}", self._logs())
        self._finish(result)

    def _finish(self, result: TaskResult) -> None:
        if self._event.is_set():
            return
        self.watcher.unregister(self.name)
        self.transport.discard(self.pod_task)
        self._result = result
        self._event.set()

    def _delete_job(self) -> None:
        try:
            self.runtime.batch_api.delete_namespaced_job(
                self.name, self.settings.namespace, propagation_policy="Background", grace_period_seconds=0)
        except Exception:  # noqa: BLE001 - already gone; the TTL removes it otherwise
            pass

    def _read_pod(self) -> dict[str, Any] | None:
        """The pod as the API has it now (its final status may trail the Job's)."""
        try:
            import json

            resp = self.runtime.core_api.list_namespaced_pod(
                self.settings.namespace, label_selector=f"dynpipe/job={self.name}", _preload_content=False)
            items = json.loads(resp.data).get("items") or []
            return items[0] if items else None
        except Exception:  # noqa: BLE001 - the explanation is then less precise
            return None

    # -- logs ---------------------------------------------------------------------------
    def _follow_logs(self, pod: dict[str, Any]) -> None:
        if self._log_thread is not None or self.on_line is None and not self.task.capture_logs:
            return
        pod_name = (pod.get("metadata") or {}).get("name")
        if not pod_name:
            return
        self._log_thread = threading.Thread(target=self._stream_logs, args=(pod_name,), daemon=True,
                                            name=f"dynpipe-k8s-logs-{self.name}")
        self._log_thread.start()

    def _stream_logs(self, pod_name: str) -> None:
        from kubernetes.watch.watch import iter_resp_lines

        try:
            resp = self.runtime.core_api.read_namespaced_pod_log(
                pod_name, self.settings.namespace, follow=True, _preload_content=False)
            try:
                for line in iter_resp_lines(resp):
                    self._log_line(line)
            finally:
                resp.release_conn()
        except Exception as exc:  # noqa: BLE001 - logs are a courtesy; the report has them too
            self._log_lines.append(f"dynpipe: the pod's log stream broke: {api_error(exc)}")

    def _log_line(self, line: str) -> None:
        if line.startswith("dynpipe worker: "):
            return
        line = line.removeprefix(self._prefix)
        self._log_lines.append(line)
        if self.on_line is not None:
            try:
                self.on_line(line)
            except Exception:  # noqa: BLE001
                pass

    def _drain_logs(self) -> None:
        thread = self._log_thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(LOG_DRAIN_SECONDS)

    def _logs(self) -> str:
        return "".join(line + "\n" for line in self._log_lines)


class KubernetesRuntime(StepRuntime):
    """Runs each isolated step attempt as a Kubernetes Job; one instance per run."""

    name = "isolated"

    def __init__(self, settings: KubernetesSettings | None = None, batch_api: Any = None, core_api: Any = None) -> None:
        self.base_settings = settings
        self._batch_api = batch_api
        self._core_api = core_api
        self._shipment = MaterializerShipment()
        self._lock = threading.Lock()
        self._watchers: dict[tuple[str, str], RunWatcher] = {}
        self._transports: dict[tuple[str, str], TaskTransport] = {}

    @property
    def batch_api(self) -> Any:
        if self._batch_api is None:
            self._batch_api, self._core_api = make_apis()
        return self._batch_api

    @property
    def core_api(self) -> Any:
        if self._core_api is None:
            self._batch_api, self._core_api = make_apis()
        return self._core_api

    def settings_for(self, task: StepTask) -> KubernetesSettings:
        layers: list[Any] = [self.base_settings]
        layers.extend(getattr(task, "settings", {}).get(SETTINGS_KEY) or [])
        return resolve_settings(layers, f"step {task.invocation_id!r}")

    def transport_for(self, task: StepTask, settings: KubernetesSettings) -> TaskTransport:
        """The artifact store's objects when it is remote; the store root's files only when
        declared shared (``pvc``); else :class:`LocalStoreNotShared` before any Job exists."""
        kind, where = choose_transport(task, settings)
        with self._lock:
            transport = self._transports.get((kind, where))
        if transport is None:
            transport = ObjectStoreTransport(where) if kind == "object" else SharedVolumeTransport(where)
            with self._lock:
                transport = self._transports.setdefault((kind, where), transport)
        return transport

    def watcher_for(self, task: StepTask, settings: KubernetesSettings) -> RunWatcher:
        key = (settings.namespace, task.run_id)
        with self._lock:
            watcher = self._watchers.get(key)
            if watcher is None:
                watcher = RunWatcher(self.batch_api, self.core_api, settings.namespace,
                                     label_value(task.run_id), settings.resync_seconds)
                self._watchers[key] = watcher
            return watcher

    def launch(self, task: StepTask, on_log_line: LogCallback | None = None) -> Launch:
        try:
            settings = self.settings_for(task)
            name = job_name(task)
            manifest = job_manifest(task, "<task>", settings, env.k8s_owner_pod())  # bad settings fail here
            transport = self.transport_for(task, settings)
            ref = func_ref(task.func)
            # Limits are the container's (cgroup), not an address-space limit inside it.
            sendable = dataclasses.replace(transport.prepare(task), func=ref or task.func, resources=None,
                                           echo_logs=True)  # the pod log is the live stream
            extras: dict[str, Any] = {"python": python_version(), "by_value": ref is None,
                                      "invocation_id": task.invocation_id}
            mats = self._shipment.blobs()
            if mats is not None:
                extras["materializers"] = mats
            pod_task = transport.put_task(f"{name}-{uuid.uuid4().hex[:8]}", encode_task(sendable, extras))
            container = manifest["spec"]["template"]["spec"]["containers"][0]
            container["command"] = [*WORKER_COMMAND, *pod_task.args]
            container["env"].extend(pod_task.env)  # last: a step's env cannot redirect the task or store
        except LocalStoreNotShared as exc:
            return CompletedLaunch(failed(task, "LocalStoreNotShared", str(exc)))
        except Exception as exc:  # noqa: BLE001 - one step fails with a clear reason
            return CompletedLaunch(failed(task, "KubernetesJobError", f"cannot start a Kubernetes Job: {exc}"))
        watcher = self.watcher_for(task, settings)
        launch = KubernetesLaunch(self, task, name, transport, pod_task, settings, watcher, on_log_line)
        watcher.register(name, launch, settings.pending_timeout / 4)
        try:
            self.batch_api.create_namespaced_job(settings.namespace, manifest)
        except Exception as exc:  # noqa: BLE001
            launch._claim()
            launch._finish(failed(task, "KubernetesJobError", f"cannot create Job {name}: {api_error(exc)}"))
        return launch
