"""Artifacts in a remote (or any fsspec) store: ``s3://bucket/prefix``, ``gs://...``, ``az://...``.

Same content addressing as the local files (``<url>/artifacts/<2 hex>/<sha256>``), and the
artifact's uri is the full URL, so a worker anywhere can read it and an artifact stays
loadable after the project moves to another store. A write never leaves a half-written object
under its final key: S3 gets one PUT (atomic) or a multipart upload that is aborted on failure;
other backends get a temporary key that is moved into place. Reads check size and sha256.

Streaming materializers (numpy, pandas, pickles) write through ``put_streamed``: bytes are
hashed as they come and kept in memory up to ``part_bytes``; past that they go straight into
an upload to a temporary key (S3: a multipart upload, aborted on failure), moved under the
content address once the hash is known. ``open_checked`` hands a reader the object's file
object and checks size and hash when it is done, so a big array is never in memory twice.

The filesystem libraries (s3fs, gcsfs, adlfs) are optional extras, imported only when a URL
needs them; credentials come from their usual sources and never pass through dynpipe.
"""

from __future__ import annotations

import functools
import hashlib
import os
import re
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import IO, Any

from .. import settings
from ..errors import ArtifactIntegrityError, StoreAccessError

# protocol -> (package, dynpipe extra)
_EXTRAS: dict[str, tuple[str, str]] = {
    "s3": ("s3fs", "s3"), "s3a": ("s3fs", "s3"),
    "gs": ("gcsfs", "gcs"), "gcs": ("gcsfs", "gcs"),
    "az": ("adlfs", "azure"), "abfs": ("adlfs", "azure"), "abfss": ("adlfs", "azure"),
}
_USERINFO = re.compile(r"^([a-zA-Z][a-zA-Z0-9+.-]*://)([^/@]*)@")
_CHECK_BEFORE_PUT_BYTES = 1 << 20
_SECRET_QUERY = re.compile(r"(?i)([?&][^=&]*(?:secret|token|key|sig|password)[^=&]*=)[^&]*")


def is_url(location: str) -> bool:
    """True for ``scheme://...`` (not a Windows drive letter)."""
    head, sep, _ = location.partition("://")
    return bool(sep) and len(head) > 1


def mask_url(url: str) -> str:
    """``url`` fit to print: user info and secret-looking query values replaced by ``***``."""
    masked = _USERINFO.sub(lambda m: f"{m.group(1)}***@", url)
    return _SECRET_QUERY.sub(lambda m: f"{m.group(1)}***", masked)


def _check_url(url: str) -> None:
    if _USERINFO.match(url):
        raise StoreAccessError(
            f"the artifact store URL {mask_url(url)} carries credentials; dynpipe never stores them."
            " Remove them from DYNPIPE_ARTIFACT_STORE and use the backend's usual sources"
            " (AWS_ACCESS_KEY_ID/AWS_PROFILE, GOOGLE_APPLICATION_CREDENTIALS, AZURE_STORAGE_*)"
        )


def _filesystem(url: str) -> tuple[Any, str]:
    import fsspec

    protocol = url.partition("://")[0].lower()
    try:
        fs, path = fsspec.core.url_to_fs(url, skip_instance_cache=True)
    except ImportError as exc:
        package, extra = _EXTRAS.get(protocol, (protocol, protocol))
        raise StoreAccessError(
            f"the artifact store {mask_url(url)} needs the {package} package, which is not installed:"
            f" pip install 'dynpipe[{extra}]' (or pip install {package})"
        ) from exc
    except ValueError as exc:  # unknown protocol
        raise StoreAccessError(f"the artifact store {mask_url(url)} is not a URL fsspec can open: {exc}") from exc
    return fs, path.rstrip("/")


