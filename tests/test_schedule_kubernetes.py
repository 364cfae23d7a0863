"""The Kubernetes target: CronJob + ConfigMap manifests checked against the Kubernetes schemas
(kubernetes-validate, strict) and applied with the official client over HTTP to kmock's
in-process API server."""

from __future__ import annotations

import asyncio
import re
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

kmock = pytest.importorskip("kmock")
kubernetes_validate = pytest.importorskip("kubernetes_validate")

from kubernetes import client  # noqa: E402

from dynpipe.schedule.kubernetes import CronJobSpec, apply, k8s_name, manifests  # noqa: E402
from dynpipe.schedule.module_info import resolve_module  # noqa: E402

MODULE = """
from dynpipe import pipeline, step

raise SystemExit("importing this module runs its set-up cells: creating a CronJob must not import it")

@step
def train(epochs: int) -> int:
    return epochs

@pipeline(dynamic=True)
def nightly_train(epochs: int = 1) -> None:
    train(epochs)
"""
SHARED = {"DYNPIPE_STORE_URL": "postgresql://dynpipe@db.ml.svc:5432/dynpipe",
          "DYNPIPE_ARTIFACT_STORE": "s3://team-artifacts/ml"}
DNS_1123 = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


def validate(obj: dict[str, Any]) -> None:
    kubernetes_validate.validate(obj, kubernetes_validate.latest_version(), strict=True)


@pytest.fixture
def module(tmp_path: Path) -> Path:
    path = tmp_path / "Nightly Train.py"
    path.write_text(MODULE)
    return path


def cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    import os

    out = subprocess.run([sys.executable, "-m", "dynpipe.cli", *args], capture_output=True, text=True, timeout=120,
                         env={**os.environ, **(env or {})})
    assert out.returncode == 0, out.stderr
    return out


def test_names_are_valid_dns_1123() -> None:
    cut_at_dash = "a" * 51 + "_b"  # cut to 52 characters, the old code ended it in '-'
    for text in [cut_at_dash, "Nightly_Train", "--x--", "___", "ÄÖÜ nightly", "a" * 100, "x.y.z"]:
        name = k8s_name(text)
        assert DNS_1123.match(name) and len(name) <= 52, (text, name)
    assert k8s_name(cut_at_dash) == "a" * 51
    assert k8s_name("Nightly__Train") == "nightly-train"


def test_cli_writes_valid_cronjob_and_configmap(module: Path, tmp_path: Path) -> None:
    out_file = tmp_path / "cron.yaml"
    out = cli(
        "schedule", "create", "Nightly_Train" + "x" * 60, str(module), "--cron", "@daily",
        "--timezone", "Europe/Berlin", "--target", "kubernetes", "--image", "registry.local/ml:1",
        "--namespace", "ml", "--service-account", "pipelines", "--env", "LOG_LEVEL=debug", "--secret-env", "s3-creds",
        "--gpu", "1", "--toleration", "nvidia.com/gpu:NoSchedule", "--toleration", "pool=batch:NoExecute",
        "-p", "epochs=3", "--overlap", "replace", "--output", str(out_file), env=SHARED,
    )
    assert "wrote ConfigMap/" in out.stdout and "CronJob/" in out.stdout
    configmap, cronjob = list(yaml.safe_load_all(out_file.read_text()))
    for obj in (configmap, cronjob):
        validate(obj)
        assert DNS_1123.match(obj["metadata"]["name"]) and obj["metadata"]["namespace"] == "ml"
    name = cronjob["metadata"]["name"]
    assert len(name) <= 52 and name.startswith("nightly-train")
    assert configmap["data"] == {"nightly_train.py": MODULE}
    spec = cronjob["spec"]
    assert spec["schedule"] == "0 0 * * *" and spec["timeZone"] == "Europe/Berlin"
    assert spec["concurrencyPolicy"] == "Replace" and spec["startingDeadlineSeconds"] == 300
    assert spec["successfulJobsHistoryLimit"] == 3 and spec["failedJobsHistoryLimit"] == 3
    job = spec["jobTemplate"]["spec"]
    assert job["activeDeadlineSeconds"] == 21600 and job["ttlSecondsAfterFinished"] == 86400
    pod = job["template"]["spec"]
    assert pod["serviceAccountName"] == "pipelines"
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert pod["tolerations"] == [
        {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"},
        {"key": "pool", "operator": "Equal", "value": "batch", "effect": "NoExecute"},
    ]
    (container,) = pod["containers"]
    assert container["securityContext"] == {
        "runAsNonRoot": True, "allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"]}, "seccompProfile": {"type": "RuntimeDefault"},
    }
    # the pod of `dynpipe run --on kubernetes`: dynpipe run on the shipped module, tagged by its run name
    assert container["command"] == ["python", "-m", "dynpipe.cli", "run",
                                    "/dynpipe/module/nightly_train.py:nightly_train", "-p", "epochs=3",
                                    "--run-name", "Nightly_Train" + "x" * 60 + "-{date}-{time}"]
    for name, value in SHARED.items():  # the shared store reaches the pod through its env
        assert {"name": name, "value": value} in container["env"]
    assert not any(str(tmp_path) in part for part in container["command"])  # no local paths in the pod
    assert {"name": "LOG_LEVEL", "value": "debug"} in container["env"]
    assert container["envFrom"] == [{"secretRef": {"name": "s3-creds"}}]
    assert container["resources"]["limits"] == {"nvidia.com/gpu": "1"}
    assert {"name": "module", "mountPath": "/dynpipe/module", "readOnly": True} in container["volumeMounts"]
    assert {"name": "module", "configMap": {"name": configmap["metadata"]["name"]}} in pod["volumes"]


