"""Content-addressed artifacts: files written durably and atomically, checked when read,
and small values kept in the metadata database.

Creating a file costs 0.05-0.5 ms on ext4 (inode, directory entry, rename), more than the
whole rest of a trivial step's bookkeeping; an artifact of at most ``inline_limit`` bytes
is therefore stored as a row of the ``blobs`` table (same content addressing, uri
``db:<sha256>``), committed before the step that made it is recorded.

A file's name is its sha256, so content is checked against its address: ``put`` rewrites a
file whose content differs (a truncated file is never kept), ``get`` re-hashes files up to
``DYNPIPE_VERIFY_HASH_MAX_BYTES`` (default 64 MiB, ~1.2 GB/s) and checks the size of bigger
ones when the caller knows it, ``verify`` is the cheap check for a cache hit.
"""

from __future__ import annotations

import errno
import hashlib
import os
import sqlite3
from pathlib import Path
from typing import TYPE_CHECKING

from .. import settings
from ..errors import ArtifactIntegrityError, StoreAccessError, StoreError, StoreFullError, UnsafeStoreError
from .location import FILE_MODE, current_uid, make_private_dir, user_name

if TYPE_CHECKING:
    from .metadata import MetadataStore

DB_PREFIX = "db:"
_FULL_ERRNOS = frozenset({errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)})
_ACCESS_ERRNOS = frozenset({errno.EACCES, errno.EPERM, errno.EROFS})
_OPEN_WRITE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)
_OPEN_READ = os.O_RDONLY | getattr(os, "O_CLOEXEC", 0)


def _read_all(fd: int, size: int) -> bytes:
    """``size`` bytes of a regular file, usually in one ``read`` (fewer if it is shorter)."""
    data = os.read(fd, size)
    if len(data) == size or not data:
        return data
    parts = [data]
    got = len(data)
    while got < size:
        chunk = os.read(fd, size - got)
        if not chunk:
            break
        parts.append(chunk)
        got += len(chunk)
    return b"".join(parts)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