class RemoteArtifacts:
    """One artifact store URL; ``put``/``get``/``verify``/``exists`` like the local files."""

    def __init__(self, url: str) -> None:
        _check_url(url)
        self.url = url.rstrip("/")
        self.masked = mask_url(self.url)
        self.fs, self.base = _filesystem(self.url)
        self._is_s3 = "s3" in _protocols(self.fs)
        self.hash_limit = settings.verify_hash_max_bytes()
        self.part_bytes = 50 << 20  # S3: one PUT below twice this, else parts of this size

    # -- addressing -----------------------------------------------------------------
    def _key(self, uri: str) -> str:
        prefix = self.url + "/artifacts/"
        rest = uri[len(prefix):] if uri.startswith(prefix) else ""
        sub, _, digest = rest.partition("/")
        if len(sub) != 2 or not re.fullmatch(r"[0-9a-f]{64}", digest) or not digest.startswith(sub):
            raise ArtifactIntegrityError(f"artifact uri {mask_url(uri)} does not point into the store {self.masked}")
        return f"{self.base}/artifacts/{sub}/{digest}"

    def uri_for(self, digest: str) -> str:
        return f"{self.url}/artifacts/{digest[:2]}/{digest}"

    def _fail(self, what: str, exc: BaseException) -> StoreAccessError:
        reason = f"{type(exc).__name__}: {exc}".replace(self.url, self.masked)
        return StoreAccessError(f"cannot {what} the artifact store {self.masked}: {reason}")

    # -- checks ---------------------------------------------------------------------------
    def check(self) -> None:
        """One round trip so a wrong URL, endpoint or credentials fail when the store is opened."""
        try:
            if self._is_s3:
                bucket = self.base.split("/", 1)[0]
                self.fs.ls(bucket, refresh=True)
            else:
                self.fs.makedirs(f"{self.base}/artifacts", exist_ok=True)
        except FileNotFoundError as exc:
            raise StoreAccessError(f"the artifact store {self.masked} does not exist ({exc})") from exc
        except Exception as exc:
            raise self._fail("reach", exc) from exc

    # -- writing ----------------------------------------------------------------------------
    def put(self, data: bytes) -> tuple[str, str]:
        """Store ``data``; return (its full URL, content hash). Existing identical content is kept."""
        digest = hashlib.sha256(data).hexdigest()
        uri = self.uri_for(digest)
        key = self._key(uri)
        try:
            # Content-addressed: rewriting identical bytes is harmless, so only an object worth
            # not uploading twice costs a HEAD first (a round trip per small output saved).
            if len(data) > _CHECK_BEFORE_PUT_BYTES and self._size_of(key) == len(data):
                return uri, digest
            if self._is_s3:
                self._put_s3(key, data)
            else:
                self._put_via_temporary(key, data)
        except (StoreAccessError, ArtifactIntegrityError):
            raise
        except Exception as exc:
            raise self._fail(f"write a {len(data)}-byte artifact to", exc) from exc
        return uri, digest

    def _size_of(self, key: str) -> int | None:
        """The object's size, asked of the backend (never a listing cache another process
        may have made stale); on S3 one HEAD, not s3fs's HEAD-then-list for a missing key."""
        try:
            if self._is_s3:
                bucket, _, name = key.partition("/")
                return int(self.fs.call_s3("head_object", Bucket=bucket, Key=name)["ContentLength"])
            return int(self.fs.info(key)["size"])
        except FileNotFoundError:
            return None

    def _put_s3(self, key: str, data: bytes) -> None:
        """One PutObject below 100 MB (all or nothing); above, s3fs uploads parts of the same
        buffer (no second copy of the object) and aborts the multipart upload if any part fails,
        so the object never appears under its key half-written."""
        self.fs.pipe_file(key, data, chunksize=self.part_bytes)

    def _put_via_temporary(self, key: str, data: bytes) -> None:
        folder = key.rpartition("/")[0]
        tmp = f"{folder}/.tmp-{uuid.uuid4().hex}"
        try:
            self.fs.makedirs(folder, exist_ok=True)
            self.fs.pipe_file(tmp, data)
            self.fs.mv(tmp, key)
        except BaseException:
            try:
                self.fs.rm_file(tmp)
            except Exception:  # noqa: BLE001 - best effort; the final key was never written
                pass
            raise

    def put_streamed(self, write: Callable[[IO[bytes]], None]) -> tuple[str, str, int]:
        """Store what ``write`` writes into the file object it is given; (full URL, hash, size)."""
        sink = _SpoolingSink(self)
        try:
            write(sink)  # type: ignore[arg-type]  # a write-only file object
            if sink.upload is None:
                data = bytes(sink.buffer)
                sink.buffer = bytearray()
                uri, digest = self.put(data)
                return uri, digest, len(data)
            sink.uploading(lambda: sink.upload.close())  # completes the upload under the temporary key
        except BaseException:
            sink.abort()
            raise
        digest = sink.hasher.hexdigest()
        uri = self.uri_for(digest)
        key = self._key(uri)
        try:
            if self._size_of(key) == sink.size:  # the same content is there already
                self.fs.rm_file(sink.tmp)
            else:
                if not self._is_s3:  # S3 has no folders; a file system needs the parent
                    self.fs.makedirs(key.rpartition("/")[0], exist_ok=True)
                self.fs.mv(sink.tmp, key)
        except Exception as exc:
            sink.abort()
            raise self._fail(f"write a {sink.size}-byte artifact to", exc) from exc
        return uri, digest, sink.size

    # -- reading ------------------------------------------------------------------------------
    def get(self, uri: str, expected_size: int | None = None) -> bytes:
        """The artifact's bytes, checked: size (if known) and sha256 (up to ``hash_limit``)."""
        key = self._key(uri)
        try:
            data = self.fs.cat_file(key)
        except FileNotFoundError:
            raise FileNotFoundError(
                f"artifact {mask_url(uri)} is missing from the artifact store; it was deleted outside dynpipe"
            ) from None
        except Exception as exc:
            raise self._fail(f"read {mask_url(uri)} from", exc) from exc
        if expected_size is not None and len(data) != expected_size:
            raise self._corrupt(uri, f"it has {len(data)} bytes, {expected_size} were stored")
        if len(data) <= self.hash_limit and hashlib.sha256(data).hexdigest() != uri.rpartition("/")[2]:
            raise self._corrupt(uri, f"its {len(data)} bytes do not hash to its name")
        return data

    @contextmanager
    def open_checked(self, uri: str, expected_size: int | None = None) -> Iterator[IO[bytes]]:
        """The object as a file object to read from; size and sha256 (up to ``hash_limit``) are
        checked once the caller is done, and explain a failure to deserialize damaged bytes."""
        key = self._key(uri)
        try:
            fh = self.fs.open(key, "rb", block_size=self.part_bytes if self._is_s3 else None)
        except FileNotFoundError:
            raise FileNotFoundError(
                f"artifact {mask_url(uri)} is missing from the artifact store; it was deleted outside dynpipe"
            ) from None
        except Exception as exc:
            raise self._fail(f"read {mask_url(uri)} from", exc) from exc
        with fh:
            size = int(fh.size)
            if expected_size is not None and size != expected_size:
                raise self._corrupt(uri, f"it has {size} bytes, {expected_size} were stored")
            reader = _HashingReader(fh, hashed=size <= self.hash_limit)
            try:
                yield reader  # type: ignore[misc]  # a read-only file object
            except Exception as exc:
                why = reader.damage(uri)
                if why is not None:
                    raise self._corrupt(uri, why) from exc
                raise
            why = reader.damage(uri)
            if why is not None:
                raise self._corrupt(uri, why)

    def _corrupt(self, uri: str, why: str) -> ArtifactIntegrityError:
        return ArtifactIntegrityError(
            f"artifact {mask_url(uri)} is damaged: {why} (truncated or changed outside dynpipe)."
            " Run the step that made it again with the cache off to rewrite it."
        )

    def verify(self, uri: str, expected_size: int, expected_hash: str, full: bool = False) -> bool:
        """True if the object is there with ``expected_size`` bytes (and, if ``full``, the hash)."""
        if uri.rpartition("/")[2] != expected_hash:
            return False
        try:
            key = self._key(uri)
            if self._size_of(key) != expected_size:
                return False
            if not full:
                return True
            hasher = hashlib.sha256()
            with self.fs.open(key, "rb") as fh:
                while chunk := fh.read(1 << 20):
                    hasher.update(chunk)
        except (OSError, ArtifactIntegrityError):
            return False
        return hasher.hexdigest() == expected_hash

    def exists(self, uri: str) -> bool:
        try:
            return self._size_of(self._key(uri)) is not None
        except (OSError, ArtifactIntegrityError):
            return False


