"""Artifacts in a remote (or any fsspec) store: ``s3://bucket/prefix``, ``gs://...``, ``az://...``.

Same content addressing as the local files (``<url>/artifacts/<2 hex>/<sha256>``), and the
artifact's uri is the full URL, so a worker anywhere can read it and an artifact stays
loadable after the project moves to another store. A write never leaves a half-written object
under its final key: S3 gets one PUT (atomic) or a multipart upload that is aborted on failure;
other backends get a temporary key that is moved into place. Reads check size and sha256.

The filesystem libraries (s3fs, gcsfs, adlfs) are optional extras, imported only when a URL
needs them; credentials come from their usual sources and never pass through dynpipe.
"""

from __future__ import annotations

import functools
import hashlib
import os
import re
import uuid
from typing import Any

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
