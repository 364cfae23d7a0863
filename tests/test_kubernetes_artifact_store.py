"""Kubernetes steps with no shared volume: task, inputs, outputs and report through the artifact store.

The API server is kmock (official client over HTTP); ``kube_fixture`` plays the Job controller
and kubelet and runs each pod's command in a fresh empty folder with ONLY the Job's env (plus
PATH), so whatever a pod reads came through the Job or the artifact store, here moto's S3
server. The pods get S3 credentials the Kubernetes way: plain env and a ``secretKeyRef``.
"""

from __future__ import annotations

import os
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("s3fs")
pytest.importorskip("moto.server")

import kubernetes_validate
from k8s_pod_steps import make_numbers, total_in_pod
from kube_fixture import KubeCluster, cluster
from test_artifact_store_s3 import BUCKET, URL, moto, s3  # noqa: F401 - the moto fixtures, used by name

from dynpipe import pipeline
from dynpipe.runtimes.k8s import launch as k8s_launch
from dynpipe.runtimes.k8s.transport import INLINE_TASK_BYTES, TASK_ENV
from dynpipe.runtimes.shipping import func_ref

pytestmark = pytest.mark.timeout(180)


@pytest.fixture
def kube(monkeypatch: pytest.MonkeyPatch) -> Iterator[KubeCluster]:
    for c in cluster():
        monkeypatch.setattr(k8s_launch, "make_apis", c.apis)
        monkeypatch.setenv("DYNPIPE_ISOLATED_BACKEND", "kubernetes")
        monkeypatch.setenv("DYNPIPE_K8S_IMAGE", "example/dynpipe:test")
        monkeypatch.setenv("DYNPIPE_K8S_NAMESPACE", "pipelines")
        monkeypatch.setenv("DYNPIPE_ECHO_LOGS", "false")
        c.secrets[("s3-creds", "secret-key")] = "sup3r-s3cret"
        yield c


@pytest.fixture
def bucket(request: pytest.FixtureRequest) -> Any:
    """moto's S3 (test_artifact_store_s3's fixtures): a boto3 client on an emptied bucket."""
    return request.getfixturevalue("s3")


def pod_settings(moto_url: str) -> dict[str, Any]:
    """What a real deployment gives its pods: the endpoint and credentials, the secret by reference."""
    return {"kubernetes": {"env": {
        "AWS_ENDPOINT_URL": moto_url, "AWS_DEFAULT_REGION": "us-east-1", "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": {"secret_key_ref": {"name": "s3-creds", "key": "secret-key"}},
    }}}


def _keys(client: Any, prefix: str) -> list[str]:
    return [o["Key"] for o in client.list_objects_v2(Bucket=BUCKET, Prefix=prefix).get("Contents", [])]


def _container(job: dict[str, Any]) -> dict[str, Any]:
    container: dict[str, Any] = job["spec"]["template"]["spec"]["containers"][0]
    return container


def _assert_pods_never_saw_the_store(kube: KubeCluster, store_home: Path) -> None:
    assert kube.pods
    for pod in kube.pods.values():
        seen = " ".join([*pod.env.values(), *pod.command, pod.cwd])
        assert str(store_home) not in seen and "metadata.db" not in seen
        assert "DYNPIPE_HOME" not in pod.env and "DYNPIPE_STORE_URL" not in pod.env
        assert pod.env["DYNPIPE_ARTIFACT_STORE"] == URL
        assert not list(Path(pod.cwd).rglob("metadata.db"))  # no database was made in the pod either


def test_pods_read_inputs_from_and_write_outputs_to_s3(kube: KubeCluster, bucket: Any,
                                                       store_home: Path) -> None:
    note = os.urandom(INLINE_TASK_BYTES).hex()  # the second task: twice the inline limit before base64
    prefix = URL.partition(BUCKET + "/")[2]

    @pipeline(dynamic=True, settings=pod_settings(os.environ["AWS_ENDPOINT_URL"]))
    def through_s3() -> None:
        total_in_pod(make_numbers(5), note=note)

    run = through_s3()
    made, total = run.steps["make_numbers"], run.steps["total_in_pod"]
    assert made.output.uri.startswith(f"{URL}/artifacts/")  # written by the first pod to the bucket
    assert total.output.uri.startswith(f"{URL}/artifacts/")  # the second pod read it from there
    out = total.output.load()
    assert out["total"] == 10 and out["note_len"] == len(note)
    assert out["pid"] != os.getpid() and out["cwd"] != os.getcwd()
    # The step's print, followed live from the pod's log stream (one follow per pod).
    assert total.logs == "adding in the pod\n"  # nothing of the S3 client's own INFO records
    followed = [r for r in kube.client_requests() if str(r.url.path).endswith("/log")]
    assert len(followed) == 2 and all(r.params.get("follow") == "true" for r in followed)
    stored = set(_keys(bucket, f"{prefix}/artifacts/"))
    assert {made.output.uri.partition(BUCKET + "/")[2], total.output.uri.partition(BUCKET + "/")[2]} <= stored
    assert _keys(bucket, f"{prefix}/k8s-tasks/") == []  # tasks and reports removed once read

    small, big = (_container(job) for job in kube.created_jobs)
    assert small["command"][-4:-2] == ["--task", f"env:{TASK_ENV}"]  # a small task rides in the Job's env
    assert TASK_ENV not in {e["name"] for e in big["env"]}  # a big one went through the store
    task_arg = big["command"][big["command"].index("--task") + 1]
    assert task_arg.startswith(f"{URL}/k8s-tasks/") and task_arg.endswith(".task")
    assert len(str(kube.created_jobs[1])) < INLINE_TASK_BYTES  # the Job stays small
    for job in kube.created_jobs:
        for version in ("1.30.0", "1.35.0"):
            kubernetes_validate.validate(job, version, strict=True)
    _assert_pods_never_saw_the_store(kube, store_home)


