"""The embedded store: SQLite metadata plus content-addressed artifacts.

Two views of one store. ``Store`` (the orchestrator: the one metadata writer of a run) and
``Artifacts`` (what a step attempt needs: read inputs, write outputs). A worker process only
ever opens ``Artifacts``, never the metadata database: an output small enough for the
database travels back in its ``SavedArtifact.inline`` bytes and the orchestrator writes them
in the same transaction that records the step (``StepOutcome.blobs``).
"""

from __future__ import annotations

import errno
import functools
import hashlib
import os
import sqlite3
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .. import project_config, settings
from ..errors import ArtifactIntegrityError, StoreAccessError, StoreError
from .artifacts import DB_PREFIX, ArtifactFiles
from .backend import MetadataBackend
from .forks import watch_forks
from .ids import IdMaker
from .location import (
    check_store_owner,
    describe_access_problem,
    find_store_root,
    make_private_dir,
    make_private_file,
)
from .materializers import Materializer, qualified_type_name, registry
from .metadata_url import open_metadata, sqlite_path
from .urls import is_postgres_url

if TYPE_CHECKING:  # artifact_store (fsspec stores) is imported only when a URL is configured
    from .artifact_store import RemoteArtifacts


@dataclass(slots=True)  # not frozen: one per step output, and a frozen init costs ~2x (never changed)
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
    inline: bytes | None = None  # a small output's bytes, recorded by the orchestrator (``db:`` uri)


def resolve_artifact_url(location: str | None) -> str | None:
    """``None`` for the default (the store's own ``artifacts/``), else a URL fsspec can open."""
    if not location:
        return None
    from .artifact_store import is_url

    if is_url(location):
        return location.rstrip("/")
    return Path(location).expanduser().resolve().as_uri()


def _remote(url: str | None) -> RemoteArtifacts | None:
    if not url:
        return None
    from .artifact_store import remote_artifacts

    return remote_artifacts(url)


class Artifacts:
    """Read inputs and write outputs of step attempts; never touches the metadata database
    unless the orchestrator's ``Store`` lends its blobs (inline steps read ``db:`` inputs)."""

    def __init__(self, files: ArtifactFiles, inline_limit: int) -> None:
        self.files = files
        self.inline_limit = inline_limit
        self._ids = IdMaker()

    def save_output(self, value: Any, materializer: Materializer | None = None) -> SavedArtifact:
        """Materialize ``value``: to the remote store if there is one, else a file if big,
        else bytes carried back in the result for the orchestrator to record."""
        mat = materializer or registry.for_value(value)
        remote = self.files.remote
        inline: bytes | None = None
        if remote is not None and mat.streams:  # straight into the store: no full copy in memory
            uri, digest, size = remote.put_streamed(lambda fh: mat.save_to(value, fh))
        else:
            data = mat.save(value)
            size = len(data)
            if remote is not None:
                uri, digest = remote.put(data)
            elif size <= self.inline_limit:
                digest = hashlib.sha256(data).hexdigest()
                uri, inline = DB_PREFIX + digest, data
            else:
                uri, digest = self.files.put(data)
        return SavedArtifact(
            id=self._ids.new(),
            uri=uri,
            content_hash=digest,
            data_type=sys.intern(qualified_type_name(value)),  # one string per type, not per step
            materializer=mat.name,
            size=size,
            inline=inline,
        )

    def load_value(
        self, uri: str, materializer: str, data_type: str, size: int | None = None, data: bytes | None = None
    ) -> Any:
        """Read (or take the shipped ``data``), check and deserialize an artifact."""
        if data is None:
            return _load(self.files, uri, materializer, data_type, size)
        if hashlib.sha256(data).hexdigest() != uri.rpartition(":")[2]:
            raise ArtifactIntegrityError(f"artifact {uri} arrived damaged: its bytes do not hash to its name")
        return registry.by_name(materializer).load(data, data_type)


def _load(files: ArtifactFiles, uri: str, materializer: str, data_type: str, size: int | None) -> Any:
    """Deserialize a stored artifact; a streaming materializer reads a remote object directly."""
    mat = registry.by_name(materializer)
    if mat.streams and "://" in uri:
        remote = files._remote_for(uri)
        if size is None or size > remote.part_bytes:  # small: one GET, no HEAD before it
            with remote.open_checked(uri, size) as fh:
                return mat.load_from(fh, data_type)
    return mat.load(files.get(uri, size), data_type)


