"""The Kubernetes runtime against an API server over HTTP (kmock + fake controllers).

The runtime talks to the API with the official ``kubernetes`` client; ``kube_fixture``
plays the Job controller and kubelet and runs each pod's command as a local process.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from dynpipe import Client, ExecutionMode, ResourceSettings, pipeline, step
from dynpipe.runtimes.k8s import launch as k8s_launch
from kube_fixture import KubeCluster, cluster


@pytest.fixture
def kube(monkeypatch: pytest.MonkeyPatch) -> Iterator[KubeCluster]:
    for c in cluster():
        monkeypatch.setattr(k8s_launch, "make_apis", c.apis)
        monkeypatch.setenv("DYNPIPE_ISOLATED_BACKEND", "kubernetes")
        monkeypatch.setenv("DYNPIPE_K8S_IMAGE", "example/dynpipe:test")
        monkeypatch.setenv("DYNPIPE_K8S_NAMESPACE", "pipelines")
        monkeypatch.setenv("DYNPIPE_ECHO_LOGS", "false")
        yield c


@step(runtime="isolated", enable_cache=False)
def double_in_pod(x: int) -> dict[str, int]:
    print("running in the pod")
    print("second line")
    return {"value": x * 2, "pid": os.getpid()}


def test_step_runs_as_a_job_with_logs_streamed(kube: KubeCluster, store_home: Path) -> None:
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
    assert list((store_home / "k8s-tasks").iterdir()) == []
