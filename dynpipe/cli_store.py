"""``dynpipe store info``: which metadata database and artifact store this process would use."""

from __future__ import annotations

import argparse
from typing import Any

from . import project_config
from .errors import StoreAccessError
from .store.store import open_store


def _unreachable_artifacts(exc: StoreAccessError) -> int:
    """The store did not open because its artifact store did not answer: say what is configured
    (from the settings alone, secrets masked) and why it failed, and exit non-zero."""
    from .settings import store_home
    from .store.artifact_store import mask_url
    from .store.store import resolve_artifact_url
    from .store.urls import mask_password

    url = project_config.store_url()
    artifacts = resolve_artifact_url(project_config.artifact_store_url()) or "?"
    home = store_home()
    print(f"metadata:       {mask_password(url) if url else (home / 'metadata.db' if home else '?')}")
    print(f"artifacts:      {mask_url(artifacts)}")
    print(f"  kind:         {artifacts.partition('://')[0]}")
    print(f"  reachable:    no: {exc}")
    return 1


def cmd_store_info(args: argparse.Namespace) -> int:
    """Print the metadata URL (password masked), its kind and schema version, and the artifact
    store (secrets masked), its kind and whether it answers."""
    try:
        store = open_store()
    except StoreAccessError as exc:
        if "artifact store" not in str(exc):
            raise
        return _unreachable_artifacts(exc)
    info = store.describe()
    print(f"metadata:       {info['metadata']}")
    print(f"  kind:         {info['metadata_kind']}")
    print(f"schema version: {store.metadata.schema_version()}")
    print(f"artifacts:      {info['artifacts']}")
    print(f"  kind:         {info['artifacts_kind']}")
    print(f"  reachable:    {info['artifacts_reachable']}")
    return 0 if info["artifacts_reachable"] == "yes" else 1


def register(sub: Any) -> None:
    """Add the ``store`` command group to the CLI's subparsers."""
    store = sub.add_parser("store", help="the store in use").add_subparsers(dest="st_command", required=True)
    p = store.add_parser("info", help="metadata and artifact store in use (secrets masked), schema version")
    p.set_defaults(func=cmd_store_info)