class Store:
    """One store root: ``metadata.db`` (or the database of ``DYNPIPE_STORE_URL``) and ``artifacts/``."""

    def __init__(self, root: Path, store_url: str | None = None, artifact_store: str | None = None) -> None:
        self.root = root
        self.store_url = store_url
        self.forked = False  # a forked child's copy: its steps open their own artifacts
        watch_forks(self)  # (set by a fork hook, not a getpid call per step)
        self.artifact_url = resolve_artifact_url(artifact_store or project_config.artifact_store_url())
        trusted = check_store_owner(root)
        db = None if store_url is not None and is_postgres_url(store_url) else sqlite_path(store_url, root)
        try:
            make_private_dir(root)
            if db is not None:
                db.parent.mkdir(parents=True, exist_ok=True)
                for path in (db, db.with_name(db.name + "-wal"), db.with_name(db.name + "-shm")):
                    if path is db or path.exists():
                        make_private_file(path)  # SQLite gives -wal/-shm the database file's mode
                        if not os.access(path, os.W_OK):  # SQLite would open it, then fail on a write
                            raise PermissionError(errno.EACCES, "read-only", str(path))
            if not os.access(root, os.W_OK | os.X_OK):
                raise PermissionError(errno.EACCES, "read-only", str(root))
            self.metadata: MetadataBackend = open_metadata(root, store_url)
            remote = _remote(self.artifact_url)
            self.files = ArtifactFiles(root, blobs=self.metadata, trust_foreign=trusted, remote=remote)
        except StoreError:
            raise
        except (OSError, sqlite3.Error) as exc:
            raise StoreAccessError(describe_access_problem(root, db or root, exc)) from exc
        if remote is not None:
            remote.check()  # a wrong URL, endpoint or credentials fail before any step runs
        self.inline_limit = settings.inline_artifact_bytes()
        self.artifacts = Artifacts(self.files, self.inline_limit)

    def after_fork(self) -> None:
        self.forked = True

    def save_value(self, value: Any, materializer: Materializer | None = None) -> SavedArtifact:
        """Materialize and record-ready: a small value is committed to the database at once."""
        saved = self.artifacts.save_output(value, materializer)
        if saved.inline is not None:
            self.files.put_small(saved.inline)
        return saved

    def load_value(self, uri: str, materializer: str, data_type: str, size: int | None = None) -> Any:
        """Read and deserialize an artifact; its bytes are checked first (see ``ArtifactFiles.get``)."""
        return _load(self.files, uri, materializer, data_type, size)

    def describe(self) -> dict[str, str]:
        """Where and in what this store keeps things, secrets masked, and whether the artifact
        store answers now (for ``dynpipe store info``: one round trip, never on a hot path)."""
        from .artifact_store import mask_url
        from .urls import mask_password

        remote = self.files.remote
        if remote is None:
            kind, reachable = "local folder (the store's own)", "yes"
        else:
            kind = f"{remote.url.partition('://')[0]} (fsspec {type(remote.fs).__name__})"
            try:
                remote.check()
                reachable = "yes"
            except StoreError as exc:
                reachable = f"no: {exc}"
        postgres = self.store_url is not None and is_postgres_url(self.store_url)
        return {
            "metadata": mask_password(self.store_url) if self.store_url else str(self.root / "metadata.db"),
            "metadata_kind": "postgresql" if postgres else "sqlite",
            "artifacts": mask_url(self.artifact_url) if self.artifact_url else str(self.root / "artifacts"),
            "artifacts_kind": kind,
            "artifacts_reachable": reachable,
        }

    def verify(self, uri: str, size: int, content_hash: str, full: bool = False) -> bool:
        """Cheap check that a stored artifact is intact (for a cache hit); see ``ArtifactFiles.verify``."""
        return self.files.verify(uri, size, content_hash, full=full)


@functools.lru_cache(maxsize=16)
def _open(root: str, store_url: str | None) -> Store:
    store = Store(Path(root), store_url)
    _by_given_root.setdefault(root, store)  # so open_artifacts finds it for inline steps
    return store


# Stores already opened by the exact absolute ``root`` string passed in: every step attempt calls
# open_store(task.store_root), and resolving the path (an lstat per component) cost more
# than the rest of the lookup.
_by_given_root: dict[str, Store] = {}


@functools.lru_cache(maxsize=16)
def _open_artifacts(root: str, artifact_store: str | None, pid: int) -> Artifacts:
    """Keyed by the strings as given: resolving the root and reading the project config happen
    once per process, not once per step attempt."""
    url = resolve_artifact_url(project_config.artifact_store_url() if artifact_store is None else artifact_store)
    path = Path(root).expanduser().resolve()
    trusted = check_store_owner(path)
    files = ArtifactFiles(path, blobs=None, trust_foreign=trusted, remote=_remote(url))
    return Artifacts(files, settings.inline_artifact_bytes())


def open_artifacts(root: str, artifact_store: str | None = None) -> Artifacts:
    """The artifact side of the store at ``root``, for a step attempt.

    ``artifact_store`` is the run's artifact store URL ("" for the store's own folder; None:
    find it from the environment and project config). In the orchestrator's process (inline
    steps) this is the open ``Store``'s own, which can read ``db:`` inputs; in a worker it is
    opened without the metadata database.
    """
    store = _by_given_root.get(root)
    if (
        store is not None
        and not store.forked
        and (artifact_store is None or (artifact_store or None) == store.artifact_url)
    ):
        return store.artifacts
    return _open_artifacts(root, artifact_store, os.getpid())


def open_store(root: str | Path | None = None) -> Store:
    """The store at ``root`` (default: found by ``find_store_root``) with the metadata of
    ``DYNPIPE_STORE_URL``; one instance per (root, URL) per process."""
    url = project_config.store_url()
    if root is None:
        return _open(str(find_store_root()), url)
    key = str(root)
    store = _by_given_root.get(key)
    if store is None or store.store_url != url:
        store = _open(str(Path(root).expanduser().resolve()), url)
        if key.startswith("/") and len(_by_given_root) < 64:  # relative paths depend on the cwd
            _by_given_root[key] = store
    return store
