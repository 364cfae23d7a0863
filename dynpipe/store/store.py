"""The embedded store: SQLite metadata plus content-addressed artifact files."""

from __future__ import annotations

import errno
import functools
import os
import sqlite3
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .. import settings
from ..errors import StoreAccessError, StoreError
from .artifacts import ArtifactFiles
from .location import (
    check_store_owner,
    describe_access_problem,
    find_store_root,
    make_private_dir,
    make_private_file,
)
from .materializers import Materializer, qualified_type_name, registry
from .metadata import MetadataStore


@dataclass(frozen=True)
class SavedArtifact:
    """An artifact written to disk but not yet recorded (travels from workers to the orchestrator)."""

    id: str
    uri: str
    content_hash: str
    data_type: str
    materializer: str
    size: int
    metadata: dict[str, Any] | None = None
    tags: tuple[str, ...] = ()


class Store:
    """One store root: ``metadata.db`` and ``artifacts/``."""

    def __init__(self, root: Path) -> None:
        self.root = root
        trusted = check_store_owner(root)
        db = root / "metadata.db"
        try:
            make_private_dir(root)
            for path in (db, root / "metadata.db-wal", root / "metadata.db-shm"):
                if path is db or path.exists():
                    make_private_file(path)  # SQLite gives -wal/-shm the database file's mode
                    if not os.access(path, os.W_OK):  # SQLite would open it, then fail on a write
                        raise PermissionError(errno.EACCES, "read-only", str(path))
            if not os.access(root, os.W_OK | os.X_OK):
                raise PermissionError(errno.EACCES, "read-only", str(root))
            self.metadata = MetadataStore(db)
            self.files = ArtifactFiles(root, blobs=self.metadata, trust_foreign=trusted)
        except StoreError:
            raise
        except (OSError, sqlite3.Error) as exc:
            raise StoreAccessError(describe_access_problem(root, db, exc)) from exc
        self.inline_limit = settings.inline_artifact_bytes()

    def save_value(self, value: Any, materializer: Materializer | None = None) -> SavedArtifact:
        mat = materializer or registry.for_value(value)
        data = mat.save(value)
        if len(data) <= self.inline_limit:
            uri, digest = self.files.put_small(data)
        else:
            uri, digest = self.files.put(data)
        return SavedArtifact(
            id=uuid.uuid4().hex,
            uri=uri,
            content_hash=digest,
            data_type=qualified_type_name(value),
            materializer=mat.name,
            size=len(data),
        )

    def load_value(self, uri: str, materializer: str, data_type: str, size: int | None = None) -> Any:
        """Read and deserialize an artifact; its bytes are checked first (see ``ArtifactFiles.get``)."""
        return registry.by_name(materializer).load(self.files.get(uri, size), data_type)

    def verify(self, uri: str, size: int, content_hash: str, full: bool = False) -> bool:
        """Cheap check that a stored artifact is intact (for a cache hit); see ``ArtifactFiles.verify``."""
        return self.files.verify(uri, size, content_hash, full=full)


@functools.lru_cache(maxsize=16)
def _open(root: str) -> Store:
    return Store(Path(root))


# Stores already opened by the exact absolute ``root`` string passed in: every step attempt calls
# open_store(task.store_root), and resolving the path (an lstat per component) cost more
# than the rest of the lookup.
_by_given_root: dict[str, Store] = {}


def open_store(root: str | Path | None = None) -> Store:
    """The store at ``root`` (default: found by ``find_store_root``); one instance per root per process."""
    if root is None:
        return _open(str(find_store_root()))
    key = str(root)
    store = _by_given_root.get(key)
    if store is None:
        store = _open(str(Path(root).expanduser().resolve()))
        if key.startswith("/") and len(_by_given_root) < 64:  # relative paths depend on the cwd
            _by_given_root[key] = store
    return store