class _SpoolingSink:
    """A write-only file object: hashes and counts what is written, keeps it in memory up to the
    store's ``part_bytes``, then streams it into an upload to a temporary key."""

    def __init__(self, store: RemoteArtifacts) -> None:
        self.store = store
        self.hasher = hashlib.sha256()
        self.size = 0
        self.buffer = bytearray()
        self.upload: Any = None
        self.tmp = f"{store.base}/artifacts/.tmp-{uuid.uuid4().hex}"

    def write(self, data: Any) -> int:
        view = memoryview(data).cast("B")
        self.hasher.update(view)
        self.size += len(view)
        if self.upload is None:
            if len(self.buffer) + len(view) <= self.store.part_bytes:
                self.buffer += view
                return len(view)
            self.upload = self.uploading(lambda: self.store.fs.open(self.tmp, "wb", block_size=self.store.part_bytes))
            self.uploading(lambda: self.upload.write(self.buffer))
            self.buffer = bytearray()
        self.uploading(lambda: self.upload.write(view))
        return len(view)

    def uploading(self, action: Callable[[], Any]) -> Any:
        """``action()``; a failure of the backend is a StoreAccessError naming the store and why."""
        try:
            return action()
        except (StoreAccessError, ArtifactIntegrityError):
            raise
        except Exception as exc:
            raise self.store._fail(f"write a {self.size}-byte artifact to", exc) from exc

    def tell(self) -> int:
        return self.size

    def flush(self) -> None:
        """Nothing to do: bytes leave in parts of the store's part size."""

    def abort(self) -> None:
        """Nothing stays under the temporary key (S3: the multipart upload is aborted)."""
        self.buffer = bytearray()
        if self.upload is None:
            return
        try:
            discard = getattr(self.upload, "discard", None)
            if discard is not None and not self.upload.closed:
                discard()
            elif not self.upload.closed:
                self.upload.close()
            if self.store.fs.exists(self.tmp):
                self.store.fs.rm_file(self.tmp)
        except Exception:  # noqa: BLE001 - best effort; the final key was never written
            pass


