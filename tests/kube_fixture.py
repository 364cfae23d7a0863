"""An in-process Kubernetes API server (kmock) plus a fake Job controller and kubelet.

kmock serves the real API over HTTP, so the runtime under test uses the official
``kubernetes`` client unchanged. kmock has no controllers, so :class:`KubeCluster` plays
them: for each created Job it creates a Pod, moves its status as a kubelet would and runs
the container's command as a local process in an empty folder with only the manifest's
environment (and PATH). It adds what
kmock lacks: label selectors on list and watch, ``text/plain`` pod logs (followed), and
resource versions with on-demand 410 Gone for watches. Behaviours per step name make a pod
run (ConfigMap and emptyDir volumes mounted as local folders, the command and env
following them), exceed its memory limit (killed, ``OOMKilled``, like a cgroup), get evicted, never
pull its image, never schedule, or run past ``activeDeadlineSeconds``.

Requests of the fixture itself carry the user agent ``fake-kubelet`` and are not counted
by :meth:`KubeCluster.client_requests`.
"""

from __future__ import annotations

import asyncio
import json
import os
import queue
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp.web
import kmock
from kubernetes import client as kclient

AGENT = "fake-kubelet"
REPO = Path(__file__).resolve().parent.parent
TESTS = Path(__file__).resolve().parent
DEADLINE = 60.0


def _selector_matches(selector: str | None, obj: dict[str, Any]) -> bool:
    if not selector:
        return True
    labels = (obj.get("metadata") or {}).get("labels") or {}
    for part in selector.split(","):
        key, _, value = part.partition("=")
        if labels.get(key.strip()) != value.strip():
            return False
    return True


class _Emulator(kmock.KubernetesEmulator):  # type: ignore[misc]
    """kmock plus label selectors, resource versions, 410 on demand and pod logs."""

    cluster: Any = None

    async def _handle(self, request: Any) -> aiohttp.web.StreamResponse:
        cluster: KubeCluster = self.cluster
        if request.subresource == "log" and request.resource is not None and request.resource.plural == "pods":
            return await cluster._serve_log(request)
        response = await super()._handle(request)
        plural = request.resource.plural if request.resource is not None else None
        if plural == "jobs" and request.action == kmock.action.CREATE:
            body = request.data
            meta = {**body.get("metadata", {}), "namespace": request.namespace or body.get("metadata", {}).get(
                "namespace") or "default"}
            cluster._events.put(("created", {**body, "metadata": meta}))
        elif plural == "jobs" and request.action == kmock.action.DELETE and request.name:
            cluster._events.put(("deleted", request.name))
        return response

    async def _serve_list(self, request: Any) -> Any:
        body = await super()._serve_list(request)
        selector = request.params.get("labelSelector")
        body["items"] = [i for i in body["items"] if _selector_matches(selector, i)]
        body["metadata"]["resourceVersion"] = str(self.cluster._version)
        return body

    async def _serve_watch(self, request: Any) -> AsyncIterator[Any]:
        cluster: KubeCluster = self.cluster
        selector = request.params.get("labelSelector")
        plural = request.resource.plural
        if cluster._expire.get(plural, 0) > 0:
            cluster._expire[plural] -= 1
            cluster.expired[plural] = cluster.expired.get(plural, 0) + 1
            yield b""
            yield {"type": "ERROR", "object": {"kind": "Status", "apiVersion": "v1", "status": "Failure",
                                               "code": 410, "reason": "Expired",
                                               "message": "too old resource version"}}
            return
        async for event in super()._serve_watch(request):
            if isinstance(event, dict):
                obj = event.get("object") or {}
                if not _selector_matches(selector, obj):
                    continue
                cluster._version += 1
                obj = {**obj, "metadata": {**(obj.get("metadata") or {}),
                                           "resourceVersion": str(cluster._version)}}
                event = {**event, "object": obj}
            yield event


