"""``dynpipe store info``: the metadata store and the artifact store in use, secrets masked,
and whether the artifact store answers (the PostgreSQL + S3 case is in test_two_machines.py)."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from dynpipe.cli import main


def test_the_default_store_is_sqlite_and_the_stores_own_folder(
    store_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["store", "info"]) == 0
    out = capsys.readouterr().out
    assert f"metadata:       {store_home / 'metadata.db'}" in out
    assert "kind:         sqlite" in out
    assert f"artifacts:      {store_home / 'artifacts'}" in out
    assert "kind:         local folder (the store's own)" in out
    assert "reachable:    yes" in out


def test_an_unreachable_artifact_store_is_shown_as_such_with_its_secrets_masked(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("s3fs")
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "sup3r-s3cret")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{port}")
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    monkeypatch.setenv("DYNPIPE_ARTIFACT_STORE", "s3://nowhere/p?X-Amz-Signature=abc123")
    assert main(["store", "info"]) == 1
    out = capsys.readouterr().out
    assert "artifacts:      s3://nowhere/p?X-Amz-Signature=***" in out
    assert "kind:         s3" in out
    assert "reachable:    no: " in out and "s3://nowhere/p" in out
    assert "abc123" not in out and "sup3r-s3cret" not in out
