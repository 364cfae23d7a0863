"""The version check both backends make when they open a metadata database."""

from __future__ import annotations

from ..errors import StoreError


def check_version(found: int, supported: int, where: str) -> None:
    """Refuse a database made by a newer dynpipe: writing to it could corrupt it."""
    if found > supported:
        raise StoreError(
            f"the metadata database {where} has schema version {found}, newer than the version"
            f" {supported} this dynpipe supports; upgrade dynpipe to use it"
        )
