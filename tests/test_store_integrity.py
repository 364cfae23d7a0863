"""Artifact integrity: content is checked against its address on the way in and out, files are
durable before they get their name, and a full disk gives a clear error and leaves the store usable."""

from __future__ import annotations

import errno
import hashlib
import os
import shutil
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from dynpipe import Client, pipeline, step
from dynpipe.errors import ArtifactIntegrityError, SettingError, StoreFullError
from dynpipe.store.artifacts import ArtifactFiles
from dynpipe.store.metadata import MetadataStore
from dynpipe.store.store import Store

SIZE = 100_000


def _artifact_file(store_home: Path) -> Path:
    files = [p for p in (store_home / "artifacts").rglob("*") if p.is_file()]
    assert len(files) == 1, files
    return files[0]


# -- on the way out, and on the way in ----------------------------------------------------------------
@pytest.mark.parametrize("check", ["sha256", "size-only"])
def test_a_truncated_artifact_is_not_served_and_a_recompute_rewrites_it(
    store_home: Path, monkeypatch: pytest.MonkeyPatch, check: str
) -> None:
    if check == "size-only":  # files above the hash limit: the recorded size is compared
        monkeypatch.setenv("DYNPIPE_VERIFY_HASH_MAX_BYTES", "5")

    @step
    def blob() -> bytes:
        return b"\x01" * SIZE

    @pipeline(dynamic=True, enable_cache=False)
    def produce() -> None:
        blob()

    @step
    def length(data: bytes) -> int:
        return len(data)

    def consume_run() -> None:
        @pipeline(dynamic=True, enable_cache=False)
        def consume() -> None:
            length(art)

        consume()

    produce()
    path = _artifact_file(store_home)
    with open(path, "r+b") as fh:
        fh.truncate(10)
    art = Client().get_pipeline("produce").last_run.steps["blob"].output
    with pytest.raises(ArtifactIntegrityError, match=rf"{path} is damaged"):
        art.load()
    with pytest.raises(RuntimeError, match=rf"cannot load input 'data'.*{path} is damaged"):
        consume_run()
    produce()  # cache off: the same content is written again...
    assert path.stat().st_size == SIZE  # ...and the truncated file is replaced, not kept
    assert Client().get_pipeline("produce").last_run.steps["blob"].output.load() == b"\x01" * SIZE
    assert art.load() == b"\x01" * SIZE


def test_put_replaces_a_file_whose_content_does_not_match_its_address(tmp_path: Path) -> None:
    files = ArtifactFiles(tmp_path)
    data = os.urandom(SIZE)
    uri, digest = files.put(data)
    path = tmp_path / uri
    path.write_bytes(b"\x00" * SIZE)  # same size, other content
    assert files.put(data) == (uri, digest)
    assert path.read_bytes() == data
    path.write_bytes(data[:10])
    files.put(data)
    assert path.read_bytes() == data
    assert [p.name for p in path.parent.iterdir()] == [digest]  # no temporary files left


