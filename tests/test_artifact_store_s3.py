"""Artifacts in S3, against a real S3 protocol peer: moto's server on a localhost port,
reached through s3fs with ``AWS_ENDPOINT_URL``. Objects are listed with boto3 to prove they
landed in the bucket; pipelines mix inline and isolated (worker process) steps."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

boto3 = pytest.importorskip("boto3")
pytest.importorskip("s3fs")
moto_server = pytest.importorskip("moto.server")

from dynpipe import Client, pipeline, step  # noqa: E402
from dynpipe.errors import StoreAccessError  # noqa: E402
from dynpipe.store.artifact_store import mask_url, remote_artifacts  # noqa: E402
from dynpipe.store.store import Store  # noqa: E402

pytestmark = pytest.mark.timeout(120)

BUCKET = "team-artifacts"
PREFIX = "proj/dev"
URL = f"s3://{BUCKET}/{PREFIX}"


@pytest.fixture(scope="module")
def moto() -> Iterator[str]:
    import logging

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


@pytest.fixture()
def s3(moto: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Any:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "sup3r-s3cret")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto)
    monkeypatch.setenv("DYNPIPE_ARTIFACT_STORE", URL)
    monkeypatch.setenv("DYNPIPE_WORKERS", "2")
    monkeypatch.setenv("DYNPIPE_ECHO_LOGS", "false")
    client = boto3.client("s3", endpoint_url=moto)
    try:
        client.create_bucket(Bucket=BUCKET)
    except client.exceptions.BucketAlreadyOwnedByYou:
        pass
    for obj in client.list_objects_v2(Bucket=BUCKET).get("Contents", []):
        client.delete_object(Bucket=BUCKET, Key=obj["Key"])
    return client


def _keys(client: Any) -> set[str]:
    return {o["Key"] for o in client.list_objects_v2(Bucket=BUCKET).get("Contents", [])}


@step
def numbers(n: int) -> list[int]:
    return list(range(n))


@step(runtime="isolated")
def square(x: int) -> int:
    return x * x


@step(runtime="isolated")
def blob(size: int) -> bytes:
    return os.urandom(size)


@step
def total(values: list[int]) -> int:
    return sum(values)


@pipeline(dynamic=True)
def fan_out_in_s3(n: int) -> None:
    nums = numbers(n)
    squares = [square(x, id=f"sq{x}") for x in nums.load()]
    total(squares)
    blob(20_000, id="big")


def test_pipeline_outputs_land_in_the_bucket_and_load_through_client(s3: Any) -> None:
    run = fan_out_in_s3(4)
    assert run.status.value == "completed"
    keys = _keys(s3)
    for inv in ("numbers", "sq0", "sq3", "total", "big"):
        art = run.steps[inv].output
        assert art.uri.startswith(URL + "/artifacts/"), art.uri  # small outputs too: no db blob
        assert f"{PREFIX}/artifacts/{art.content_hash[:2]}/{art.content_hash}" in keys
    assert not any(".tmp" in k for k in keys)
    loaded = Client().get_pipeline("fan_out_in_s3").last_run
    assert loaded.steps["total"].output.load() == 0 + 1 + 4 + 9
    assert len(loaded.steps["big"].output.load()) == 20_000

    again = fan_out_in_s3(4)
    assert again.steps["total"].status.value == "cached"
    assert again.steps["sq3"].status.value == "cached"
    assert again.steps["total"].output.load() == 14


def test_a_deleted_object_is_not_a_cache_hit_and_is_rewritten(s3: Any) -> None:
    first = fan_out_in_s3(2)
    art = first.steps["big"].output  # random bytes: no other step has the same content
    key = f"{PREFIX}/artifacts/{art.content_hash[:2]}/{art.content_hash}"
    s3.delete_object(Bucket=BUCKET, Key=key)
    second = fan_out_in_s3(2)
    assert second.steps["total"].status.value == "cached"
    assert second.steps["big"].status.value == "completed"  # recomputed, not served
    new = second.steps["big"].output
    assert f"{PREFIX}/artifacts/{new.content_hash[:2]}/{new.content_hash}" in _keys(s3)
    assert len(new.load()) == 20_000


def test_a_failed_multipart_upload_leaves_no_object_and_fails_the_step(
    s3: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    remote = remote_artifacts(URL)
    monkeypatch.setattr(remote, "part_bytes", 1 << 20)  # 3 MiB output -> 3 parts
    real_call = remote.fs._call_s3
    calls: list[str] = []

    async def flaky(method: str, *args: Any, **kwargs: Any) -> Any:
        calls.append(method)
        if method == "upload_part" and kwargs.get("PartNumber") == 2:
            raise PermissionError("injected: part 2 refused by the backend")
        return await real_call(method, *args, **kwargs)

    monkeypatch.setattr(remote.fs, "_call_s3", flaky)
    payload = os.urandom(3 << 20)

    @step(enable_cache=False)
    def large() -> bytes:
        return payload

    @pipeline(dynamic=True)
    def uploads() -> None:
        large()

    with pytest.raises(StoreAccessError, match=f"{URL}: PermissionError: injected: part 2 refused"):
        uploads()
    step_run = Client().get_pipeline("uploads").last_run.steps["large"]
    assert step_run.status.value == "failed"
    message = step_run.error_message or ""
    assert "part 2 refused by the backend" in message and URL in message  # the backend's reason
    assert step_run.error_type == "StoreAccessError"
    assert "create_multipart_upload" in calls and "abort_multipart_upload" in calls
    assert not any(k.endswith("/" + hashlib.sha256(payload).hexdigest()) for k in _keys(s3))
    assert s3.list_multipart_uploads(Bucket=BUCKET).get("Uploads", []) == []


def test_unreachable_endpoint_names_the_url_not_the_secret(
    s3: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    import socket

    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{port}")
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    with pytest.raises(StoreAccessError) as info:
        Store(tmp_path / "unreachable")
    message = str(info.value)
    assert URL in message and "cannot reach" in message
    assert "sup3r-s3cret" not in message


def test_missing_bucket_is_a_clear_error(s3: Any, tmp_path: Path) -> None:
    with pytest.raises(StoreAccessError, match="s3://no-such-bucket/x does not exist"):
        Store(tmp_path / "nobucket", artifact_store="s3://no-such-bucket/x")


def test_credentials_in_the_url_are_refused_and_masked(s3: Any, tmp_path: Path) -> None:
    with pytest.raises(StoreAccessError) as info:
        Store(tmp_path / "creds", artifact_store=f"s3://AKIAX:sup3r-s3cret@{BUCKET}/p")
    assert "sup3r-s3cret" not in str(info.value) and "s3://***@" in str(info.value)
    assert mask_url("s3://u:p@b/x?sig=abc&region=eu") == "s3://***@b/x?sig=***&region=eu"


def test_a_missing_backend_package_names_the_extra(tmp_path: Path) -> None:
    try:
        import gcsfs  # noqa: F401
    except ImportError:
        with pytest.raises(StoreAccessError, match=r"gcsfs.*dynpipe\[gcs\]"):
            Store(tmp_path / "gcs", artifact_store="gs://bucket/prefix")
    else:
        pytest.skip("gcsfs is installed here")


def test_a_damaged_object_is_refused_on_load(s3: Any) -> None:
    run = fan_out_in_s3(1)
    art = run.steps["big"].output
    key = f"{PREFIX}/artifacts/{art.content_hash[:2]}/{art.content_hash}"
    s3.put_object(Bucket=BUCKET, Key=key, Body=b"x" * 20_000)  # same size, other content
    with pytest.raises(Exception, match="do not hash to its name"):
        Client().get_artifact_version(art.id).load()
