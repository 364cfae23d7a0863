"""``dynpipe store info``: which metadata database and artifact folder this process would use."""

from __future__ import annotations

import argparse
from typing import Any

from .store.store import open_store


def cmd_store_info(args: argparse.Namespace) -> int:
    """Print the metadata URL (password masked), its schema version and the artifact folder."""
    store = open_store()
    print(f"metadata:       {store.metadata.location()}")
    print(f"schema version: {store.metadata.schema_version()}")
    print(f"artifacts:      {store.files.root}")
    return 0


def register(sub: Any) -> None:
    """Add the ``store`` command group to the CLI's subparsers."""
    store = sub.add_parser("store", help="the store in use").add_subparsers(dest="st_command", required=True)
    p = store.add_parser("info", help="metadata URL (password masked), schema version, artifact folder")
    p.set_defaults(func=cmd_store_info)
