"""Manifests, settings and reports of the Kubernetes runtime, without an API server.

Every Job (with every setting) and the RBAC manifests pass ``kubernetes-validate
--strict`` for two Kubernetes minor versions, plus checks the schema does not make
(DNS-1123 names, label values).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from dynpipe import ResourceSettings
from dynpipe.outputs import OutputSpec
from dynpipe.runtimes.k8s import KubernetesSettings, job_manifest, job_name, resource_requirements
from dynpipe.runtimes.k8s.config import resolve_settings
from dynpipe.runtimes.k8s.diagnose import api_error, pending_reason
from dynpipe.runtimes.k8s.manifests import is_dns1123_label, is_label_value
from dynpipe.runtimes.k8s.rbac import RULES, rbac_manifests
from dynpipe.runtimes.k8s.result import BadReport, decode_report, encode_report
from dynpipe.runtimes.task import StepTask, TaskResult
from dynpipe.store.store import SavedArtifact

VERSIONS = ["1.30.0", "1.35.0"]


def _task(**changes: Any) -> StepTask:
    base: dict[str, Any] = dict(
        run_id="0123456789abcdef0123456789abcdef", run_name="run-1", pipeline_name="p",
        step_run_id="fedcba9876543210", invocation_id="Train_Model_2", step_name="Train_Model", func=len,
        parameters={}, inputs={}, input_annotations={}, outputs=[], materializers={}, store_root="/data/store",
    )
    base.update(changes)
    return StepTask(**base)


EVERY_SETTING = KubernetesSettings(
    namespace="ml", image="registry.example/app:1", pvc="shared-store", service_account="runner",
    env={"PLAIN": "1", "TOKEN": {"secret_key_ref": {"name": "creds", "key": "token"}},
         "MODE": {"config_map_key_ref": {"name": "cfg", "key": "mode", "optional": True}}},
    image_pull_secrets=["regcred"], node_selector={"gpu": "a100"},
    tolerations=[{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
    affinity={"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
        {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["a"]}]}]}}},
    labels={"team": "vision"}, annotations={"owner": "ml@example.com"},
    pod_security_context={"runAsUser": 2000}, container_security_context={"readOnlyRootFilesystem": False},
    active_deadline_seconds=3600, pending_timeout=120, ttl_seconds_after_finished=600,
)


def _every_job() -> dict[str, Any]:
    task = _task(resources=ResourceSettings(cpu_count=1.5, memory="2GiB", gpu_count=1), attempt=3)
    return job_manifest(task, "/data/store/k8s-tasks/x.task", EVERY_SETTING, owner=("orchestrator-0", "uid-1"))


@pytest.mark.parametrize("version", VERSIONS)
def test_manifests_pass_strict_schema_validation(version: str) -> None:
    minimal = job_manifest(_task(), "/t", KubernetesSettings(image="x:1"))
    for manifest in (_every_job(), minimal, *rbac_manifests("ml", "runner")):
        kubernetes_validate.validate(manifest, version, strict=True)


def test_every_setting_lands_in_the_job() -> None:
    m = _every_job()
    pod = m["spec"]["template"]["spec"]
    (c,) = pod["containers"]
    assert m["metadata"]["namespace"] == "ml"
    assert m["metadata"]["ownerReferences"][0] == {"apiVersion": "v1", "kind": "Pod", "name": "orchestrator-0",
                                                   "uid": "uid-1", "controller": False, "blockOwnerDeletion": False}
    assert {"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "token"}}} in c["env"]
    mode_ref = {"configMapKeyRef": {"name": "cfg", "key": "mode", "optional": True}}
    assert {"name": "MODE", "valueFrom": mode_ref} in c["env"]
    assert {"name": "PLAIN", "value": "1"} in c["env"]
    assert pod["imagePullSecrets"] == [{"name": "regcred"}]
    assert pod["nodeSelector"] == {"gpu": "a100"} and pod["tolerations"][0]["key"] == "nvidia.com/gpu"
    assert pod["serviceAccountName"] == "runner"
    assert pod["securityContext"]["runAsUser"] == 2000 and pod["securityContext"]["runAsNonRoot"] is True
    assert c["securityContext"]["readOnlyRootFilesystem"] is False  # overridden
    assert c["securityContext"]["capabilities"] == {"drop": ["ALL"]}  # the rest stays secure
    assert m["spec"]["activeDeadlineSeconds"] == 3600 and m["spec"]["ttlSecondsAfterFinished"] == 600
    assert m["metadata"]["labels"]["team"] == "vision" and m["metadata"]["annotations"]["owner"] == "ml@example.com"
    assert c["resources"]["limits"] == {"cpu": "1500m", "memory": str(2 * 2**30), "nvidia.com/gpu": "1"}


def test_secure_by_default() -> None:
    m = job_manifest(_task(), "/t", KubernetesSettings(image="x:1"))
    pod = m["spec"]["template"]["spec"]
    (c,) = pod["containers"]
    assert c["securityContext"] == {
        "allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True, "runAsNonRoot": True,
        "capabilities": {"drop": ["ALL"]}, "seccompProfile": {"type": "RuntimeDefault"},
    }
    assert {"name": "tmp", "emptyDir": {}} in pod["volumes"]
    assert {"name": "tmp", "mountPath": "/tmp"} in c["volumeMounts"]
    assert m["spec"]["backoffLimit"] == 0
    assert m["spec"]["podFailurePolicy"] == {"rules": [
        {"action": "FailJob", "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}]}]}
    assert pod["automountServiceAccountToken"] is False


@pytest.mark.parametrize("invocation", ["Train_Model_2", "x" * 200, "---", "ÄÖÜ step", "a-" * 40])
def test_names_and_labels_are_valid(invocation: str) -> None:
    task = _task(invocation_id=invocation, step_name=invocation, run_id="R" * 80, attempt=12)
    m = job_manifest(task, "/t", KubernetesSettings(image="x:1"))
    name = m["metadata"]["name"]
    assert name == job_name(task)
    assert is_dns1123_label(name), name
    for value in m["metadata"]["labels"].values():
        assert is_label_value(value), value


def test_bad_label_value_names_the_step() -> None:
    with pytest.raises(ValueError, match=r"step 'Train_Model_2': label team='-bad-' is not a valid label value"):
        job_manifest(_task(), "/t", KubernetesSettings(image="x:1", labels={"team": "-bad-"}))


def test_missing_image_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="step 'Train_Model_2': no image; set settings"):
        job_manifest(_task(), "/t", KubernetesSettings())


def test_resources_map_to_requests_and_limits() -> None:
    assert resource_requirements(ResourceSettings(cpu_count=2)) == {"requests": {"cpu": "2"}, "limits": {"cpu": "2"}}
    assert resource_requirements(None) == {}


def test_settings_layers_and_env_overrides(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DYNPIPE_K8S_IMAGE", raising=False)
    monkeypatch.delenv("DYNPIPE_K8S_NAMESPACE", raising=False)
    s = resolve_settings([{"namespace": "a", "image": "p:1", "labels": {"x": "1"}},
                          KubernetesSettings(image="s:1", pending_timeout=5)], "step 's'")
    assert (s.namespace, s.image, s.labels, s.pending_timeout) == ("a", "s:1", {"x": "1"}, 5)
    monkeypatch.setenv("DYNPIPE_K8S_IMAGE", "env:1")
    assert resolve_settings([{"image": "p:1"}], "step 's'").image == "env:1"
    with pytest.raises(ValueError, match=r"step 's': invalid Kubernetes settings: pending_timeut: unknown key"):
        resolve_settings([{"pending_timeut": 3}], "step 's'")
    with pytest.raises(ValueError, match="step 's'.*env.TOKEN"):
        resolve_settings([{"env": {"TOKEN": {"secret_key_ref": {"name": "a"}}}}], "step 's'")


def test_rbac_has_exactly_the_verbs_the_runtime_uses() -> None:
    assert RULES == [
        {"apiGroups": ["batch"], "resources": ["jobs"], "verbs": ["create", "get", "list", "watch", "delete"]},
        {"apiGroups": ["batch"], "resources": ["jobs/status"], "verbs": ["get"]},
        {"apiGroups": [""], "resources": ["pods"], "verbs": ["list", "watch"]},
        {"apiGroups": [""], "resources": ["pods/log"], "verbs": ["get"]},
    ]


def test_rbac_cli_prints_valid_yaml(tmp_path: Path) -> None:
    out = subprocess.run([sys.executable, "-m", "dynpipe.cli", "kubernetes", "rbac", "--namespace", "ml",
                          "--service-account", "runner"], capture_output=True, text=True, timeout=120, check=True)
    docs = list(yaml.safe_load_all(out.stdout))
    assert [d["kind"] for d in docs] == ["ServiceAccount", "Role", "RoleBinding"]
    assert docs[2]["subjects"] == [{"kind": "ServiceAccount", "name": "runner", "namespace": "ml"}]
    for doc in docs:
        for version in VERSIONS:
            kubernetes_validate.validate(doc, version, strict=True)


def test_pending_reason_reads_the_scheduler() -> None:
    pod = {"status": {"phase": "Pending", "conditions": [
        {"type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": "0/3 nodes"}]}}
    assert pending_reason(pod) == "Unschedulable: 0/3 nodes"


def test_api_errors_are_summarised_without_headers() -> None:
    from kubernetes.client.exceptions import ApiException

    exc = ApiException(status=403, reason="Forbidden")
    exc.headers = {"Audit-Id": "abc", "Content-Type": "application/json"}
    exc.body = json.dumps({"kind": "Status", "reason": "Forbidden",
                           "message": 'jobs.batch is forbidden: User "x" cannot create resource "jobs"'})
    text = api_error(exc)
    assert text == 'HTTP 403 Forbidden: jobs.batch is forbidden: User "x" cannot create resource "jobs"'
    assert "Audit-Id" not in text


# -- the pod's JSON report ---------------------------------------------------------------------

HASH = "ab" * 32


def _report(tmp_path: Path, **outputs: SavedArtifact) -> bytes:
    return encode_report(TaskResult(outputs=dict(outputs), logs="hi\n", preview="1"))


def _artifact(size: int = 3, uri: str = f"artifacts/ab/{HASH}") -> SavedArtifact:
    return SavedArtifact(id="0" * 32, uri=uri, content_hash=HASH, data_type="builtins.int",
                         materializer="dynpipe.json", size=size, metadata={"k": 1}, tags=("t",))


def test_report_round_trip_is_validated(tmp_path: Path) -> None:
    task = _task(outputs=[OutputSpec("output", int)])
    result = decode_report(_report(tmp_path, output=_artifact()), task, lambda uri: 3)
    assert result.outputs["output"].uri == f"artifacts/ab/{HASH}" and result.outputs["output"].tags == ("t",)
    assert result.logs == "hi\n" and result.error is None and result.error_type is None


@pytest.mark.parametrize(
    ("data", "size", "message"),
    [
        (lambda t: _report(t, output=_artifact(uri="../../etc/passwd")), 3, "is not the artifact file of hash"),
        (lambda t: _report(t, output=_artifact(uri=f"artifacts/cd/{'cd' * 32}")), 3, "is not the artifact file"),
        (lambda t: _report(t, output=_artifact()), None, "has size None, the report says 3"),
        (lambda t: _report(t, other=_artifact()), 3, "the step declares ['output']"),
        (lambda t: b"\x80\x04cos\nsystem\n", 3, "the report is not valid"),
        (lambda t: json.dumps({"format": "other"}).encode(), 3, "has format 'other'"),
    ],
)
def test_bad_reports_are_refused(tmp_path: Path, data: Any, size: int | None, message: str) -> None:
    task = _task(outputs=[OutputSpec("output", int)])
    with pytest.raises(BadReport, match=__import__("re").escape(message)):
        decode_report(data(tmp_path), task, lambda uri: size)


def test_worker_refuses_a_by_value_step_from_another_python() -> None:
    import cloudpickle

    from dynpipe.runtimes.worker import _Mirror, run_payload

    payload = cloudpickle.dumps(({"python": "2.7", "by_value": True, "invocation_id": "train"}, b"not read"))
    result = run_payload(payload, None, _Mirror())
    assert result.error_type == "PythonVersionMismatch"
    assert "step 'train' travels by value" in (result.error_message or "")
    assert "needs Python 2.7" in (result.error_message or "")
