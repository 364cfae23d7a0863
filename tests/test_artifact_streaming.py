"""Streaming materializers against a real S3 peer (moto's server): big values go into the
bucket and come back through file objects, hashed on the way, never staged as one bytes object.

The store's part size is lowered to S3's minimum (5 MiB) so a 12 MiB array is a real
multipart upload to a temporary key, moved under its content address once hashed.
"""

from __future__ import annotations

import hashlib
import io
from pathlib import Path
from typing import IO, Any

import numpy as np
import pytest
from s3_server import keys, new_bucket, s3_endpoint, s3_env  # noqa: F401 - s3_endpoint is a fixture

from dynpipe.errors import ArtifactIntegrityError
from dynpipe.store.materializers import Materializer, registry
from dynpipe.store.store import Store

pytestmark = pytest.mark.timeout(120)
PART = 5 << 20


@pytest.fixture()
def s3_store(s3_endpoint: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Any:  # noqa: F811
    for name, value in s3_env(s3_endpoint).items():
        monkeypatch.setenv(name, value)
    bucket, client = new_bucket(s3_endpoint)
    store = Store(tmp_path / "home", artifact_store=f"s3://{bucket}/p")
    assert store.files.remote is not None
    monkeypatch.setattr(store.files.remote, "part_bytes", PART)
    return store, bucket, client


class StreamOnly(Materializer):
    """A user's streaming materializer whose whole-bytes form must never be asked for."""

    name = "test-stream-only"
    streams = True
    fail_after: int | None = None

    def save(self, value: Any) -> bytes:
        raise AssertionError("a streaming materializer was asked for the whole bytes")

    def load(self, data: bytes, data_type: str) -> Any:
        # Objects up to the part size are fetched with one GET (no HEAD first); bigger ones stream.
        assert len(data) <= PART, "a big object was handed over as one bytes object"
        return self.load_from(io.BytesIO(data), data_type)

    def save_to(self, value: Any, fh: IO[bytes]) -> None:
        chunk = b"\x07" * (1 << 20)
        for i in range(value):
            if self.fail_after is not None and i == self.fail_after:
                raise RuntimeError("the value broke halfway")
            fh.write(chunk)

    def load_from(self, fh: IO[bytes], data_type: str) -> Any:
        count = 0
        while block := fh.read(1 << 20):
            assert block == b"\x07" * len(block)
            count += len(block)
        return count


def test_a_big_array_is_streamed_into_the_bucket_under_its_content_address(s3_store: Any) -> None:
    store, bucket, client = s3_store
    array = np.arange(800_000, dtype=np.float64)  # 6.4 MB: a multipart upload of 2 parts
    saved = store.save_value(array)
    as_bytes = io.BytesIO()
    np.save(as_bytes, array, allow_pickle=False)
    assert saved.content_hash == hashlib.sha256(as_bytes.getvalue()).hexdigest()  # same address as before
    assert saved.size == len(as_bytes.getvalue())
    assert keys(client, bucket) == {f"p/artifacts/{saved.content_hash[:2]}/{saved.content_hash}"}
    assert client.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []
    back = store.load_value(saved.uri, saved.materializer, saved.data_type, saved.size)
    assert np.array_equal(back, array)
    again = store.save_value(array)  # identical content: kept, the temporary object removed
    assert again.uri == saved.uri and len(keys(client, bucket)) == 1


def test_a_streaming_materializer_writes_and_reads_through_file_objects(s3_store: Any) -> None:
    store, bucket, client = s3_store
    mat = registry.add(StreamOnly)
    saved = store.save_value(7, mat)  # 7 MiB written in 1 MiB pieces
    assert saved.size == 7 << 20
    assert store.load_value(saved.uri, mat.name, saved.data_type, saved.size) == 7 << 20
    small = store.save_value(2, mat)  # under the part size: one PUT, no temporary object, one GET
    assert store.load_value(small.uri, mat.name, small.data_type, small.size) == 2 << 20
    assert not any(".tmp" in k for k in keys(client, bucket))


def test_a_value_that_fails_midway_leaves_nothing_in_the_bucket(s3_store: Any) -> None:
    store, bucket, client = s3_store
    mat = StreamOnly()
    mat.fail_after = 6  # after 6 MiB: the upload has started
    with pytest.raises(RuntimeError, match="broke halfway"):
        store.save_value(8, mat)
    assert keys(client, bucket) == set()
    assert client.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []


def test_a_damaged_big_object_is_refused_when_loaded(s3_store: Any) -> None:
    store, bucket, client = s3_store
    array = np.ones(700_000)  # 5.6 MB: streamed
    saved = store.save_value(array)
    key = f"p/artifacts/{saved.content_hash[:2]}/{saved.content_hash}"
    data = bytearray(client.get_object(Bucket=bucket, Key=key)["Body"].read())
    data[-1] ^= 0xFF  # same size, one byte changed
    client.put_object(Bucket=bucket, Key=key, Body=bytes(data))
    with pytest.raises(ArtifactIntegrityError, match="do not hash to its name"):
        store.load_value(saved.uri, saved.materializer, saved.data_type, saved.size)
    client.put_object(Bucket=bucket, Key=key, Body=bytes(data[:-10]))  # truncated
    with pytest.raises(ArtifactIntegrityError, match="were stored"):
        store.load_value(saved.uri, saved.materializer, saved.data_type, saved.size)


def test_pandas_and_pickled_values_round_trip_through_the_stream(s3_store: Any) -> None:
    pd = pytest.importorskip("pandas")
    store = s3_store[0]
    frame = pd.DataFrame({"a": range(1000), "b": [f"x{i}" for i in range(1000)]})
    weird = pd.DataFrame({1: [1, 2]})  # integer column names: parquet refuses, pickle is used
    for value in (frame, frame["a"], weird, {1, 2, frozenset({3})}):
        saved = store.save_value(value)
        back = store.load_value(saved.uri, saved.materializer, saved.data_type, saved.size)
        if isinstance(value, pd.DataFrame):
            pd.testing.assert_frame_equal(back, value)
        elif isinstance(value, pd.Series):
            pd.testing.assert_series_equal(back, value)
        else:
            assert back == value


def test_a_file_url_store_streams_through_a_temporary_file_moved_into_place(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "shared"
    store = Store(tmp_path / "home", artifact_store=str(folder))
    assert store.files.remote is not None
    monkeypatch.setattr(store.files.remote, "part_bytes", 1 << 20)
    array = np.arange(300_000.0)  # 2.4 MB: past the part size, so streamed
    saved = store.save_value(array)
    assert saved.uri == f"{folder.as_uri()}/artifacts/{saved.content_hash[:2]}/{saved.content_hash}"
    files = [p for p in folder.rglob("*") if p.is_file()]
    assert [p.name for p in files] == [saved.content_hash]
    assert np.array_equal(store.load_value(saved.uri, saved.materializer, saved.data_type, saved.size), array)
    assert np.array_equal(store.load_value(saved.uri, saved.materializer, saved.data_type, None), array)
