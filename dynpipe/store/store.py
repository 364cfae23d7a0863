"""The embedded store: SQLite metadata plus content-addressed artifact files."""

from __future__ import annotations

import functools
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .. import settings
from .artifacts import ArtifactFiles, inline_limit_from_env
from .backend import MetadataBackend
from .location import find_store_root
from .materializers import Materializer, qualified_type_name, registry
from .metadata_url import open_metadata


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
    """One store root: ``metadata.db`` (or the database of ``DYNPIPE_STORE_URL``) and ``artifacts/``."""

    def __init__(self, root: Path, store_url: str | None = None) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        self.store_url = store_url
        self.metadata: MetadataBackend = open_metadata(root, store_url)
        self.files = ArtifactFiles(root, blobs=self.metadata)  # type: ignore[arg-type]
        self.inline_limit = inline_limit_from_env()

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

    def load_value(self, uri: str, materializer: str, data_type: str) -> Any:
        return registry.by_name(materializer).load(self.files.get(uri), data_type)


@functools.lru_cache(maxsize=16)
def _open(root: str, store_url: str | None) -> Store:
    return Store(Path(root), store_url)


# Stores already opened by the exact absolute ``root`` string passed in: every step attempt calls
# open_store(task.store_root), and resolving the path (an lstat per component) cost more
# than the rest of the lookup.
_by_given_root: dict[str, Store] = {}


def open_store(root: str | Path | None = None) -> Store:
    """The store at ``root`` (default: located as DESIGN §3 says); one instance per root per process."""
    url = settings.store_url()
    if root is None:
        return _open(str(find_store_root()), url)
    key = str(root)
    store = _by_given_root.get(key)
    if store is None or store.store_url != url:
        store = _open(str(Path(root).expanduser().resolve()), url)
        if key.startswith("/") and len(_by_given_root) < 64:  # relative paths depend on the cwd
            _by_given_root[key] = store
    return store