@pytest.mark.parametrize(("overlap", "policy", "deadline"), [("skip", "Forbid", 300), ("queue", "Forbid", 3600),
                                                              ("replace", "Replace", 300)])
def test_overlap_maps_to_concurrency_policy(module: Path, overlap: str, policy: str, deadline: int) -> None:
    path, info = resolve_module(str(module))
    spec = CronJobSpec(name="n", cron="*/5 * * * *", image="i:1", overlap=overlap, active_deadline=3600,
                       allow_local_store=True)
    (_, cronjob) = manifests(spec, path, info)
    validate(cronjob)
    assert cronjob["spec"]["concurrencyPolicy"] == policy
    assert cronjob["spec"]["startingDeadlineSeconds"] == deadline


def test_module_in_image_needs_no_configmap(module: Path) -> None:
    out = cli("schedule", "create", "n", "/app/train.py:nightly_train", "--cron", "0 3 * * *", "--target",
              "kubernetes", "--image", "i:1", "--module-in-image", "/app/train.py", "--store-claim", "dynpipe-store")
    (cronjob,) = list(yaml.safe_load_all(out.stdout))
    validate(cronjob)
    container = cronjob["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]
    assert container["command"][4] == "/app/train.py:nightly_train"
    bad = subprocess.run([sys.executable, "-m", "dynpipe.cli", "schedule", "create", "n", str(module), "--cron",
                          "0 3 * * *", "--target", "kubernetes", "--image", "i:1", "--toleration", "gpu:Sometimes"],
                         capture_output=True, text=True, timeout=120)
    assert bad.returncode == 1 and "toleration 'gpu:Sometimes': expected KEY[=VALUE]:EFFECT" in bad.stderr


@pytest.fixture
def api_server() -> Iterator[tuple[Any, str]]:
    """kmock's Kubernetes emulator, served over HTTP from a thread of this process."""
    box: dict[str, Any] = {}
    ready = threading.Event()

    async def serve() -> None:
        box["stop"], box["loop"] = asyncio.Event(), asyncio.get_running_loop()
        async with kmock.KubernetesEmulator() as emulator, kmock.Server(emulator) as server:
            box["emulator"], box["url"] = emulator, str(server.url).rstrip("/")
            ready.set()
            await box["stop"].wait()

    thread = threading.Thread(target=lambda: asyncio.run(serve()), daemon=True)
    thread.start()
    assert ready.wait(30), "kmock did not start within 30 s"
    try:
        yield box["emulator"], box["url"]
    finally:
        box["loop"].call_soon_threadsafe(box["stop"].set)
        thread.join(timeout=30)


def _stored(server: Any, resource: str, name: str) -> dict[str, Any]:
    found = [obj for (res, ns, nm), obj in server.objects.items() if resource in str(res) and nm == name and ns == "ml"]
    assert len(found) == 1, list(server.objects.keys())
    return dict(found[0].raw)


def test_apply_creates_then_updates_through_the_api(module: Path, api_server: Any, tmp_path: Path) -> None:
    api_server, url = api_server
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "kmock",
        "clusters": [{"name": "kmock", "cluster": {"server": url}}],
        "users": [{"name": "u", "user": {"token": "t"}}],
        "contexts": [{"name": "kmock", "context": {"cluster": "kmock", "user": "u", "namespace": "ml"}}],
    }))
    out = cli("schedule", "create", "nightly", str(module), "--cron", "0 3 * * *", "--target", "kubernetes",
              "--image", "i:1", "--namespace", "ml", "--service-account", "pipelines", "--apply",
              env={"KUBECONFIG": str(kubeconfig), **SHARED})
    assert "ConfigMap/nightly-module created" in out.stdout and "CronJob/nightly created" in out.stdout
    cronjob = _stored(api_server, "cronjobs", "nightly")
    assert cronjob["spec"]["schedule"] == "0 3 * * *"
    assert cronjob["spec"]["jobTemplate"]["spec"]["template"]["spec"]["serviceAccountName"] == "pipelines"
    assert _stored(api_server, "configmaps", "nightly-module")["data"] == {"nightly_train.py": MODULE}

    path, info = resolve_module(str(module))
    changed = manifests(CronJobSpec(name="nightly", cron="30 4 * * *", image="i:2", namespace="ml",
                                    allow_local_store=True), path, info)
    api = client.ApiClient(client.Configuration(host=url))
    assert apply(changed, api) == ["ConfigMap/nightly-module updated", "CronJob/nightly updated"]
    cronjob = _stored(api_server, "cronjobs", "nightly")
    assert cronjob["spec"]["schedule"] == "30 4 * * *"
    pod = cronjob["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    assert pod["containers"][0]["image"] == "i:2"
    assert pod.get("serviceAccountName") is None  # dropped since the first apply
    methods = [(r.method, r.resource.plural if r.resource else None) for r in api_server]
    assert [m for m in methods if m[1] in ("cronjobs", "configmaps")] == [
        ("POST", "configmaps"), ("POST", "cronjobs"),
        ("POST", "configmaps"), ("PATCH", "configmaps"), ("POST", "cronjobs"), ("PATCH", "cronjobs"),
    ]
