"""One metadata writer per run, and artifact stores given as a local path or ``file://``.

Isolated steps run in real worker processes; what they may open is checked from inside them.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from dynpipe import Client, pipeline, step
from dynpipe.errors import ConfigError
from dynpipe.project_config import artifact_store_url, load_project_config

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(autouse=True)
def two_workers(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("DYNPIPE_WORKERS", "2")
    monkeypatch.setenv("DYNPIPE_ECHO_LOGS", "false")
    yield


@step(runtime="isolated", enable_cache=False)
def small_in_worker(x: int) -> int:
    return x + 1


@step(runtime="isolated", enable_cache=False)
def databases_open_here(previous: int) -> list[str]:
    """The metadata files this worker process holds open (there must be none)."""
    return [f.path for f in psutil.Process().open_files() if "metadata.db" in os.path.basename(f.path)]


@pipeline(dynamic=True)
def worker_chain() -> None:
    databases_open_here(small_in_worker(small_in_worker(1, id="first"), id="second"))


def test_workers_never_open_the_metadata_database_and_small_outputs_still_land_there() -> None:
    run = worker_chain()
    assert run.status.value == "completed"
    assert run.steps["databases_open_here"].output.load() == []
    first = run.steps["first"].output
    assert first.uri.startswith("db:")  # recorded by the orchestrator from the result's bytes
    assert Client().get_artifact_version(first.id).load() == 2
    assert run.steps["second"].output.load() == 3  # a db: input shipped to the worker


@step(enable_cache=False)
def inline_big(n: int) -> bytes:
    return b"z" * n


@pipeline(dynamic=True)
def to_a_folder() -> None:
    small_in_worker(inline_big(10_000).load().count(b"z") // 10_000)
    inline_big(5)


@pytest.mark.parametrize("as_url", [False, True])
def test_a_local_artifact_folder_by_path_or_file_url(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, as_url: bool
) -> None:
    folder = tmp_path / "shared-artifacts"
    monkeypatch.setenv("DYNPIPE_ARTIFACT_STORE", folder.as_uri() if as_url else str(folder))
    run = to_a_folder()
    assert run.status.value == "completed"
    art = run.steps["inline_big"].output
    assert art.uri == f"{folder.as_uri()}/artifacts/{art.content_hash[:2]}/{art.content_hash}"
    assert (folder / "artifacts" / art.content_hash[:2] / art.content_hash).stat().st_size == 10_000
    assert run.steps["small_in_worker"].output.uri.startswith(folder.as_uri())  # small ones too
    assert not list(folder.rglob(".tmp-*"))
    assert Client().get_artifact_version(art.id).load() == b"z" * 10_000


def test_project_config_from_dynpipe_yaml_and_pyproject(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DYNPIPE_ARTIFACT_STORE", raising=False)
    (tmp_path / "pyproject.toml").write_text('[tool.dynpipe]\nartifact-store = "s3://from-pyproject/p"\n')
    assert artifact_store_url(tmp_path) == "s3://from-pyproject/p"
    (tmp_path / "dynpipe.yaml").write_text("artifact_store: s3://from-yaml/p\nstore_url: postgresql://db/x\n")
    assert load_project_config(tmp_path).store_url == "postgresql://db/x"
    assert artifact_store_url(tmp_path) == "s3://from-yaml/p"  # dynpipe.yaml wins over pyproject
    monkeypatch.setenv("DYNPIPE_ARTIFACT_STORE", "s3://from-env/p")
    assert artifact_store_url(tmp_path) == "s3://from-env/p"  # the environment wins over files


def test_a_bad_project_config_names_the_file_and_key(tmp_path: Path) -> None:
    (tmp_path / "dynpipe.yaml").write_text("artifact_stor: s3://typo/p\n")
    with pytest.raises(ConfigError, match=r"dynpipe\.yaml: artifact_stor: Extra inputs"):
        load_project_config(tmp_path)
    (tmp_path / "dynpipe.yaml").write_text("- a list\n")
    with pytest.raises(ConfigError, match="dynpipe.yaml: the dynpipe project config must be a mapping"):
        load_project_config(tmp_path)
    (tmp_path / "dynpipe.yaml").unlink()
    (tmp_path / "pyproject.toml").write_text("[tool.dynpipe]\nartifact_store = 3\n")
    with pytest.raises(ConfigError, match=r"pyproject\.toml \[tool\.dynpipe\]: artifact_store"):
        load_project_config(tmp_path)


def test_store_describe_names_where_metadata_and_artifacts_live(tmp_path: Path) -> None:
    from dynpipe.store.store import Store

    folder = tmp_path / "arts"
    info = Store(tmp_path / "s1", artifact_store=str(folder)).describe()
    assert info["metadata"] == str(tmp_path / "s1" / "metadata.db") and info["metadata_kind"] == "sqlite"
    assert info["artifacts"] == folder.as_uri() and info["artifacts_reachable"] == "yes"
    assert info["artifacts_kind"].startswith("file (fsspec")
    default = Store(tmp_path / "s2").describe()
    assert default["artifacts"] == str(tmp_path / "s2" / "artifacts")
    assert default["artifacts_kind"] == "local folder (the store's own)"
