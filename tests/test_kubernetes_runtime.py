"""The Kubernetes runtime against an API server over HTTP (kmock + fake controllers).

The runtime talks to the API with the official ``kubernetes`` client; ``kube_fixture``
plays the Job controller and kubelet and runs each pod's command as a local process, so
every scenario below goes through real HTTP requests, watch streams and pod processes.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kube_fixture import KubeCluster, cluster

from dynpipe import ExecutionMode, KubernetesSettings, ResourceSettings, StepRetryConfig, pipeline, step
from dynpipe.runtimes.k8s import KubernetesRuntime, job_name
from dynpipe.runtimes.k8s import launch as k8s_launch
from dynpipe.runtimes.task import StepTask

DEADLINE = 60.0


@pytest.fixture
def kube(monkeypatch: pytest.MonkeyPatch) -> Iterator[KubeCluster]:
    for c in cluster():
        monkeypatch.setattr(k8s_launch, "make_apis", c.apis)
        monkeypatch.setenv("DYNPIPE_ISOLATED_BACKEND", "kubernetes")
        monkeypatch.setenv("DYNPIPE_K8S_IMAGE", "example/dynpipe:test")
        monkeypatch.setenv("DYNPIPE_K8S_NAMESPACE", "pipelines")
        monkeypatch.setenv("DYNPIPE_ECHO_LOGS", "false")
        # The local store is declared shared (as a ReadWriteMany claim would be); the object-store
        # transport is tested in test_kubernetes_artifact_store.py.
        monkeypatch.setenv("DYNPIPE_K8S_PVC", "dynpipe-store")
        yield c


def _task(tmp_path: Path, func: Any, **changes: Any) -> StepTask:
    base: dict[str, Any] = dict(
        run_id="0123456789abcdef0123456789abcdef", run_name="run-1", pipeline_name="p",
        step_run_id="fedcba9876543210", invocation_id=func.__name__, step_name=func.__name__, func=func,
        parameters={}, inputs={}, input_annotations={}, outputs=[], materializers={},
        store_root=str(tmp_path / "store"), echo_logs=False,
    )
    base.update(changes)
    return StepTask(**base)


def _runtime(kube: KubeCluster) -> KubernetesRuntime:
    batch, core = kube.apis()
    return KubernetesRuntime(batch_api=batch, core_api=core)


# -- steps that run in the pods (importable from this module in the "image") ----------------


@step(runtime="isolated", enable_cache=False)
def double_in_pod(x: int) -> dict[str, int]:
    print("running in the pod")
    print("second line")
    return {"value": x * 2, "pid": os.getpid()}


def wait_for_file(path: str) -> int:
    print("waiting for the go file")
    end = time.monotonic() + DEADLINE
    while not os.path.exists(path):
        if time.monotonic() > end:
            raise TimeoutError(path)
        time.sleep(0.02)
    print("saw the go file")
    return 1


def nap(seconds: float) -> int:
    print("napping")
    time.sleep(seconds)
    return 1


@step(runtime="isolated", enable_cache=False)
def hog_memory(megabytes: int) -> int:
    block = bytearray(megabytes << 20)
    for i in range(0, len(block), 4096):
        block[i] = 1
    time.sleep(DEADLINE)
    return len(block)


@step(runtime="isolated", enable_cache=False)
def evicted_step() -> int:
    print("started")
    time.sleep(5)
    return 7


@step(runtime="isolated", enable_cache=False, settings={"kubernetes": {"pending_timeout": 1}})
def never_starts() -> int:
    return 1


@step(runtime="isolated", enable_cache=False, settings={"kubernetes": {"active_deadline_seconds": 1}})
def runs_too_long() -> int:
    print("started")
    time.sleep(DEADLINE)
    return 1


@step(runtime="isolated", enable_cache=False)
def fails_fast() -> int:
    raise ValueError("boom")


@step(runtime="isolated", enable_cache=False)
def sleeps_long() -> int:
    print("started")
    time.sleep(DEADLINE)
    return 1


@step(enable_cache=False)
def small_inline() -> dict[str, int]:
    return {"a": 1}


@step(runtime="isolated", enable_cache=False)
def reads_small(d: dict[str, int]) -> int:
    return d["a"] + 1


# -- scenarios --------------------------------------------------------------------------------


def test_step_runs_as_a_job(kube: KubeCluster, store_home: Path) -> None:
    @pipeline(dynamic=True)
    def on_k8s() -> None:
        double_in_pod(21)

    run = on_k8s()
    sr = run.steps["double_in_pod"]
    out = sr.output.load()
    assert out["value"] == 42 and out["pid"] != os.getpid()
    assert sr.logs == "running in the pod\nsecond line\n"
    (job,) = kube.created_jobs
    assert job["metadata"]["namespace"] == "pipelines"
    assert job["spec"]["template"]["spec"]["containers"][0]["image"] == "example/dynpipe:test"
    assert list((store_home / "k8s-tasks").iterdir()) == []
    # The pod wrote an artifact file and reported JSON; it never wrote the metadata database.
    assert sr.output.uri.startswith("artifacts/")


def test_logs_stream_while_the_pod_runs(kube: KubeCluster, tmp_path: Path) -> None:
    go = tmp_path / "go"
    lines: list[str] = []
    launch = _runtime(kube).launch(_task(tmp_path, wait_for_file, parameters={"path": str(go)}), lines.append)
    kube.wait_for("the first live log line", lambda: "waiting for the go file" in lines)
    assert not launch.done()  # the line arrived while the pod was still running
    go.touch()
    result = launch.result(timeout=DEADLINE)
    assert result.error_type is None, result.error_message
    assert lines == ["waiting for the go file", "saw the go file"]
    assert result.logs == "waiting for the go file\nsaw the go file\n"


def test_inputs_kept_in_the_database_reach_the_pod_as_files(kube: KubeCluster, store_home: Path) -> None:
    @pipeline(dynamic=True)
    def small() -> None:
        reads_small(small_inline())

    run = small()
    assert run.steps["small_inline"].output.uri.startswith("db:")  # kept inline by the orchestrator
    assert run.steps["reads_small"].output.load() == 2


def test_oom_killed_pod_names_oomkilled(kube: KubeCluster, store_home: Path) -> None:
    @pipeline(dynamic=True)
    def oom() -> None:
        hog_memory.with_options(resources=ResourceSettings(memory="200MB"))(600)

    with pytest.raises(Exception, match="OOMKilled"):
        oom()
    (job,) = kube.created_jobs
    assert job["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]["memory"] == "200000000"
    pod = kube.pods[kube.job_pods[job["metadata"]["name"]]]
    assert pod.killed_for == "oom"  # the fake kubelet enforced the limit, not an exit-code mapping


def test_eviction_is_named_and_retried_by_our_retry_logic(kube: KubeCluster, store_home: Path) -> None:
    kube.behaviour["evicted_step"] = "evict_once"

    @pipeline(dynamic=True, retry=StepRetryConfig(max_retries=1, delay=0))
    def evicted() -> None:
        evicted_step()

    run = evicted()
    sr = run.steps["evicted_step"]
    assert sr.output.load() == 7
    assert sr.attempts == 2
    assert "the pod was evicted: The node was low on resource: memory" in sr.logs
    first = kube.created_jobs[0]
    assert first["spec"]["podFailurePolicy"]["rules"][0]["action"] == "FailJob"


def test_eviction_without_retry_fails_naming_it(kube: KubeCluster, tmp_path: Path) -> None:
    kube.behaviour["nap"] = "evict"
    result = _runtime(kube).launch(_task(tmp_path, nap, parameters={"seconds": 30})).result(timeout=DEADLINE)
    assert result.error_type == "PodDisrupted"
    assert "the pod was evicted: The node was low on resource: memory." in (result.error_message or "")
    assert "137" not in (result.error_message or "")


@pytest.mark.parametrize(
    ("behaviour", "expected"),
    [
        ("image_pull", 'ImagePullBackOff: Back-off pulling image "example/dynpipe:test"'),
        ("unschedulable", "Unschedulable: 0/3 nodes are available: 3 Insufficient nvidia.com/gpu."),
    ],
)
def test_pending_pod_fails_at_the_pending_timeout(kube: KubeCluster, store_home: Path, behaviour: str,
                                                  expected: str) -> None:
    kube.behaviour["never_starts"] = behaviour

    @pipeline(dynamic=True)
    def stuck() -> None:
        never_starts()

    with pytest.raises(Exception, match="pending"):
        stuck()
    from dynpipe import Client

    sr = Client().get_pipeline("stuck").last_run.steps["never_starts"]
    assert sr.status == "failed" and sr.error_type == "PodPending"
    assert expected in (sr.error_message or "")
    assert "pending_timeout=1s" in (sr.error_message or "")
    kube.wait_for("the stuck Job to be deleted", lambda: kube.jobs() == [])


def test_deadline_exceeded(kube: KubeCluster, store_home: Path) -> None:
    @pipeline(dynamic=True)
    def too_long() -> None:
        runs_too_long()

    with pytest.raises(Exception, match="deadline exceeded"):
        too_long()
    (job,) = kube.created_jobs
    assert job["spec"]["activeDeadlineSeconds"] == 1


def test_job_deleted_externally_says_so_in_one_line(kube: KubeCluster, tmp_path: Path) -> None:
    task = _task(tmp_path, nap, parameters={"seconds": 30})
    launch = _runtime(kube).launch(task)
    name = job_name(task)
    kube.wait_for("the pod to run", lambda: name in kube.job_pods and kube.pods[kube.job_pods[name]].lines)
    kube.delete_job("pipelines", name)
    result = launch.result(timeout=DEADLINE)
    assert result.error_type == "JobDeleted"
    message = result.error_message or ""
    assert message == f"step 'nap': Job {name} was deleted outside dynpipe while the step was running"


def test_cancel_deletes_the_job(kube: KubeCluster, tmp_path: Path) -> None:
    task = _task(tmp_path, nap, parameters={"seconds": 30})
    launch = _runtime(kube).launch(task)
    name = job_name(task)
    kube.wait_for("the pod to run", lambda: name in kube.job_pods and kube.pods[kube.job_pods[name]].lines)
    assert launch.cancel()
    result = launch.result(timeout=5)
    assert "was deleted (the step was cancelled)" in (result.error_message or "")
    deletes = [r for r in kube.client_requests() if r.method == "DELETE"]
    assert [str(r.url.path) for r in deletes] == [f"/apis/batch/v1/namespaces/pipelines/jobs/{name}"]
    kube.wait_for("the pod's process to be killed", lambda: kube.pods[kube.job_pods[name]].done)


def test_fail_fast_deletes_running_jobs(kube: KubeCluster, store_home: Path) -> None:
    @pipeline(dynamic=True, execution_mode=ExecutionMode.FAIL_FAST)
    def fast() -> None:
        sleeps_long.submit()
        kube.wait_for("the long step to run", lambda: any(p.lines for p in list(kube.pods.values())))
        fails_fast.submit()

    with pytest.raises(Exception, match="boom"):
        fast()
    long_job = next(j["metadata"]["name"] for j in kube.created_jobs if "sleeps-long" in j["metadata"]["name"])
    deletes = [str(r.url.path) for r in kube.client_requests() if r.method == "DELETE"]
    assert f"/apis/batch/v1/namespaces/pipelines/jobs/{long_job}" in deletes
    kube.wait_for("the long pod's process to be killed", lambda: kube.pods[kube.job_pods[long_job]].done)


def test_watch_expiry_410_resumes_from_a_fresh_list(kube: KubeCluster, tmp_path: Path) -> None:
    go = tmp_path / "go"
    runtime = _runtime(kube)
    launch = runtime.launch(_task(tmp_path, wait_for_file, parameters={"path": str(go)}))
    kube.wait_for("the pod to run", lambda: any(p.lines for p in list(kube.pods.values())))
    lists_before = _lists(kube)
    kube.expire_watches("jobs", 2)
    kube.expire_watches("pods", 2)
    # Break the open streams so the watches start again (and meet the 410s).
    (watcher,) = runtime._watchers.values()
    for resp in list(watcher._responses.values()):
        resp.shutdown()
    kube.wait_for("the 410s to be served", lambda: kube.expired.get("jobs", 0) == 2 and kube.expired.get("pods") == 2)
    go.touch()
    result = launch.result(timeout=DEADLINE)
    assert result.error_type is None, result.error_message
    assert _lists(kube) > lists_before  # resumed by listing again, not by giving up


def _lists(kube: KubeCluster) -> int:
    return sum(1 for r in kube.client_requests() if r.method == "GET" and r.params.get("watch") != "true"
               and str(r.url.path).endswith(("/jobs", "/pods")))


def test_one_watch_per_run_not_a_poll_per_launch(kube: KubeCluster, tmp_path: Path) -> None:
    runtime = _runtime(kube)
    launches = [
        runtime.launch(_task(tmp_path, nap, parameters={"seconds": 0.5}, step_run_id=f"{i:016x}",
                             invocation_id=f"nap_{i}"))
        for i in range(4)
    ]
    for launch in launches:
        assert launch.result(timeout=DEADLINE).error_type is None
    requests = kube.client_requests()
    assert not [r for r in requests if "/status" in str(r.url.path)]  # no status polling
    creates = [r for r in requests if r.method == "POST"]
    logs = [r for r in requests if str(r.url.path).endswith("/log")]
    assert len(creates) == 4 and len(logs) == 4
    (watcher,) = runtime._watchers.values()
    assert len(runtime._watchers) == 1 and watcher.selector.startswith("dynpipe/run-id=")


@step(runtime="isolated", enable_cache=False,
      settings={"kubernetes": KubernetesSettings(labels={"team": "vision"}, env={"FROM_STEP": "yes"})})
def configured() -> str:
    return os.environ.get("FROM_STEP", "")


def test_pipeline_and_step_settings_reach_the_job_and_pod(kube: KubeCluster, store_home: Path) -> None:
    @pipeline(dynamic=True, settings={"kubernetes": {"ttl_seconds_after_finished": 60, "labels": {"x": "p"}}})
    def configured_pipeline() -> None:
        configured()

    run = configured_pipeline()
    assert run.steps["configured"].output.load() == "yes"  # the step's env reached the pod
    (job,) = kube.created_jobs
    assert job["spec"]["ttlSecondsAfterFinished"] == 60  # pipeline layer
    assert job["metadata"]["labels"]["team"] == "vision"  # step layer wins for the same field
    assert "x" not in job["metadata"]["labels"]


def test_yaml_step_settings_reach_the_job(kube: KubeCluster, store_home: Path, tmp_path: Path) -> None:
    (tmp_path / "config.yaml").write_text(
        "steps:\n  configured:\n    settings:\n      kubernetes:\n        node_selector: {pool: cpu}\n"
        "        active_deadline_seconds: 900\n")

    @pipeline(dynamic=True, depends_on=[configured])
    def from_yaml() -> None:
        configured()

    from_yaml.with_options(config_path=str(tmp_path / "config.yaml"))()
    (job,) = kube.created_jobs
    assert job["spec"]["template"]["spec"]["nodeSelector"] == {"pool": "cpu"}
    assert job["spec"]["activeDeadlineSeconds"] == 900


def test_bad_settings_fail_the_step_naming_it(kube: KubeCluster, store_home: Path) -> None:
    @pipeline(dynamic=True)
    def bad() -> None:
        configured.with_options(settings={"kubernetes": {"pending_timeut": 5}})()

    with pytest.raises(Exception, match=r"step 'configured': invalid Kubernetes settings: pending_timeut: unknown key"):
        bad()
    assert kube.created_jobs == []


def test_jobs_are_owned_by_the_orchestrator_pod(kube: KubeCluster, tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("POD_NAME", "notebook-0")
    monkeypatch.setenv("POD_UID", "1d4c1e4e-0000-4000-8000-000000000001")
    result = _runtime(kube).launch(_task(tmp_path, nap, parameters={"seconds": 0})).result(timeout=DEADLINE)
    assert result.error_type is None, result.error_message
    (job,) = kube.created_jobs
    assert job["metadata"]["ownerReferences"] == [{
        "apiVersion": "v1", "kind": "Pod", "name": "notebook-0", "uid": "1d4c1e4e-0000-4000-8000-000000000001",
        "controller": False, "blockOwnerDeletion": False}]