NOTEBOOK_CELL = """
from dynpipe import step, pipeline

SCALE = 3

@step(runtime="isolated", enable_cache=False)
def scaled(x: int) -> int:
    import os
    print("scaling in", os.getcwd())
    return x * SCALE

@pipeline(dynamic=True, settings=SETTINGS)
def notebook_pipeline() -> None:
    scaled(14)
"""


def _notebook_pipeline() -> Any:
    namespace: dict[str, Any] = {"__name__": "__main__", "SETTINGS": pod_settings(os.environ['AWS_ENDPOINT_URL'])}
    exec(textwrap.dedent(NOTEBOOK_CELL), namespace)
    assert func_ref(namespace["scaled"].entrypoint) is None  # no import path: travels by value
    return namespace["notebook_pipeline"]


def test_a_notebook_step_travels_by_value(kube: KubeCluster, bucket: Any, store_home: Path) -> None:
    run = _notebook_pipeline()()
    sr = run.steps["scaled"]
    assert sr.output.load() == 42 and sr.output.uri.startswith(f"{URL}/artifacts/")
    assert sr.logs.startswith("scaling in ")
    _assert_pods_never_saw_the_store(kube, store_home)


def test_a_by_value_step_under_another_python_fails_naming_both(kube: KubeCluster, bucket: Any,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    # The kernel claims another Python than the "image" (this interpreter) runs.
    monkeypatch.setattr(k8s_launch, "python_version", lambda: "3.99")
    here = f"{os.sys.version_info[0]}.{os.sys.version_info[1]}"  # type: ignore[attr-defined]
    with pytest.raises(Exception, match="needs Python 3.99") as info:
        _notebook_pipeline()()
    assert f"this image runs Python {here}" in str(info.value)
    from dynpipe import Client

    sr = Client().get_pipeline("notebook_pipeline").last_run.steps["scaled"]
    assert sr.error_type == "PythonVersionMismatch"


@pytest.mark.parametrize("declared", ["nothing", "a local folder"])
def test_a_local_artifact_store_not_shared_fails_before_any_job(
    kube: KubeCluster, declared: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("DYNPIPE_ARTIFACT_STORE", raising=False)
    if declared == "a local folder":
        monkeypatch.setenv("DYNPIPE_ARTIFACT_STORE", str(tmp_path / "elsewhere"))

    @pipeline(dynamic=True)
    def local_only() -> None:
        make_numbers(3)

    with pytest.raises(Exception, match="is on this machine's disk, which pods cannot read") as info:
        local_only()
    message = str(info.value)
    assert "step 'make_numbers'" in message and "DYNPIPE_ARTIFACT_STORE" in message
    assert "DYNPIPE_K8S_PVC" in message
    from dynpipe import Client

    assert Client().get_pipeline("local_only").last_run.steps["make_numbers"].error_type == "LocalStoreNotShared"
    assert kube.created_jobs == []
    assert not [r for r in kube.client_requests() if r.method == "POST"]


@pytest.mark.parametrize(
    ("uri", "accepted"),
    [
        ("{url}/artifacts/ab/{h}", True),
        ("artifacts/ab/{h}", False),  # a file of the orchestrator's store root: not what this pod was given
        ("s3://someone-else/x/artifacts/ab/{h}", False),
        ("{url}/artifacts/cd/{h}", False),
        ("{url}/../x/artifacts/ab/{h}", False),
    ],
)
def test_a_report_is_accepted_only_for_artifacts_in_the_pods_store(uri: str, accepted: bool) -> None:
    from dynpipe.outputs import OutputSpec
    from dynpipe.runtimes.k8s.result import BadReport, decode_report, encode_report
    from dynpipe.runtimes.task import StepTask, TaskResult
    from dynpipe.store.store import SavedArtifact

    digest = "ab" * 32
    art = SavedArtifact(id="0" * 32, uri=uri.format(url=URL, h=digest), content_hash=digest,
                        data_type="builtins.int", materializer="dynpipe.json", size=3)
    task = StepTask(run_id="r", run_name="r", pipeline_name="p", step_run_id="s", invocation_id="train",
                    step_name="train", func=len, parameters={}, inputs={}, input_annotations={},
                    outputs=[OutputSpec("output", int)], materializers={}, store_root="")
    data = encode_report(TaskResult(outputs={"output": art}))
    if accepted:
        assert decode_report(data, task, lambda u: 3, URL).outputs["output"].uri == art.uri
    else:
        with pytest.raises(BadReport, match="is not the artifact file of hash"):
            decode_report(data, task, lambda u: 3, URL)
