"""Two machines, simulated: two processes with their own working folder and ``DYNPIPE_HOME``,
sharing nothing but a real PostgreSQL server (metadata) and moto's S3 server (artifacts).

Machine A (a script standing in for the notebook) runs a pipeline, then waits for machine B's
run to show up in the store. Machine B lists A's runs (``dynpipe runs list`` and ``Client``),
loads A's artifacts (a >4 KiB one and a small one), re-runs A's pipeline (every step a cache
hit from A's outputs) and runs its own pipeline that consumes A's artifacts; A then loads B's
output. Both sides check the objects are really in the bucket and nothing is on their disks.
"""

from __future__ import annotations

import json
import os
import select
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
from backends import PASSWORD, PostgresServer
from s3_server import keys, new_bucket, s3_endpoint, s3_env  # noqa: F401 - s3_endpoint is a fixture

pytestmark = pytest.mark.timeout(240)

# The code both machines have checked out (same source, so the same cache keys).
TEAM_STEPS = '''
from dynpipe import pipeline, step


@step
def make_blob(size: int) -> bytes:
    return bytes(range(256)) * (size // 256)


@step
def make_small(n: int) -> dict:
    return {"n": n, "label": "small"}


@step(runtime="isolated")
def summarize(blob: bytes, small: dict) -> str:
    return f"{len(blob)}:{small['n']}"


@pipeline(dynamic=True)
def team_pipeline(size: int, n: int) -> None:
    blob = make_blob(size, id="blob")
    small = make_small(n, id="small")
    summarize(blob, small, id="summary")
'''

MACHINE_A = '''
import json, sys, time
from dynpipe import Client
from team_steps import team_pipeline

run = team_pipeline(8192, 3)
outputs = {i: (s.output.uri, s.output.content_hash) for i, s in run.steps.items()}
print("A-DONE " + json.dumps({"run": run.name, "status": run.status.value, "outputs": outputs}), flush=True)

deadline = time.monotonic() + 120
while True:
    runs = Client().list_pipeline_runs(pipeline_name="consume")
    if runs and runs[0].status.value not in ("running", "initializing"):
        break
    if time.monotonic() > deadline:
        print("A-TIMEOUT waiting for machine B's run", flush=True)
        sys.exit(3)
    time.sleep(0.1)
b = runs[0]
print("A-SEES " + json.dumps({"run": b.name, "status": b.status.value,
                              "combined": b.steps["combine"].output.load()}), flush=True)
'''

MACHINE_B = '''
import contextlib, io, json
from dynpipe import Client, pipeline, step
from dynpipe.cli import main
from team_steps import team_pipeline


def cli(*args):
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main(list(args))
    return code, out.getvalue()


listed = cli("runs", "list")  # before anything else: B knows A's run only from the store
client = Client()
a = client.get_pipeline("team_pipeline").last_run
blob_a = a.steps["blob"].output
small_a = a.steps["small"].output
blob = blob_a.load()
small = small_a.load()

again = team_pipeline(8192, 3)


@step
def combine(blob: bytes, summary: str) -> str:
    return f"B:{len(blob)}:{summary}"


@pipeline(dynamic=True)
def consume() -> None:
    combine(blob_a, a.steps["summary"].output, id="combine")


mine = consume()
print("B-DONE " + json.dumps({
    "a_run": a.name, "blob_len": len(blob), "blob_ok": blob == bytes(range(256)) * 32, "small": small,
    "again": {i: s.status.value for i, s in again.steps.items()},
    "again_uris": {i: s.output.uri for i, s in again.steps.items()},
    "mine": mine.status.value, "combined": mine.steps["combine"].output.load(),
    "combined_uri": mine.steps["combine"].output.uri,
    "runs_list": listed, "store_info": cli("store", "info"),
}), flush=True)
'''


def _machine(tmp_path: Path, name: str, base_env: dict[str, str]) -> tuple[Path, dict[str, str]]:
    """A working folder with the team's code and a store home of its own."""
    folder = tmp_path / name
    folder.mkdir()
    (folder / "team_steps.py").write_text(TEAM_STEPS)
    env = {**base_env, "DYNPIPE_HOME": str(folder / "home"), "PYTHONPATH": os.pathsep.join(
        [str(folder), os.environ.get("PYTHONPATH", "")])}
    return folder, env


