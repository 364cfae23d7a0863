"""Scheduled runs: the local cron loop (real processes) and the Kubernetes CronJob manifest."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from dynpipe import Client
from dynpipe.config import ResourceSettings
from dynpipe.schedule.kubernetes import apply_cronjob, cronjob_manifest
from dynpipe.schedule.local import LocalScheduler
from dynpipe.schedule.target import TargetError, load_pipeline

MODULE = """
from dynpipe import pipeline, step

@step(enable_cache=False)
def tick(label: str) -> str:
    return label

@pipeline(dynamic=True)
def nightly(label: str = "x") -> None:
    tick(label)

if __name__ == "__main__":
    raise SystemExit("the __main__ block must not run when scheduled")
"""


@pytest.fixture
def module(tmp_path: Path) -> Path:
    path = tmp_path / "nightly_module.py"
    path.write_text(MODULE)
    return path


def test_load_pipeline_target_errors(module: Path, tmp_path: Path) -> None:
    assert load_pipeline(f"{module}:nightly").name == "nightly"
    assert load_pipeline(str(module)).name == "nightly"
    with pytest.raises(TargetError, match="no pipeline named 'other'.*nightly"):
        load_pipeline(f"{module}:other")
    with pytest.raises(TargetError, match="does not exist"):
        load_pipeline(str(tmp_path / "missing.py"))


def test_local_scheduler_runs_module_in_fresh_processes(module: Path, store_home: Path) -> None:
    lines: list[str] = []
    scheduler = LocalScheduler(str(module), "* * * * * *", ["label=\"tock\""], max_runs=2, log=lines.append)
    codes = scheduler.run()
    assert codes == [0, 0]
    pids = {p.pid for p in scheduler.started}
    assert len(pids) == 2 and os.getpid() not in pids
    runs = Client(store_home).list_pipeline_runs(pipeline_name="nightly")
    assert len(runs) == 2 and all(r.status.value == "completed" for r in runs)
    assert runs[0].steps["tick"].output.load() == "tock"
    assert sum("starting" in line for line in lines) == 2


def test_invalid_cron_is_a_clear_error(module: Path) -> None:
    with pytest.raises(ValueError, match="cron expression 'every day' is not valid"):
        LocalScheduler(str(module), "every day")


def test_cronjob_manifest_and_cli(module: Path) -> None:
    manifest = cronjob_manifest(
        name="Nightly_Train", target="/app/nightly_module.py:nightly", cron="0 3 * * *",
        image="registry.local/ml:1", resources=ResourceSettings(cpu_count=2, memory="4GiB"),
        store_claim="dynpipe-store",
    )
    assert manifest["kind"] == "CronJob" and manifest["apiVersion"] == "batch/v1"
    assert manifest["metadata"]["name"] == "nightly-train"
    spec = manifest["spec"]
    assert spec["schedule"] == "0 3 * * *" and spec["concurrencyPolicy"] == "Forbid"
    pod = spec["jobTemplate"]["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert container["command"][:4] == ["python", "-m", "dynpipe.schedule.runner", "/app/nightly_module.py:nightly"]
    assert container["resources"]["limits"] == {"cpu": "2.0", "memory": str(4 * 2**30)}
    assert {"name": "DYNPIPE_HOME", "value": "/var/lib/dynpipe"} in container["env"]
    assert pod["volumes"][0]["persistentVolumeClaim"]["claimName"] == "dynpipe-store"
    with pytest.raises(ValueError, match="not a valid 5-field"):
        cronjob_manifest(name="x", target="m.py", cron="* * * * * *", image="i")

    out = subprocess.run(
        [sys.executable, "-m", "dynpipe.cli", "schedule", "k8s", str(module),
         "--cron", "*/5 * * * *", "--image", "img:1"],
        capture_output=True, text=True, check=True,
    )
    parsed = yaml.safe_load(out.stdout)
    assert parsed["spec"]["schedule"] == "*/5 * * * *"
    assert parsed["metadata"]["name"] == "nightly"


class _FakeBatchApi:
    """No cluster can run on this machine: a stand-in recording the calls the real API would get."""

    def __init__(self, exists: bool) -> None:
        self.exists = exists
        self.calls: list[str] = []

    def create_namespaced_cron_job(self, namespace: str, body: dict) -> None:
        from kubernetes.client import ApiException

        self.calls.append(f"create {namespace}/{body['metadata']['name']}")
        if self.exists:
            raise ApiException(status=409)

    def replace_namespaced_cron_job(self, name: str, namespace: str, body: dict) -> None:
        self.calls.append(f"replace {namespace}/{name}")


def test_apply_creates_or_replaces() -> None:
    manifest = cronjob_manifest(name="n", target="m.py", cron="0 * * * *", image="i")
    fresh = _FakeBatchApi(exists=False)
    assert apply_cronjob(manifest, fresh) == "n" and fresh.calls == ["create default/n"]
    existing = _FakeBatchApi(exists=True)
    apply_cronjob(manifest, existing)
    assert existing.calls == ["create default/n", "replace default/n"]
