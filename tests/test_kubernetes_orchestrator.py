"""An orchestrator process using the Kubernetes runtime: Ctrl-C, death, and ``gc``.

The orchestrator is a real ``python`` process reaching the in-process API server through
a kubeconfig file, exactly as a user's notebook or script would.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from kube_fixture import REPO, KubeCluster, cluster

from dynpipe import Client

SCRIPT = '''
import time
from dynpipe import pipeline, step

@step(runtime="isolated", enable_cache=False)
def sleeper() -> int:
    print("started")
    time.sleep(60)
    return 1

@pipeline(dynamic=True)
def napping() -> None:
    sleeper()

if __name__ == "__main__":
    napping()
'''


@pytest.fixture
def kube() -> Iterator[KubeCluster]:
    yield from cluster()


def _env(kube: KubeCluster, tmp_path: Path) -> dict[str, str]:
    config = tmp_path / "kubeconfig"
    config.write_text(
        "apiVersion: v1\nkind: Config\n"
        f"clusters: [{{name: k, cluster: {{server: '{kube.url}'}}}}]\n"
        "users: [{name: u, user: {}}]\n"
        "contexts: [{name: c, context: {cluster: k, user: u}}]\ncurrent-context: c\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DYNPIPE_", "KUBERNETES_"))}
    env.update(KUBECONFIG=str(config), DYNPIPE_ISOLATED_BACKEND="kubernetes", DYNPIPE_K8S_IMAGE="example/app:1",
               DYNPIPE_K8S_NAMESPACE="pipelines", DYNPIPE_HOME=str(tmp_path / "store"), DYNPIPE_ECHO_LOGS="false",
               DYNPIPE_K8S_PVC="dynpipe-store",  # the local store, declared shared with the pods
               PYTHONPATH=str(REPO), PYTHONUNBUFFERED="1")
    return env


def _start(kube: KubeCluster, tmp_path: Path) -> tuple[subprocess.Popen[str], str]:
    script = tmp_path / "napping.py"
    script.write_text(SCRIPT)
    proc = subprocess.Popen([sys.executable, str(script)], env=_env(kube, tmp_path), cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        kube.wait_for("the step's pod to run", lambda: any("started" in line for p in list(kube.pods.values())
                                                          for line in p.lines))
    except AssertionError:
        proc.kill()
        raise AssertionError(proc.communicate(timeout=30)[0]) from None
    (job,) = kube.created_jobs
    return proc, job["metadata"]["name"]


def _gc(kube: KubeCluster, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "dynpipe.cli", "kubernetes", "gc", "--namespace", "pipelines"],
                          env=_env(kube, tmp_path), cwd=tmp_path, capture_output=True, text=True, timeout=120)


def test_ctrl_c_deletes_the_running_job(kube: KubeCluster, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    proc, job = _start(kube, tmp_path)
    proc.send_signal(signal.SIGINT)
    try:
        out, _ = proc.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise AssertionError("the interrupted orchestrator did not exit") from None
    assert proc.returncode != 0, out
    deletes = [str(r.url.path) for r in kube.client_requests() if r.method == "DELETE"]
    assert deletes == [f"/apis/batch/v1/namespaces/pipelines/jobs/{job}"]
    kube.wait_for("the pod's process to be killed", lambda: kube.pods[kube.job_pods[job]].done)
    monkeypatch.setenv("DYNPIPE_HOME", str(tmp_path / "store"))
    run = Client().get_pipeline("napping").last_run
    assert run.status.value == "stopped"


def test_gc_deletes_jobs_of_a_dead_orchestrator_only(kube: KubeCluster, tmp_path: Path) -> None:
    proc, job = _start(kube, tmp_path)
    alive = _gc(kube, tmp_path)
    assert alive.returncode == 0, alive.stderr
    assert "no orphaned dynpipe Jobs" in alive.stdout
    assert [j["metadata"]["name"] for j in kube.jobs()] == [job]  # a live run keeps its Job
    proc.kill()
    proc.wait(60)
    assert [j["metadata"]["name"] for j in kube.jobs()] == [job]  # nobody cleaned up after the dead one
    dead = _gc(kube, tmp_path)
    assert dead.returncode == 0, dead.stderr
    assert f"deleting Job {job}" in dead.stdout
    kube.wait_for("the orphaned Job to be gone", lambda: kube.jobs() == [])
    kube.wait_for("the orphaned pod's process to be killed", lambda: kube.pods[kube.job_pods[job]].done)
