"""Opt-in: isolated steps on a real cluster (kind, k3d, ...) with an S3-compatible artifact store.

Skipped unless ``DYNPIPE_E2E_KUBECONFIG`` is set; it does not run in CI here. Set:

* ``DYNPIPE_E2E_KUBECONFIG``: the cluster's kubeconfig.
* ``DYNPIPE_E2E_IMAGE``: an image with this dynpipe and s3fs installed (the steps below are
  notebook-style, shipped by value, so the image needs no test code). Its Python major.minor
  must be this interpreter's.
* ``DYNPIPE_E2E_ARTIFACT_STORE``: ``s3://bucket/prefix`` (the bucket must exist); this process
  reaches it with the usual ``AWS_*`` variables.
* ``DYNPIPE_E2E_S3_SECRET``: a Secret in the namespace with keys ``AWS_ACCESS_KEY_ID`` and
  ``AWS_SECRET_ACCESS_KEY`` for the pods; ``DYNPIPE_E2E_S3_ENDPOINT``: the S3 endpoint as the
  pods see it (e.g. ``http://minio.minio.svc:9000``; unset for AWS itself).
* ``DYNPIPE_E2E_NAMESPACE`` (default ``default``): where the Jobs go; apply
  ``dynpipe kubernetes rbac --namespace NS`` there first if your user is restricted.
"""

from __future__ import annotations

import os
import textwrap
from pathlib import Path
from typing import Any

import pytest

KUBECONFIG = os.environ.get("DYNPIPE_E2E_KUBECONFIG")
pytestmark = [
    pytest.mark.skipif(not KUBECONFIG, reason="set DYNPIPE_E2E_KUBECONFIG (and the DYNPIPE_E2E_* variables in"
                       " this module's docstring) to run the real-cluster suite"),
    pytest.mark.timeout(900),
]

CELL = """
from dynpipe import pipeline, step

@step(runtime="isolated", enable_cache=False)
def square_in_cluster(x: int) -> int:
    import socket
    print("running on", socket.gethostname())
    return x * x

@step(runtime="isolated", enable_cache=False)
def fails_in_cluster() -> int:
    raise ValueError("failing on purpose in the cluster")

@pipeline(dynamic=True, settings=SETTINGS)
def e2e_ok() -> None:
    square_in_cluster(12)

@pipeline(dynamic=True, settings=SETTINGS)
def e2e_fail() -> None:
    fails_in_cluster()
"""


def _need(name: str) -> str:
    value = os.environ.get(name)
    if not value:
        pytest.fail(f"DYNPIPE_E2E_KUBECONFIG is set but {name} is not; see tests/e2e_kubernetes/test_e2e.py")
    return value


@pytest.fixture
def cell(monkeypatch: pytest.MonkeyPatch, store_home: Path) -> dict[str, Any]:
    assert KUBECONFIG
    monkeypatch.setenv("KUBECONFIG", KUBECONFIG)
    monkeypatch.setenv("DYNPIPE_ISOLATED_BACKEND", "kubernetes")
    monkeypatch.setenv("DYNPIPE_K8S_IMAGE", _need("DYNPIPE_E2E_IMAGE"))
    monkeypatch.setenv("DYNPIPE_K8S_NAMESPACE", os.environ.get("DYNPIPE_E2E_NAMESPACE") or "default")
    monkeypatch.setenv("DYNPIPE_ARTIFACT_STORE", _need("DYNPIPE_E2E_ARTIFACT_STORE"))
    monkeypatch.delenv("DYNPIPE_K8S_PVC", raising=False)
    secret = _need("DYNPIPE_E2E_S3_SECRET")
    env: dict[str, Any] = {key: {"secret_key_ref": {"name": secret, "key": key}}
                           for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")}
    if os.environ.get("DYNPIPE_E2E_S3_ENDPOINT"):
        env["AWS_ENDPOINT_URL"] = os.environ["DYNPIPE_E2E_S3_ENDPOINT"]
    if os.environ.get("AWS_DEFAULT_REGION"):
        env["AWS_DEFAULT_REGION"] = os.environ["AWS_DEFAULT_REGION"]
    namespace: dict[str, Any] = {"__name__": "__main__",
                                 "SETTINGS": {"kubernetes": {"env": env, "pending_timeout": 300}}}
    exec(textwrap.dedent(CELL), namespace)
    return namespace


def test_an_isolated_step_runs_in_the_cluster(cell: dict[str, Any]) -> None:
    run = cell["e2e_ok"]()
    sr = run.steps["square_in_cluster"]
    assert sr.output.load() == 144
    assert sr.output.uri.startswith(os.environ["DYNPIPE_E2E_ARTIFACT_STORE"].rstrip("/") + "/artifacts/")
    assert sr.logs.startswith("running on ")


def test_a_failing_step_reports_its_error(cell: dict[str, Any]) -> None:
    with pytest.raises(Exception, match="failing on purpose in the cluster"):
        cell["e2e_fail"]()
    from dynpipe import Client

    sr = Client().get_pipeline("e2e_fail").last_run.steps["fails_in_cluster"]
    assert sr.status == "failed" and sr.error_type == "ValueError"
