"""Which metadata backend a store uses: ``DYNPIPE_STORE_URL``, else ``metadata.db`` in the store folder.

``postgresql://`` (or ``postgres://``) URLs open the PostgreSQL backend (psycopg 3, the
``postgres`` extra); ``sqlite:///path`` or a plain path opens a SQLite file elsewhere.
"""

from __future__ import annotations

from pathlib import Path

from .backend import MetadataBackend
from .urls import is_postgres_url


def sqlite_path(url: str | None, root: Path) -> Path:
    if url is None:
        return root / "metadata.db"
    if url.startswith("sqlite://"):
        rest = url[len("sqlite://") :]
        return Path("/" + rest.lstrip("/")) if rest.startswith("/") else Path(rest).expanduser()
    return Path(url).expanduser()


def open_metadata(root: Path, url: str | None) -> MetadataBackend:
    """The metadata backend for store ``root`` and ``DYNPIPE_STORE_URL`` value ``url``."""
    if url is not None and is_postgres_url(url):
        from .postgres import PostgresMetadata  # psycopg is imported only when asked for

        return PostgresMetadata(url)
    from .metadata import MetadataStore

    return MetadataStore(sqlite_path(url, root))