class ArtifactFiles:
    """Files under ``<root>/artifacts/<2 hex>/<sha256>``; identical content is stored once."""

    def __init__(self, root: Path, blobs: MetadataStore | None = None, trust_foreign: bool = False) -> None:
        self.root = root / "artifacts"
        make_private_dir(self.root)
        self._store_root = str(root)
        self._root_str = str(self.root)
        self._made_dirs: set[str] = set()
        self.blobs = blobs
        self._uid = None if trust_foreign else current_uid()
        self.hash_limit = settings.verify_hash_max_bytes()

    # -- writing ------------------------------------------------------------------
    def put(self, data: bytes) -> tuple[str, str]:
        """Store ``data`` as a file; return (uri relative to the store root, content hash)."""
        digest = hashlib.sha256(data).hexdigest()
        sub = digest[:2]
        rel = f"artifacts/{sub}/{digest}"
        folder = f"{self._root_str}/{sub}"
        path = f"{folder}/{digest}"
        if self._holds(path, data):
            return rel, digest
        tmp = f"{folder}/.tmp-{os.urandom(8).hex()}"
        try:
            if sub not in self._made_dirs:
                make_private_dir(Path(folder))
                self._made_dirs.add(sub)
            fd = os.open(tmp, _OPEN_WRITE, FILE_MODE)
            try:
                _write_all(fd, data)
                os.fsync(fd)  # the bytes are on disk before the name points at them
            finally:
                os.close(fd)
            os.replace(tmp, path)
            dfd = os.open(folder, _OPEN_READ)
            try:
                os.fsync(dfd)  # ...and the rename survives a power loss
            finally:
                os.close(dfd)
        except BaseException as exc:
            try:
                os.unlink(tmp)
            except OSError:
                pass
            if isinstance(exc, OSError) and not isinstance(exc, StoreError):
                mapped = self._os_error(exc, len(data))
                if mapped is not exc:
                    raise mapped from exc
            raise
        return rel, digest

    def _holds(self, path: str, data: bytes) -> bool:
        """True if ``path`` already has exactly ``data`` and is ours (else it gets rewritten)."""
        try:
            fd = os.open(path, _OPEN_READ)
        except OSError:
            return False
        try:
            st = os.fstat(fd)
            if st.st_size != len(data) or (self._uid is not None and st.st_uid != self._uid):
                return False
            return _read_all(fd, st.st_size) == data
        finally:
            os.close(fd)

    def _os_error(self, exc: OSError, size: int) -> Exception:
        if exc.errno in _FULL_ERRNOS:
            return StoreFullError(
                f"no space left on device: cannot write a {size}-byte artifact to the dynpipe store"
                f" {self._store_root}; nothing was kept under a final name. Free space there (or set"
                " DYNPIPE_HOME to a store on a bigger disk) and run the step again."
            )
        if exc.errno in _ACCESS_ERRNOS:
            return StoreAccessError(
                f"cannot write an artifact to the dynpipe store {self._store_root}: {exc.strerror}"
                f" ({exc.filename or self._root_str})"
            )
        return exc

    def put_small(self, data: bytes) -> tuple[str, str]:
        """Store ``data`` in the database (committed on return); same result shape as ``put``."""
        assert self.blobs is not None
        digest = hashlib.sha256(data).hexdigest()
        try:
            self.blobs.put_blob(digest, data)
        except sqlite3.OperationalError as exc:
            if "full" in str(exc):
                raise self._os_error(OSError(errno.ENOSPC, str(exc)), len(data)) from exc
            raise
        return DB_PREFIX + digest, digest

    # -- reading ------------------------------------------------------------------
    def _path(self, uri: str) -> str:
        if not uri.startswith("artifacts/") or "/.." in uri:
            raise ArtifactIntegrityError(f"artifact uri {uri!r} does not point into the store {self._store_root}")
        return f"{self._store_root}/{uri}"

    def get(self, uri: str, expected_size: int | None = None) -> bytes:
        """The artifact's bytes, checked: owner, size (if known) and sha256 (up to ``hash_limit``)."""
        if uri.startswith(DB_PREFIX):
            data = self.blobs.get_blob(uri[len(DB_PREFIX):]) if self.blobs is not None else None
            if data is None:
                raise FileNotFoundError(f"artifact {uri} is missing from the store's database")
            return data
        path = self._path(uri)
        try:
            fd = os.open(path, _OPEN_READ)
        except FileNotFoundError:
            raise FileNotFoundError(
                f"artifact file {path} is missing from the store; it was deleted outside dynpipe"
            ) from None
        try:
            st = os.fstat(fd)
            if self._uid is not None and st.st_uid != self._uid:
                raise UnsafeStoreError(
                    f"refusing to load artifact file {path}: it is owned by {user_name(st.st_uid)},"
                    f" not by you; set DYNPIPE_SAFE_STORE={self._store_root} if you trust that user"
                )
            if expected_size is not None and st.st_size != expected_size:
                raise self._corrupt(path, f"it has {st.st_size} bytes, {expected_size} were stored")
            data = _read_all(fd, st.st_size)
        finally:
            os.close(fd)
        if len(data) <= self.hash_limit:
            digest = uri.rpartition("/")[2]
            if hashlib.sha256(data).hexdigest() != digest:
                raise self._corrupt(path, f"its {len(data)} bytes do not hash to its name")
        return data

    def _corrupt(self, path: str, why: str) -> ArtifactIntegrityError:
        return ArtifactIntegrityError(
            f"artifact file {path} is damaged: {why} (truncated or changed outside dynpipe)."
            " Run the step that made it again with the cache off to rewrite it."
        )

    def verify(self, uri: str, expected_size: int, expected_hash: str, full: bool = False) -> bool:
        """True if the artifact is there, ours, ``expected_size`` long and addressed by ``expected_hash``.

        The cheap form (one ``stat``) is meant for a cache hit, so that a truncated or deleted
        file is not a hit; ``full=True`` also re-hashes the content.
        """
        if uri.rpartition(":" if uri.startswith(DB_PREFIX) else "/")[2] != expected_hash:
            return False
        if uri.startswith(DB_PREFIX):
            data = self.blobs.get_blob(expected_hash) if self.blobs is not None else None
            return (
                data is not None
                and len(data) == expected_size
                and hashlib.sha256(data).hexdigest() == expected_hash  # at most a few KB
            )
        try:
            path = self._path(uri)
            st = os.stat(path)
        except (OSError, ArtifactIntegrityError):
            return False
        if st.st_size != expected_size or (self._uid is not None and st.st_uid != self._uid):
            return False
        if not full:
            return True
        hasher = hashlib.sha256()
        try:
            with open(path, "rb", buffering=0) as fh:
                while chunk := fh.read(1 << 20):
                    hasher.update(chunk)
        except OSError:
            return False
        return hasher.hexdigest() == expected_hash

    def exists(self, uri: str) -> bool:
        if uri.startswith(DB_PREFIX):
            return self.blobs is not None and self.blobs.has_blob(uri[len(DB_PREFIX):])
        return os.path.exists(f"{self._store_root}/{uri}")
