"""The Kubernetes runtime without a cluster.

No Kubernetes cluster can run here, so these tests check the Job manifest we build and
the calls we make (create / read status / delete) against fake ``BatchV1Api`` and
``CoreV1Api`` objects. The fake "pod" is real, though: creating a Job starts the
container's command — ``python -m dynpipe.runtimes.worker --task <file>`` — as a local
subprocess, so the one-shot worker mode, the task file and the result file are exercised
end to end through a real pipeline run.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from helpers import DEADLINE, wait_until

from dynpipe import Client, ResourceSettings, pipeline, step
from dynpipe.runtimes import get_runtime
from dynpipe.runtimes import kubernetes as k8s
from dynpipe.runtimes.kubernetes import (
    KubernetesRuntime,
    KubernetesSettings,
    job_manifest,
    job_name,
    resource_requirements,
)
from dynpipe.runtimes.task import StepTask


class FakeBatchV1Api:
    """Records calls; a created Job runs its container command as a local process."""

    def __init__(self) -> None:
        self.created: list[tuple[str, dict[str, Any]]] = []
        self.deleted: list[tuple[str, str, dict[str, Any]]] = []
        self.procs: dict[str, subprocess.Popen[str]] = {}
        self.status_reads = 0
        self.lock = threading.Lock()

    def create_namespaced_job(self, namespace: str, body: dict[str, Any]) -> Any:
        container = body["spec"]["template"]["spec"]["containers"][0]
        command = [sys.executable if c == "python" else c for c in container["command"]]
        env = {**os.environ, **{e["name"]: e["value"] for e in container["env"]}}
        # The "image" holds the pipeline's code: this test module is importable in the pod.
        env["PYTHONPATH"] = os.pathsep.join([str(Path(__file__).parent), env.get("PYTHONPATH", "")])
        proc = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        with self.lock:
            self.created.append((namespace, body))
            self.procs[body["metadata"]["name"]] = proc
        return SimpleNamespace(metadata=SimpleNamespace(name=body["metadata"]["name"]))

    def read_namespaced_job_status(self, name: str, namespace: str) -> Any:
        self.status_reads += 1
        rc = self.procs[name].poll()
        return SimpleNamespace(status=SimpleNamespace(
            active=1 if rc is None else None,
            succeeded=1 if rc == 0 else None,
            failed=1 if rc not in (None, 0) else None,
        ))

    def delete_namespaced_job(self, name: str, namespace: str, **kwargs: Any) -> Any:
        self.deleted.append((name, namespace, kwargs))
        proc = self.procs.get(name)
        if proc is not None and proc.poll() is None:
            proc.kill()
        return None


class FakeCoreV1Api:
    def __init__(self, batch: FakeBatchV1Api) -> None:
        self.batch = batch

    def list_namespaced_pod(self, namespace: str, label_selector: str) -> Any:
        job = label_selector.split("=", 1)[1]
        proc = self.batch.procs[job]
        rc = proc.poll()
        term = None if rc is None else SimpleNamespace(
            reason="OOMKilled" if rc == -9 else "Error", exit_code=137 if rc == -9 else rc
        )
        status = SimpleNamespace(container_statuses=[SimpleNamespace(state=SimpleNamespace(terminated=term))])
        return SimpleNamespace(items=[SimpleNamespace(metadata=SimpleNamespace(name=f"{job}-pod"), status=status)])

    def read_namespaced_pod_log(self, name: str, namespace: str) -> str:
        proc = self.batch.procs[name.removesuffix("-pod")]
        out, _ = proc.communicate(timeout=10)
        return out


def _task(tmp_path: Path, **changes: Any) -> StepTask:
    base = dict(
        run_id="0123456789abcdef", run_name="run-1", pipeline_name="p", step_run_id="fedcba9876543210",
        invocation_id="Train_Model_2", step_name="Train_Model", func=len, parameters={}, inputs={},
        input_annotations={}, outputs=[], materializers={}, store_root=str(tmp_path / "store"),
    )
    base.update(changes)
    return StepTask(**base)  # type: ignore[arg-type]


def test_resources_map_to_requests_and_limits() -> None:
    res = resource_requirements(ResourceSettings(cpu_count=1.5, memory="2GiB", gpu_count=1))
    assert res == {
        "requests": {"cpu": "1500m", "memory": str(2 * 2**30)},
        "limits": {"cpu": "1500m", "memory": str(2 * 2**30), "nvidia.com/gpu": "1"},
    }
    assert resource_requirements(ResourceSettings(cpu_count=2)) == {
        "requests": {"cpu": "2"}, "limits": {"cpu": "2"},
    }
    assert resource_requirements(None) == {}


def test_job_manifest(tmp_path: Path) -> None:
    task = _task(tmp_path, resources=ResourceSettings(memory="512MB"), attempt=2)
    settings = KubernetesSettings(namespace="ml", image="registry/app:1", pvc="shared-store", service_account="runner")
    m = job_manifest(task, "/data/store/k8s-tasks/x.task", settings)
    name = m["metadata"]["name"]
    assert name == job_name(task) == "dynpipe-train-model-2-fedcba98-a2"
    assert len(name) <= 63
    spec = m["spec"]
    assert spec["backoffLimit"] == 0  # retries belong to the engine
    pod = spec["template"]["spec"]
    assert pod["restartPolicy"] == "Never"
    assert pod["serviceAccountName"] == "runner"
    (c,) = pod["containers"]
    assert c["image"] == "registry/app:1"
    assert c["command"] == ["python", "-m", "dynpipe.runtimes.worker", "--task", "/data/store/k8s-tasks/x.task"]
    assert {"name": "DYNPIPE_HOME", "value": task.store_root} in c["env"]
    assert c["resources"]["limits"]["memory"] == "512000000"
    assert c["volumeMounts"] == [{"name": "dynpipe-store", "mountPath": task.store_root}]
    assert pod["volumes"][0]["persistentVolumeClaim"]["claimName"] == "shared-store"
    assert m["metadata"]["annotations"]["dynpipe/invocation-id"] == "Train_Model_2"


def test_missing_image_is_a_clear_error(tmp_path: Path) -> None:
    batch = FakeBatchV1Api()
    rt = KubernetesRuntime(KubernetesSettings(image=None), batch_api=batch)
    result = rt.launch(_task(tmp_path)).result(timeout=5)
    assert "DYNPIPE_K8S_IMAGE is not set" in (result.error_message or "")
    assert batch.created == []


def test_backend_switch(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DYNPIPE_ISOLATED_BACKEND", "kubernetes")
    assert isinstance(get_runtime("isolated"), KubernetesRuntime)


@step(runtime="isolated", enable_cache=False)
def double_in_pod(x: int) -> dict[str, int]:
    print("running in the fake pod")
    return {"value": x * 2, "pid": os.getpid()}


@step(runtime="isolated", enable_cache=False)
def sleep_in_pod(seconds: float) -> int:
    time.sleep(seconds)
    return 1


@step(runtime="isolated", enable_cache=False)
def die_in_pod() -> int:
    os.kill(os.getpid(), 9)
    return 0


@pytest.fixture
def fake_cluster(monkeypatch: pytest.MonkeyPatch) -> FakeBatchV1Api:
    batch = FakeBatchV1Api()
    core = FakeCoreV1Api(batch)
    monkeypatch.setattr(k8s, "_make_apis", lambda: (batch, core))
    monkeypatch.setenv("DYNPIPE_ISOLATED_BACKEND", "kubernetes")
    monkeypatch.setenv("DYNPIPE_K8S_IMAGE", "example/dynpipe:test")
    monkeypatch.setenv("DYNPIPE_K8S_NAMESPACE", "pipelines")
    monkeypatch.setenv("DYNPIPE_K8S_POLL", "0.05")
    monkeypatch.setenv("DYNPIPE_ECHO_LOGS", "false")
    return batch


def test_pipeline_step_runs_as_a_job(fake_cluster: FakeBatchV1Api, store_home: Path) -> None:
    @pipeline(dynamic=True)
    def on_k8s() -> None:
        double_in_pod(21)

    run = on_k8s()
    sr = run.steps["double_in_pod"]
    out = sr.output.load()
    assert out["value"] == 42 and out["pid"] != os.getpid()
    assert sr.logs == "running in the fake pod\n"
    ((namespace, body),) = fake_cluster.created
    assert namespace == "pipelines"
    assert body["spec"]["template"]["spec"]["containers"][0]["image"] == "example/dynpipe:test"
    assert list((store_home / "k8s-tasks").iterdir()) == []


def test_cancel_deletes_the_job(fake_cluster: FakeBatchV1Api, tmp_path: Path) -> None:
    rt = get_runtime("isolated")
    assert isinstance(rt, KubernetesRuntime)
    task = _task(tmp_path, func=sleep_in_pod.entrypoint, parameters={"seconds": 600})
    launch = rt.launch(task)
    wait_until(lambda: fake_cluster.created, what="the job to be created")
    assert not launch.done()
    assert launch.cancel()
    result = launch.result(timeout=DEADLINE)
    assert "was deleted" in (result.error_message or "")
    ((name, namespace, kwargs),) = fake_cluster.deleted
    assert name == job_name(task) and namespace == "pipelines"
    assert kwargs["propagation_policy"] == "Background"


def test_failed_pod_reports_its_reason(fake_cluster: FakeBatchV1Api) -> None:
    @pipeline(dynamic=True)
    def pod_dies() -> None:
        die_in_pod()

    with pytest.raises(Exception, match="OOMKilled"):
        pod_dies()
    sr = Client().get_pipeline("pod_dies").last_run.steps["die_in_pod"]
    assert sr.status == "failed" and sr.error_type == "KubernetesJobError"
