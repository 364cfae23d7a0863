"""``dynpipe run MODULE --on kubernetes`` and Kubernetes schedules as managed objects.

The run's Job and a schedule's CronJob carry the same pod (``schedule/run_job.py``); the
manifests pass ``kubernetes-validate --strict`` and are applied with the official client to
kmock, whose fake kubelet (``kube_fixture``) mounts the ConfigMap and runs ``dynpipe run`` as
a local process against a real PostgreSQL store whose URL reaches the pod through a Secret.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from backends import PostgresServer, _close_stores_of
from kube_fixture import KubeCluster, cluster

from dynpipe import Client
from dynpipe.cli import main
from dynpipe.schedule.run_job import store_env

VERSIONS = ["1.30.0", "1.35.0"]
MODULE = '''
from dynpipe import pipeline, step

@step
def double(n: int) -> int:
    print(f"doubling {n} in the pod")
    return 2 * n

@pipeline(dynamic=True, name="shipped")
def shipped(n: int = 1) -> None:
    double(n)
'''
NOT_IMPORTED = MODULE.replace("from dynpipe import", "raise SystemExit('imported locally')\nfrom dynpipe import")
SHARED = {"DYNPIPE_STORE_URL": "postgresql://dynpipe@db.ml.svc:5432/dynpipe",
          "DYNPIPE_ARTIFACT_STORE": "s3://team-artifacts/ml"}


@pytest.fixture
def kube() -> Iterator[KubeCluster]:
    yield from cluster()


@pytest.fixture
def shared_store(postgres_server: PostgresServer, kube: KubeCluster, tmp_path: Path,
                 monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A fresh PostgreSQL database: this machine's DYNPIPE_STORE_URL, and the pod's through a Secret."""
    url = postgres_server.url(postgres_server.new_database())
    kube.secrets[("dynpipe-store", "url")] = url
    config = tmp_path / "kubeconfig"
    config.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "c",
        "clusters": [{"name": "k", "cluster": {"server": kube.url}}],
        "users": [{"name": "u", "user": {}}], "contexts": [{"name": "c", "context": {"cluster": "k", "user": "u"}}],
    }))
    monkeypatch.setenv("KUBECONFIG", str(config))
    monkeypatch.setenv("DYNPIPE_STORE_URL", url)
    yield url
    _close_stores_of(url)


def _pod_flags(tmp_path: Path) -> list[str]:
    """The pod's store: the URL from the Secret, artifacts in a folder this machine shares."""
    return ["--image", "example/app:1", "--namespace", "pipelines",
            "--env-secret", "DYNPIPE_STORE_URL=dynpipe-store:url",
            "--env", f"DYNPIPE_ARTIFACT_STORE={tmp_path / 'artifacts'}"]


def _validate(*objects: dict[str, Any]) -> None:
    for version in VERSIONS:
        for obj in objects:
            kubernetes_validate.validate(obj, version, strict=True)


