"""The version check and migration order both backends use when they open a metadata database."""

from __future__ import annotations

from ..errors import StoreError


def check_version(found: int, supported: int, where: str) -> None:
    """Refuse a database made by a newer dynpipe: writing to it could corrupt it."""
    if found > supported:
        raise StoreError(
            f"the metadata database {where} has schema version {found}, newer than the version"
            f" {supported} this dynpipe supports; upgrade dynpipe to use it"
        )


def migration_statements(found: int, supported: int, migrations: dict[int, tuple[str, ...]]) -> list[str]:
    """The statements that take a database at schema version ``found`` to ``supported``, in
    order (none for a new database, ``found == 0``: the schema statements make it whole)."""
    if not found:
        return []
    return [statement for version in range(found, supported) for statement in migrations[version]]
