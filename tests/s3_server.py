"""A real S3 protocol peer for tests that span processes: moto's server on a localhost port.

``s3_endpoint`` is one server per test session (cheap to share: every test uses its own
bucket); ``s3_env`` is the environment a child process needs to reach it (test credentials,
``AWS_ENDPOINT_URL``), so no test depends on the machine's AWS configuration.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterator
from typing import Any

import pytest


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    moto_server = pytest.importorskip("moto.server")
    pytest.importorskip("s3fs")
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


def s3_env(endpoint: str) -> dict[str, str]:
    return {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "sup3r-s3cret",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ENDPOINT_URL": endpoint,
    }


def new_bucket(endpoint: str) -> tuple[str, Any]:
    """A fresh, empty bucket and a boto3 client to look inside it."""
    boto3 = pytest.importorskip("boto3")
    env = s3_env(endpoint)
    client = boto3.client(
        "s3", endpoint_url=endpoint, region_name=env["AWS_DEFAULT_REGION"],
        aws_access_key_id=env["AWS_ACCESS_KEY_ID"], aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
    )
    name = "b-" + uuid.uuid4().hex[:12]
    client.create_bucket(Bucket=name)
    return name, client


def keys(client: Any, bucket: str) -> set[str]:
    return {o["Key"] for o in client.list_objects_v2(Bucket=bucket).get("Contents", [])}