def test_run_on_kubernetes_wait_records_the_run_in_the_shared_store(
        kube: KubeCluster, shared_store: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    module = tmp_path / "shipped.py"
    module.write_text(MODULE)
    config = tmp_path / "run.yaml"
    config.write_text("parameters:\n  n: 21\n")  # travels with the module
    assert main(["run", str(module), "--config", str(config), "--on", "kubernetes", *_pod_flags(tmp_path),
                 "--wait"]) == 0
    out = capsys.readouterr().out
    assert "doubling 21 in the pod" in out  # the pod's log, followed
    assert "run shipped-" in out and ": completed" in out
    assert out.rstrip().endswith("completed")
    (job,) = kube.created_jobs
    configmaps = [o.raw for key, o in kube._handler.objects.items() if key[0].plural == "configmaps"]
    (configmap,) = configmaps
    _validate(job, configmap)
    assert configmap["data"] == {"shipped.py": MODULE, "run-config.yaml": config.read_text()}
    container = job["spec"]["template"]["spec"]["containers"][0]
    assert container["command"] == ["python", "-m", "dynpipe.cli", "run", "/dynpipe/module/shipped.py:shipped",
                                    "--config", "/dynpipe/module/run-config.yaml"]
    assert {"name": "DYNPIPE_STORE_URL",
            "valueFrom": {"secretKeyRef": {"name": "dynpipe-store", "key": "url"}}} in container["env"]
    assert shared_store not in json.dumps(job)  # the password stays in the Secret
    writes = [(r.method, r.resource.plural) for r in kube.client_requests() if r.method != "GET"]
    assert writes == [("POST", "configmaps"), ("POST", "jobs")]  # kmock gives no uid: no owner patch
    run = Client().get_pipeline("shipped").last_run
    assert run.status.value == "completed"
    assert run.steps["double"].output.load() == 42


def test_output_writes_the_pod_a_schedule_uses_without_importing_the_module(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    module = tmp_path / "shipped.py"
    module.write_text(NOT_IMPORTED)
    for key, value in SHARED.items():
        monkeypatch.setenv(key, value)
    assert main(["run", f"{module}:shipped", "-p", "n=2", "--on", "kubernetes", "--image", "example/app:1",
                 "--service-account", "runner", "--toleration", "nvidia.com/gpu:NoSchedule", "--gpu", "1",
                 "--secret-env", "s3-creds", "--active-deadline", "600", "-o", str(tmp_path / "run.yaml")]) == 0
    configmap, job = yaml.safe_load_all((tmp_path / "run.yaml").read_text())
    assert main(["schedule", "create", "nightly", str(module), "--cron", "0 3 * * *", "--target", "kubernetes",
                 "--image", "example/app:1", "--service-account", "runner", "--toleration",
                 "nvidia.com/gpu:NoSchedule", "--gpu", "1", "--secret-env", "s3-creds", "--active-deadline", "600",
                 "-p", "n=2", "-o", str(tmp_path / "cron.yaml")]) == 0
    _, cronjob = yaml.safe_load_all((tmp_path / "cron.yaml").read_text())
    _validate(configmap, job, cronjob)
    pod = job["spec"]["template"]["spec"]
    scheduled = cronjob["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    assert job["spec"]["activeDeadlineSeconds"] == 600
    assert {k: v for k, v in job["spec"].items() if k != "template"} == {
        k: v for k, v in cronjob["spec"]["jobTemplate"]["spec"].items() if k != "template"}
    # One builder: the same pod but for the ConfigMap's name and the run name that tags scheduled runs ...
    command = scheduled["containers"][0].pop("command")
    assert command == ["python", "-m", "dynpipe.cli", "run", "/dynpipe/module/shipped.py:shipped", "-p", "n=2",
                       "--run-name", "nightly-{date}-{time}"]
    assert pod["containers"][0].pop("command")[4:] == ["/dynpipe/module/shipped.py:shipped", "-p", "n=2"]
    # ... and the origin its runs record: the schedule (a run Job's is the module it runs).
    env = scheduled["containers"][0]["env"]
    assert {"name": "DYNPIPE_RUN_ORIGIN", "value": "schedule:nightly"} in env
    env.remove({"name": "DYNPIPE_RUN_ORIGIN", "value": "schedule:nightly"})
    for spec in (pod, scheduled):
        spec["volumes"] = [v for v in spec["volumes"] if v["name"] != "module"]
    assert pod == scheduled
    container = pod["containers"][0]
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["resources"] == {"limits": {"nvidia.com/gpu": "1"}}
    assert container["envFrom"] == [{"secretRef": {"name": "s3-creds"}}]
    for key, value in SHARED.items():
        assert {"name": key, "value": value} in container["env"]
    assert pod["serviceAccountName"] == "runner" and pod["automountServiceAccountToken"] is True
    assert str(tmp_path) not in json.dumps([job, cronjob])
    capsys.readouterr()


def test_a_store_the_cluster_cannot_reach_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    module = tmp_path / "shipped.py"
    module.write_text(NOT_IMPORTED)
    out = tmp_path / "run.yaml"
    monkeypatch.delenv("DYNPIPE_STORE_URL", raising=False)
    monkeypatch.delenv("DYNPIPE_ARTIFACT_STORE", raising=False)
    args = ["run", str(module), "--on", "kubernetes", "--image", "example/app:1", "-o", str(out)]
    assert main(args) == 1
    err = capsys.readouterr().err
    assert "the store is not reachable from the cluster (run metadata in the local SQLite file" in err
    assert "--allow-local-store" in err and not out.exists()
    monkeypatch.setenv("DYNPIPE_STORE_URL", "postgresql://dynpipe:s3cret@db:5432/runs")
    monkeypatch.setenv("DYNPIPE_ARTIFACT_STORE", "s3://bucket/p")
    assert main(args) == 1
    err = capsys.readouterr().err
    assert "holds a password" in err and "--env-secret DYNPIPE_STORE_URL=" in err and "s3cret" not in err
    assert main([*args, "--env-secret", "DYNPIPE_STORE_URL=db:url"]) == 0  # the URL given from a Secret
    assert store_env({}, "claim", False, None, None) == []  # the store on a volume: nothing to pass
    assert store_env({}, None, False, "postgresql://u@db/x", "gs://b/p") == [
        {"name": "DYNPIPE_STORE_URL", "value": "postgresql://u@db/x"},
        {"name": "DYNPIPE_ARTIFACT_STORE", "value": "gs://b/p"}]


def _cronjob(kube: KubeCluster, name: str) -> dict[str, Any] | None:
    found = [o.raw for key, o in kube._handler.objects.items()
             if key[0].plural == "cronjobs" and key[2] == name and not o.deleted]
    return found[0] if found else None


def _listed(capsys: pytest.CaptureFixture[str]) -> list[str]:
    assert main(["schedule", "list"]) == 0
    return [line for line in capsys.readouterr().out.splitlines() if line.startswith("nightly")]


def test_kubernetes_schedule_list_pause_resume_run_now_delete(
        kube: KubeCluster, shared_store: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    module = tmp_path / "shipped.py"
    module.write_text(MODULE)
    assert main(["schedule", "create", "nightly", f"{module}:shipped", "--cron", "0 3 * * *", "--timezone",
                 "Europe/Berlin", "--target", "kubernetes", *_pod_flags(tmp_path), "-p", "n=5", "--apply"]) == 0
    assert "CronJob/nightly created" in capsys.readouterr().out
    (row,) = _listed(capsys)
    assert " active " in row and "k8s pipelines/nightly" in row and "03:00 CET" in row

    assert main(["schedule", "pause", "nightly"]) == 0
    assert (_cronjob(kube, "nightly") or {})["spec"]["suspend"] is True
    (row,) = _listed(capsys)
    assert " paused " in row and "03:00" not in row  # no next run while suspended
    assert main(["schedule", "resume", "nightly"]) == 0
    assert (_cronjob(kube, "nightly") or {})["spec"]["suspend"] is False

    assert main(["schedule", "run-now", "nightly"]) == 0
    assert "started Job nightly-" in capsys.readouterr().out
    kube.wait_for("the Job made from the CronJob", lambda: kube.created_jobs)
    (job,) = kube.created_jobs
    assert job["metadata"]["annotations"] == {"cronjob.kubernetes.io/instantiate": "manual"}
    _validate(job)
    kube.wait_for("the manual run's pod", lambda: any(p.done for p in kube.pods.values()))
    (row,) = _listed(capsys)
    assert " completed " in row and "nightly-20" in row  # its run, found in the shared store by its name
    assert main(["runs", "list", "--schedule", "nightly"]) == 0
    (listed,) = [line for line in capsys.readouterr().out.splitlines() if line.startswith("nightly-")]
    assert "shipped" in listed and "completed" in listed
    assert Client().get_pipeline("shipped").last_run.steps["double"].output.load() == 10

    assert main(["schedule", "delete", "nightly"]) == 0
    out = capsys.readouterr().out
    assert "CronJob/nightly deleted" in out and "ConfigMap/nightly-module deleted" in out
    assert _cronjob(kube, "nightly") is None
    assert not [k for k, o in kube._handler.objects.items() if k[0].plural == "configmaps" and not o.deleted]
    assert main(["schedule", "list"]) == 0 and "no schedules" in capsys.readouterr().out


def test_a_schedules_table_of_an_older_version_gains_the_target_columns(tmp_path: Path) -> None:
    import sqlite3

    from dynpipe.store.schedules import ScheduleRecord, ScheduleStore

    root = tmp_path / "old"
    root.mkdir()
    with sqlite3.connect(root / "metadata.db") as conn:  # the table as the previous version made it
        conn.execute("CREATE TABLE schedules (name TEXT PRIMARY KEY, module TEXT NOT NULL, pipeline TEXT NOT NULL,"
                     " cron TEXT NOT NULL, timezone TEXT NOT NULL, params TEXT NOT NULL, overlap TEXT NOT NULL,"
                     " catchup TEXT NOT NULL, state TEXT NOT NULL, created REAL NOT NULL, resumed REAL NOT NULL)")
        conn.execute("INSERT INTO schedules VALUES ('old', 'm.py', 'p', '@daily', 'UTC', '{}', 'skip', 'none',"
                     " 'active', 1.0, 1.0)")
    store = ScheduleStore(root)
    try:
        assert store.get("old").target == "local" and store.get("old").placement == {}
        store.create(ScheduleRecord("k", "m.py", "p", "@daily", target="kubernetes",
                                    placement={"namespace": "ml", "cronjob": "k"}))
        assert [s.name for s in store.schedules(target="local")] == ["old"]
        assert store.get("k").placement == {"namespace": "ml", "cronjob": "k"}
    finally:
        store.close()
    assert [s.name for s in ScheduleStore(root).schedules()] == ["k", "old"]  # opened again: no second migration