def test_load_checks_the_hash_and_above_the_hash_limit_the_size(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    files = ArtifactFiles(tmp_path)
    data = os.urandom(SIZE)
    uri, _ = files.put(data)
    path = tmp_path / uri
    path.write_bytes(b"\x00" * SIZE)  # same size: only the hash can tell
    with pytest.raises(ArtifactIntegrityError, match="do not hash to its name"):
        files.get(uri)
    monkeypatch.setenv("DYNPIPE_VERIFY_HASH_MAX_BYTES", "5")
    big = ArtifactFiles(tmp_path)  # files above 5 bytes: size check only
    assert big.get(uri) == b"\x00" * SIZE
    path.write_bytes(data[:10])
    assert big.get(uri) == data[:10]  # no size known, nothing to compare with
    with pytest.raises(ArtifactIntegrityError, match=f"it has 10 bytes, {SIZE} were stored"):
        big.get(uri, expected_size=SIZE)
    with pytest.raises(ArtifactIntegrityError, match=f"it has 10 bytes, {SIZE} were stored"):
        Store(tmp_path).load_value(uri, "bytes", "builtins.bytes", size=SIZE)


def test_a_cache_hit_on_a_damaged_artifact_recomputes_and_repairs_it(store_home: Path) -> None:
    calls: list[int] = []

    @step  # cache on
    def blob() -> bytes:
        calls.append(1)
        return b"\x02" * SIZE

    @pipeline(dynamic=True)
    def cached_produce() -> None:
        blob()

    cached_produce()
    cached_produce()
    assert len(calls) == 1  # the second run was a cache hit
    path = _artifact_file(store_home)
    with open(path, "r+b") as fh:
        fh.truncate(10)
    run = cached_produce()
    assert len(calls) == 2, "a truncated artifact was served by a cache hit"
    assert run.steps["blob"].status.value == "completed"
    assert path.stat().st_size == SIZE  # repaired under its address
    assert run.steps["blob"].output.load() == b"\x02" * SIZE
    assert cached_produce().steps["blob"].status.value == "cached"  # and a hit again


def test_verify_is_the_cache_hit_check(tmp_path: Path) -> None:
    files = ArtifactFiles(tmp_path, blobs=MetadataStore(tmp_path / "metadata.db"))
    data = os.urandom(SIZE)
    uri, digest = files.put(data)
    assert files.verify(uri, SIZE, digest)
    assert files.verify(uri, SIZE, digest, full=True)
    assert not files.verify(uri, SIZE + 1, digest)
    assert not files.verify(uri, SIZE, hashlib.sha256(b"other").hexdigest())
    (tmp_path / uri).write_bytes(b"\x00" * SIZE)
    assert files.verify(uri, SIZE, digest)  # the cheap form is one stat
    assert not files.verify(uri, SIZE, digest, full=True)
    (tmp_path / uri).write_bytes(data[:10])
    assert not files.verify(uri, SIZE, digest)
    (tmp_path / uri).unlink()
    assert not files.verify(uri, SIZE, digest)
    small_uri, small_digest = files.put_small(b"tiny")
    assert files.verify(small_uri, 4, small_digest)
    assert not files.verify(small_uri, 5, small_digest)
    assert not files.verify("db:" + digest, SIZE, digest)  # no such blob
    assert not files.verify("artifacts/../../etc/passwd", SIZE, "passwd")


def test_files_are_fsynced_before_the_rename_and_the_folder_after(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    events: list[str] = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd: int) -> None:
        events.append("fsync-dir" if stat.S_ISDIR(os.fstat(fd).st_mode) else "fsync-file")
        real_fsync(fd)

    def replace(src: str, dst: str) -> None:
        events.append("rename")
        real_replace(src, dst)

    files = ArtifactFiles(tmp_path)
    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    files.put(os.urandom(SIZE))
    assert events == ["fsync-file", "rename", "fsync-dir"]


# -- a full disk ----------------------------------------------------------------------------------
@pytest.fixture
def tiny_disk(tmp_path: Path) -> Iterator[Path]:
    """A real 1 MiB tmpfs (root can mount one); skipped where mounting is not allowed."""
    mount = tmp_path / "tiny"
    mount.mkdir()
    proc = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount)],
        capture_output=True, text=True, timeout=30, check=False,
    )
    if proc.returncode != 0 or shutil.which("umount") is None:
        pytest.skip(f"cannot mount a tmpfs here: {proc.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], timeout=30, check=False)


def _assert_no_partial_files(store: Path) -> None:
    for path in (store / "artifacts").rglob("*"):
        assert not path.name.startswith(".tmp-"), path
        if path.is_file():
            assert hashlib.sha256(path.read_bytes()).hexdigest() == path.name, path


@pytest.mark.parametrize("runtime", ["inline", "isolated"])
def test_a_full_disk_says_so_and_leaves_the_store_usable(
    tiny_disk: Path, monkeypatch: pytest.MonkeyPatch, runtime: str
) -> None:
    store = tiny_disk / "store"
    monkeypatch.setenv("DYNPIPE_HOME", str(store))

    @step(runtime=runtime, enable_cache=False)
    def huge() -> bytes:
        return os.urandom(2 << 20)

    @step(runtime=runtime, enable_cache=False)
    def small() -> int:
        return 41

    @pipeline(dynamic=True, enable_cache=False)
    def fills(big: bool) -> None:
        huge() if big else small()

    with pytest.raises(Exception) as info:
        fills(True)
    assert "no space left on device" in str(info.value) and str(store) in str(info.value)
    step_run = Client(store).get_pipeline("fills").last_run.steps["huge"]
    assert step_run.status.value == "failed"
    assert step_run.error_type == "StoreFullError", step_run.error_type
    _assert_no_partial_files(store)
    fills(False)
    assert Client(store).get_pipeline("fills").last_run.steps["small"].output.load() == 41


def test_a_full_disk_under_the_metadata_database_says_so_and_never_hangs(
    tiny_disk: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SQLite's "database or disk is full" becomes an error naming the database and saying
    "no space left on device"; the run ends (pytest-timeout would catch a hang)."""
    store = tiny_disk / "store"
    monkeypatch.setenv("DYNPIPE_HOME", str(store))

    @step(enable_cache=False)
    def note(text: str) -> int:
        return len(text)

    @pipeline(dynamic=True, enable_cache=False)
    def fill() -> None:
        for i in range(40):  # each step records its 100 KB parameter: 4 MB into a 1 MiB disk
            note(f"{i}" + "x" * 100_000)

    with pytest.raises(Exception) as info:
        fill()
    chain = []
    exc: BaseException | None = info.value
    while exc is not None:
        chain.append(str(exc))
        exc = exc.__cause__ or exc.__context__
    text = "\n".join(chain)
    assert "no space left on device" in text and str(store / "metadata.db") in text, text
    runs = Client().list_pipeline_runs(pipeline_name="fill")  # still readable: the last committed state
    assert len(runs) == 1 and runs[0].steps, "the run and the steps recorded before the disk filled are kept"


def test_a_full_disk_during_the_write_is_reported_injected(
    store_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Same as above where a tmpfs cannot be mounted: the write fails with ENOSPC halfway."""
    files = Store(store_home).files
    real_write = os.write
    calls = {"n": 0}

    def write(fd: int, data: bytes) -> int:
        calls["n"] += 1
        if calls["n"] > 1:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_write(fd, bytes(data)[:1000])

    with monkeypatch.context() as m, pytest.raises(StoreFullError, match=f"no space left on device.*{store_home}"):
        m.setattr(os, "write", write)
        files.put(os.urandom(SIZE))
    assert [p for p in (store_home / "artifacts").rglob("*") if p.is_file()] == []
    uri, _ = files.put(b"y" * SIZE)
    assert files.get(uri) == b"y" * SIZE


def test_a_bad_hash_limit_names_the_variable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DYNPIPE_VERIFY_HASH_MAX_BYTES", "64MB")
    with pytest.raises(SettingError, match="DYNPIPE_VERIFY_HASH_MAX_BYTES='64MB' is not a whole number"):
        ArtifactFiles(tmp_path)