class _Pod:
    def __init__(self, name: str) -> None:
        self.name = name
        self.lines: list[str] = []
        self.done = False
        self.proc: subprocess.Popen[bytes] | None = None
        self.killed_for: str | None = None
        self.env: dict[str, str] = {}
        self.command: list[str] = []
        self.cwd = ""


class KubeCluster:
    """The API server on 127.0.0.1 and the controllers, started and stopped by the test."""

    def __init__(self) -> None:
        self._events: queue.Queue[tuple[str, Any]] = queue.Queue()
        self._expire: dict[str, int] = {}
        self.expired: dict[str, int] = {}
        self._version = 1
        self.behaviour: dict[str, str] = {}
        self.pods: dict[str, _Pod] = {}
        self.job_pods: dict[str, str] = {}
        self.created_jobs: list[dict[str, Any]] = []
        self.secrets: dict[tuple[str, str], str] = {}
        self.volume_root = Path(tempfile.mkdtemp(prefix="kube-volumes-"))
        self.eviction_message = "The node was low on resource: memory. Threshold quantity: 100Mi, available: 40Mi."
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._stop: asyncio.Future[None] | None = None
        self._handler: Any = None
        self._main: asyncio.Task[None] | None = None
        self.url = ""
        self._server_thread = threading.Thread(target=self._serve, name="kmock", daemon=True)
        self._controller = threading.Thread(target=self._control, name="fake-controller", daemon=True)

    # -- lifecycle -------------------------------------------------------------------------
    def start(self) -> KubeCluster:
        self._server_thread.start()
        if not self._ready.wait(DEADLINE):
            raise RuntimeError("kmock did not start")
        self._controller.start()
        return self

    def stop(self) -> None:
        self._events.put(("stop", None))
        for pod in self.pods.values():
            if pod.proc is not None and pod.proc.poll() is None:
                pod.proc.kill()
                pod.proc.wait(DEADLINE)
        if self._stop is not None:
            self._loop.call_soon_threadsafe(self._end_streams_and_stop)
        self._server_thread.join(DEADLINE)
        self._controller.join(DEADLINE)
        shutil.rmtree(self.volume_root, ignore_errors=True)
        for pod in self.pods.values():
            if pod.cwd:
                shutil.rmtree(pod.cwd, ignore_errors=True)

    def _end_streams_and_stop(self) -> None:
        """Close open watch and log streams (a runtime keeps its watch a while after a run), so
        the server stops at once instead of waiting for its clients to hang up."""
        assert self._stop is not None
        for task in asyncio.all_tasks(self._loop):
            if task is not self._main:
                task.cancel()
        self._stop.set_result(None)

    def _serve(self) -> None:
        asyncio.set_event_loop(self._loop)

        async def main() -> None:
            self._stop = self._loop.create_future()
            async with _Emulator() as handler, kmock.Server(handler) as server:
                handler.cluster = self
                handler.resources["batch/v1/jobs"].kind = "Job"
                handler.resources["v1/pods"].kind = "Pod"
                self._handler = handler
                self.url = str(server.url).rstrip("/")
                self._ready.set()
                await self._stop

        self._main = self._loop.create_task(main())
        self._loop.run_until_complete(self._main)

    # -- what tests use ----------------------------------------------------------------------
    def api_client(self) -> kclient.ApiClient:
        cfg = kclient.Configuration()
        cfg.host = self.url
        return kclient.ApiClient(cfg)

    def apis(self) -> tuple[kclient.BatchV1Api, kclient.CoreV1Api]:
        api = self.api_client()
        return kclient.BatchV1Api(api), kclient.CoreV1Api(api)

    def client_requests(self) -> list[Any]:
        """Requests made by the code under test (not by this fixture)."""
        return [r for r in list(self._handler._requests) if r.headers.get("User-Agent") != AGENT]

    def expire_watches(self, plural: str, count: int = 1) -> None:
        """The next ``count`` watches of ``plural`` answer 410 Gone (resourceVersion too old)."""
        self._expire[plural] = self._expire.get(plural, 0) + count

    def jobs(self) -> list[dict[str, Any]]:
        return [o.raw for key, o in list(self._handler.objects.items())
                if key[0].plural == "jobs" and not o.deleted]

    def delete_job(self, namespace: str, name: str) -> None:
        self._call("DELETE", f"/apis/batch/v1/namespaces/{namespace}/jobs/{name}")

    def wait_for(self, what: str, predicate: Any, deadline: float = DEADLINE) -> None:
        end = time.monotonic() + deadline
        while not predicate():
            if time.monotonic() > end:
                raise AssertionError(f"timed out waiting for {what}")
            time.sleep(0.02)

    # -- HTTP as the controllers --------------------------------------------------------------
    def _call(self, method: str, path: str, body: Any = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.url + path, data=data, method=method,
                                     headers={"User-Agent": AGENT, "Content-Type": "application/merge-patch+json"})
        with urllib.request.urlopen(req, timeout=DEADLINE) as resp:
            return json.loads(resp.read() or b"null")

    def _patch_status(self, plural: str, namespace: str, name: str, status: dict[str, Any]) -> None:
        prefix = "/apis/batch/v1" if plural == "jobs" else "/api/v1"
        try:
            self._call("PATCH", f"{prefix}/namespaces/{namespace}/{plural}/{name}/status", {"status": status})
        except Exception:  # the object may be gone (deleted by the test or the runtime)
            pass

    # -- the Job controller and kubelet -------------------------------------------------------
    def _control(self) -> None:
        while True:
            kind, data = self._events.get()
            if kind == "stop":
                return
            if kind == "created":
                self.created_jobs.append(data)
                threading.Thread(target=self._run_job, args=(data,), daemon=True).start()
            elif kind == "deleted":
                pod_name = self.job_pods.get(data)
                pod = self.pods.get(pod_name or "")
                if pod is not None and pod.proc is not None and pod.proc.poll() is None:
                    pod.killed_for = "deleted"
                    pod.proc.kill()

    def _run_job(self, job: dict[str, Any]) -> None:
        meta = job["metadata"]
        ns, job_name = meta.get("namespace") or "default", meta["name"]
        template = job["spec"]["template"]
        step = template["metadata"]["labels"].get("dynpipe/step", "")
        behaviour = self.behaviour.get(step, "run")
        if behaviour == "evict_once":
            self.behaviour[step] = "run"
            behaviour = "evict"
        pod_name = f"{job_name}-{uuid.uuid4().hex[:5]}"
        labels = {**template["metadata"]["labels"], "job-name": job_name, "batch.kubernetes.io/job-name": job_name}
        pod_obj = {
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": pod_name, "namespace": ns, "labels": labels,
                         "annotations": template["metadata"].get("annotations", {}),
                         "ownerReferences": [{"apiVersion": "batch/v1", "kind": "Job", "name": job_name,
                                              "uid": "u", "controller": True}]},
            "spec": template["spec"],
            "status": {"phase": "Pending"},
        }
        pod = _Pod(pod_name)
        self.pods[pod_name] = pod
        self.job_pods[job_name] = pod_name
        self._call("POST", f"/api/v1/namespaces/{ns}/pods", pod_obj)
        container = template["spec"]["containers"][0]
        if behaviour == "image_pull":
            self._patch_status("pods", ns, pod_name, {"phase": "Pending", "containerStatuses": [{
                "name": "step", "ready": False, "restartCount": 0, "image": container["image"], "imageID": "",
                "state": {"waiting": {"reason": "ImagePullBackOff",
                                      "message": f'Back-off pulling image "{container["image"]}"'}}}]})
            return
        if behaviour == "unschedulable":
            self._patch_status("pods", ns, pod_name, {"phase": "Pending", "conditions": [{
                "type": "PodScheduled", "status": "False", "reason": "Unschedulable",
                "message": "0/3 nodes are available: 3 Insufficient nvidia.com/gpu."}]})
            return
        self._patch_status("pods", ns, pod_name, {"phase": "Pending", "conditions": [
            {"type": "PodScheduled", "status": "True"}]})
        proc = self._start_container(container, pod, ns, template["spec"].get("volumes") or [])
        pod.proc = proc
        self._patch_status("pods", ns, pod_name, {"phase": "Running", "containerStatuses": [{
            "name": "step", "ready": True, "restartCount": 0, "image": container["image"], "imageID": "",
            "state": {"running": {"startedAt": "2026-01-01T00:00:00Z"}}}]})
        reader = threading.Thread(target=self._read_output, args=(pod, proc), daemon=True)
        reader.start()
        limit = int(container.get("resources", {}).get("limits", {}).get("memory", 0) or 0)
        deadline = job["spec"].get("activeDeadlineSeconds")
        started = time.monotonic()
        while proc.poll() is None:
            if limit and _rss(proc.pid) > limit:
                pod.killed_for = "oom"
                proc.kill()
            elif deadline is not None and time.monotonic() - started > deadline:
                pod.killed_for = "deadline"
                proc.kill()
            elif behaviour == "evict" and pod.lines:
                pod.killed_for = "evict"
                proc.kill()
            time.sleep(0.01)
        reader.join(DEADLINE)
        pod.done = True
        self._finish(ns, job_name, pod, proc.returncode, container["image"])

    def _finish(self, ns: str, job_name: str, pod: _Pod, rc: int, image: str) -> None:
        if pod.killed_for == "deleted":
            try:
                self._call("DELETE", f"/api/v1/namespaces/{ns}/pods/{pod.name}")
            except OSError:  # the cluster is being stopped
                pass
            return
        code = 137 if rc < 0 else rc
        reason = {"oom": "OOMKilled", "deadline": "Error", "evict": "Error"}.get(pod.killed_for or "",
                                                                                 "Completed" if rc == 0 else "Error")
        status: dict[str, Any] = {
            "phase": "Succeeded" if rc == 0 else "Failed",
            "containerStatuses": [{"name": "step", "ready": False, "restartCount": 0, "image": image, "imageID": "",
                                   "state": {"terminated": {"exitCode": code, "reason": reason}}}],
        }
        if pod.killed_for == "evict":
            status.update(reason="Evicted", message=self.eviction_message, conditions=[
                {"type": "DisruptionTarget", "status": "True", "reason": "TerminationByKubelet",
                 "message": self.eviction_message}])
        self._patch_status("pods", ns, pod.name, status)
        if rc == 0:
            job_status = {"succeeded": 1, "conditions": [{"type": "Complete", "status": "True"}]}
        elif pod.killed_for == "deadline":
            job_status = {"failed": 1, "conditions": [{"type": "Failed", "status": "True", "reason": "DeadlineExceeded",
                                                       "message": "Job was active longer than specified deadline"}]}
        elif pod.killed_for == "evict":
            job_status = {"failed": 1, "conditions": [{"type": "Failed", "status": "True", "reason": "PodFailurePolicy",
                                                       "message": f"Pod {ns}/{pod.name} has condition DisruptionTarget"
                                                                  " matching FailJob rule at index 0"}]}
        else:
            job_status = {"failed": 1, "conditions": [{"type": "Failed", "status": "True",
                                                       "reason": "BackoffLimitExceeded",
                                                       "message": "Job has reached the specified backoff limit"}]}
        self._patch_status("jobs", ns, job_name, job_status)

    def _mounts(self, container: dict[str, Any], ns: str, pod_name: str,
                volumes: list[dict[str, Any]]) -> dict[str, str]:
        """Mount paths -> local folders: a ConfigMap's keys as files (read through the API, as the
        kubelet does), an emptyDir as an empty folder. /tmp and claims stay where they are (a claim
        stands for a folder shared with this machine at the same path)."""
        by_name = {v["name"]: v for v in volumes}
        mounts: dict[str, str] = {}
        for mount in container.get("volumeMounts") or []:
            source = by_name.get(mount["name"], {})
            if mount["mountPath"] == "/tmp" or "persistentVolumeClaim" in source:
                continue
            folder = self.volume_root / pod_name / mount["name"]
            folder.mkdir(parents=True, exist_ok=True)
            if "configMap" in source:
                cm = self._call("GET", f"/api/v1/namespaces/{ns}/configmaps/{source['configMap']['name']}")
                for key, text in (cm.get("data") or {}).items():
                    (folder / key).write_text(text)
            mounts[mount["mountPath"]] = str(folder)
        return mounts

    def _start_container(self, container: dict[str, Any], pod: _Pod, ns: str = "default",
                         volumes: list[dict[str, Any]] | None = None) -> subprocess.Popen[bytes]:
        """The container's command in a fresh empty cwd with ONLY the manifest's env (plus PATH and
        the "image" contents on PYTHONPATH), its ConfigMap and emptyDir volumes mounted as local
        folders: nothing reaches the pod from this machine's disk or environment except through
        what the Job says."""
        pod_name = pod.name
        mounts = self._mounts(container, ns, pod_name, volumes or [])

        def mounted(text: str) -> str:
            for path, folder in mounts.items():
                if text == path or text.startswith(path + "/"):
                    return folder + text[len(path):]
            return text

        command = [sys.executable if c == "python" else mounted(c) for c in container["command"]]
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}
        for source in container.get("envFrom") or []:
            secret = source.get("secretRef", {}).get("name")
            env.update({key: value for (name, key), value in self.secrets.items() if name == secret})
        for entry in container.get("env", []):
            if "value" in entry:
                env[entry["name"]] = mounted(entry["value"])
            elif "fieldRef" in entry["valueFrom"]:
                field = entry["valueFrom"]["fieldRef"]["fieldPath"]
                env[entry["name"]] = pod_name if field == "metadata.name" else f"uid-{pod_name}"
            else:
                ref = entry["valueFrom"].get("secretKeyRef") or entry["valueFrom"].get("configMapKeyRef")
                env[entry["name"]] = self.secrets.get((ref["name"], ref["key"]), "")
        # The "image" holds dynpipe and the pipeline's code (this tests folder).
        env["PYTHONPATH"] = os.pathsep.join([str(REPO), str(TESTS)])
        pod.env, pod.command = env, command
        pod.cwd = tempfile.mkdtemp(prefix="kubelet-pod-")
        return subprocess.Popen(command, env=env, cwd=pod.cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                start_new_session=True)

    def _read_output(self, pod: _Pod, proc: subprocess.Popen[bytes]) -> None:
        assert proc.stdout is not None
        for raw in proc.stdout:
            pod.lines.append(raw.decode("utf-8", "replace").rstrip("\n"))

    async def _serve_log(self, request: Any) -> aiohttp.web.StreamResponse:
        pod = self.pods.get(request.name)
        raw = request._raw_request
        if pod is None:
            return aiohttp.web.json_response({"kind": "Status", "code": 404, "reason": "NotFound",
                                              "message": f'pods "{request.name}" not found'}, status=404)
        response = aiohttp.web.StreamResponse(headers={"Content-Type": "text/plain"})
        await response.prepare(raw)
        sent = 0
        follow = request.params.get("follow") == "true"
        end = time.monotonic() + DEADLINE * 5
        while True:
            lines = pod.lines[sent:]
            if lines:
                await response.write("".join(line + "\n" for line in lines).encode())
                sent += len(lines)
            if not follow or (pod.done and sent >= len(pod.lines)) or time.monotonic() > end:
                break
            await asyncio.sleep(0.02)
        await response.write_eof()
        return response


def _rss(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def cluster() -> Iterator[KubeCluster]:
    """Body of a pytest fixture: a started cluster, stopped afterwards."""
    c = KubeCluster().start()
    try:
        yield c
    finally:
        c.stop()


__all__ = ["KubeCluster", "cluster"]