def _read_line(proc: subprocess.Popen[str], prefix: str, deadline_s: float) -> str:
    """The first stdout line starting with ``prefix``, waiting at most ``deadline_s``."""
    import time

    assert proc.stdout is not None
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        ready, _, _ = select.select([proc.stdout], [], [], max(0.0, end - time.monotonic()))
        if not ready:
            break
        line = proc.stdout.readline()
        if not line:
            break
        if line.startswith(prefix):
            return line[len(prefix):].strip()
    proc.kill()
    _, err = proc.communicate(timeout=30)
    raise AssertionError(f"no {prefix!r} line from the process (exit {proc.returncode}): {err[-3000:]}")


def _files_under(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if p.is_file()] if folder.exists() else []


def test_two_machines_share_runs_and_artifacts_through_postgres_and_s3(
    postgres_server: PostgresServer, s3_endpoint: str, tmp_path: Path  # noqa: F811
) -> None:
    bucket, s3 = new_bucket(s3_endpoint)
    store_url = postgres_server.url(postgres_server.new_database())
    base = {k: v for k, v in os.environ.items() if not k.startswith(("DYNPIPE_", "AWS_"))}
    base.update(s3_env(s3_endpoint))
    base.update({
        "DYNPIPE_STORE_URL": store_url, "DYNPIPE_ARTIFACT_STORE": f"s3://{bucket}/team",
        "DYNPIPE_WORKERS": "1", "DYNPIPE_ECHO_LOGS": "false",
    })
    folder_a, env_a = _machine(tmp_path, "machine_a", base)
    folder_b, env_b = _machine(tmp_path, "machine_b", base)
    (folder_a / "machine_a.py").write_text(textwrap.dedent(MACHINE_A))
    (folder_b / "machine_b.py").write_text(textwrap.dedent(MACHINE_B))

    proc_a = subprocess.Popen(
        [sys.executable, "machine_a.py"], cwd=folder_a, env=env_a, text=True,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )
    try:
        a: dict[str, Any] = json.loads(_read_line(proc_a, "A-DONE ", 120))
        assert a["status"] == "completed"

        proc_b = subprocess.run(
            [sys.executable, "machine_b.py"], cwd=folder_b, env=env_b, capture_output=True, text=True, timeout=180
        )
        assert proc_b.returncode == 0, proc_b.stderr[-3000:]
        b = json.loads(next(ln for ln in proc_b.stdout.splitlines() if ln.startswith("B-DONE "))[7:])

        seen = json.loads(_read_line(proc_a, "A-SEES ", 120))
        assert proc_a.wait(timeout=60) == 0
    finally:
        if proc_a.poll() is None:
            proc_a.kill()
            proc_a.communicate(timeout=30)

    # B loaded A's artifacts: an 8 KiB one (over the inline limit) and a small one.
    assert b["a_run"] == a["run"]
    assert b["blob_len"] == 8192 and b["blob_ok"] is True
    assert b["small"] == {"n": 3, "label": "small"}
    # B's run of the same pipeline reused A's outputs (same objects), and its own step consumed them.
    assert b["again"] == {"blob": "cached", "small": "cached", "summary": "cached"}
    assert b["again_uris"] == {i: uri for i, (uri, _) in a["outputs"].items()}
    assert b["mine"] == "completed" and b["combined"] == "B:8192:8192:3"
    # A sees B's run and loads its output.
    assert seen["status"] == "completed" and seen["combined"] == "B:8192:8192:3"

    # Every artifact is an object in the bucket, complete, under its content address.
    in_bucket = keys(s3, bucket)
    for uri, digest in a["outputs"].values():
        assert uri.startswith(f"s3://{bucket}/team/artifacts/"), uri
        key = f"team/artifacts/{digest[:2]}/{digest}"
        assert key in in_bucket
    assert b["combined_uri"].removeprefix(f"s3://{bucket}/") in in_bucket
    blob_digest = a["outputs"]["blob"][1]
    head = s3.head_object(Bucket=bucket, Key=f"team/artifacts/{blob_digest[:2]}/{blob_digest}")
    assert head["ContentLength"] == 8192
    assert not any(".tmp" in k for k in in_bucket)
    # No shared disk was needed: neither machine keeps an artifact file.
    for folder in (folder_a, folder_b):
        assert _files_under(folder / "home" / "artifacts") == []

    # B saw A's run with `dynpipe runs list` before it ran anything itself.
    code, listed = b["runs_list"]
    assert code == 0 and a["run"] in listed and "team_pipeline" in listed and "completed" in listed
    # `dynpipe store info` on machine B names both stores, secrets masked, the bucket reachable.
    code, info = b["store_info"]
    assert code == 0, info
    assert "kind:         postgresql" in info and "***" in info and PASSWORD not in info
    assert f"artifacts:      s3://{bucket}/team" in info and "reachable:    yes" in info
    assert "sup3r-s3cret" not in info
