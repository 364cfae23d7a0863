"""``dynpipe kubernetes gc`` sweeps task and report objects under ``k8s-tasks/``: in the artifact
store (moto's S3 server) and in the store root (the shared-volume transport), next to the Jobs
it lists through the API server (kmock)."""

from __future__ import annotations

import argparse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("s3fs")
pytest.importorskip("moto.server")

from kube_fixture import KubeCluster, cluster
from test_artifact_store_s3 import BUCKET, URL, moto, s3  # noqa: F401 - the moto fixtures, used by name

from dynpipe import pipeline, step
from dynpipe.cli_kubernetes import cmd_gc
from dynpipe.engine.context import current_run
from dynpipe.runtimes.k8s.sweep import MAX_AGE
from dynpipe.runtimes.k8s.transport import object_key, run_of

pytestmark = pytest.mark.timeout(120)
PREFIX = URL.partition(BUCKET + "/")[2]


@pytest.fixture
def kube() -> Iterator[KubeCluster]:
    yield from cluster()


@step
def tiny() -> int:
    return 1


def _keys(client: Any) -> set[str]:
    found = client.list_objects_v2(Bucket=BUCKET, Prefix=f"{PREFIX}/k8s-tasks/").get("Contents", [])
    return {o["Key"].rsplit("/", 1)[-1] for o in found}


def test_object_keys_name_their_run() -> None:
    key = object_key("0123456789abcdef0123456789abcdef", "dynpipe-train-fedcba98-a1")
    assert run_of(f"{key}.task") == run_of(f"{key}.result") == "0123456789abcdef0123456789abcdef"
    assert run_of("dynpipe-train-fedcba98-a1-0a1b2c3d.task") is None  # named before run ids were


def test_gc_sweeps_task_objects_of_runs_no_longer_alive(
    kube: KubeCluster, s3: Any, store_home: Path, capsys: pytest.CaptureFixture[str]  # noqa: F811
) -> None:
    @pipeline(dynamic=True)
    def finished() -> None:
        tiny()

    ended = finished().id
    unknown = "f" * 32  # a run of another store sharing the bucket, maybe still running
    job = "dynpipe-tiny-0123abcd-a1"
    names: dict[str, list[str]] = {}
    after: list[tuple[int, set[str], list[str]]] = []

    def gc(**options: Any) -> int:
        args = argparse.Namespace(namespace="pipelines", dry_run=False, max_age=MAX_AGE)
        vars(args).update(options)
        return cmd_gc(args, apis=kube.apis())

    @pipeline(dynamic=True)
    def alive() -> None:
        ctx = current_run()
        assert ctx is not None
        for run in (ctx.run_id, ended, unknown):
            key = object_key(run, job)
            names[run] = [f"{key}.task", f"{key}.result"]
        names["legacy"] = [f"{job}-0a1b2c3d.task"]
        for name in sum(names.values(), []):
            s3.put_object(Bucket=BUCKET, Key=f"{PREFIX}/k8s-tasks/{name}", Body=b"task")
        local = store_home / "k8s-tasks"  # the shared-volume transport's folder
        local.mkdir(parents=True, exist_ok=True)
        (local / names[ended][0]).write_bytes(b"task")
        (local / names[ctx.run_id][0]).write_bytes(b"task")
        everything = _keys(s3)
        after.append((gc(dry_run=True), _keys(s3), sorted(p.name for p in local.iterdir())))
        assert after[-1][1] == everything  # a dry run deletes nothing
        after.append((gc(), _keys(s3), sorted(p.name for p in local.iterdir())))
        after.append((gc(max_age=0.0), _keys(s3), sorted(p.name for p in local.iterdir())))

    run = alive()
    mine = run.id
    (dry_rc, _, dry_local), (rc, left, left_local), (old_rc, old_left, _) = after
    assert (dry_rc, rc, old_rc) == (0, 0, 0)
    assert sorted(dry_local) == sorted([names[ended][0], names[mine][0]])
    # The ended run's task and report are gone from the bucket and the store root; the live
    # run's and the unknown run's (young) objects stay.
    assert left == {*names[mine], *names[unknown], *names["legacy"]}
    assert left_local == [names[mine][0]]
    # Past the age limit, objects of runs not alive here go too; the live run's never do.
    assert old_left == set(names[mine])
    out = capsys.readouterr().out
    assert f"would delete {URL}/k8s-tasks/{names[ended][0]} (run {ended} has ended)" in out
    assert f"deleting {URL}/k8s-tasks/{names[ended][1]} (run {ended} has ended)" in out
    assert f"deleting {URL}/k8s-tasks/{names['legacy'][0]} (older than 0s, no run id in its name)" in out
    assert "no orphaned dynpipe Jobs in namespace pipelines" in out