class _HashingReader:
    """A read-only file object over an open object that hashes what passes through it."""

    def __init__(self, fh: Any, hashed: bool) -> None:
        self.fh = fh
        self.hasher = hashlib.sha256() if hashed else None
        self.size = int(fh.size)
        self.got = 0

    def read(self, n: int = -1) -> bytes:
        data: bytes = self.fh.read(n)
        self.got += len(data)
        if self.hasher is not None:
            self.hasher.update(data)
        return data

    def readinto(self, buffer: Any) -> int:
        data = self.read(len(memoryview(buffer)))
        memoryview(buffer)[: len(data)] = data
        return len(data)

    def readline(self, limit: int = -1) -> bytes:
        data: bytes = self.fh.readline(limit)
        self.got += len(data)
        if self.hasher is not None:
            self.hasher.update(data)
        return data

    def damage(self, uri: str) -> str | None:
        """Why the object does not match its address, after reading the rest; None if intact."""
        try:
            while self.read(1 << 20):
                pass
        except OSError as exc:
            return f"reading it failed ({exc})"
        if self.got != self.size:
            return f"{self.got} bytes could be read, {self.size} were stored"
        if self.hasher is not None and self.hasher.hexdigest() != uri.rpartition("/")[2]:
            return f"its {self.size} bytes do not hash to its name"
        return None


def _protocols(fs: Any) -> tuple[str, ...]:
    proto = fs.protocol
    return (proto,) if isinstance(proto, str) else tuple(proto)


@functools.lru_cache(maxsize=8)
def _cached(url: str, endpoint: str | None, pid: int) -> RemoteArtifacts:
    return RemoteArtifacts(url)


def remote_artifacts(url: str) -> RemoteArtifacts:
    """One client per URL per process (a worker reuses its connection pool across steps).

    Keyed by the endpoint setting and the process id too: a forked worker must not share the
    parent's connections, and a changed ``AWS_ENDPOINT_URL`` means another server.
    """
    return _cached(url.rstrip("/"), os.environ.get("AWS_ENDPOINT_URL"), os.getpid())


def store_base(uri: str) -> str:
    """The store URL an artifact URL belongs to (everything before ``/artifacts/``)."""
    return uri.rpartition("/artifacts/")[0]
