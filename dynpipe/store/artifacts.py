"""Content-addressed artifact files, written atomically (temporary file, then rename)."""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path


class ArtifactFiles:
    """Files under ``<root>/artifacts/<2 hex>/<sha256>``; identical content is stored once."""

    def __init__(self, root: Path) -> None:
        self.root = root / "artifacts"
        self.root.mkdir(parents=True, exist_ok=True)
        self._made_dirs: set[str] = set()

    def put(self, data: bytes) -> tuple[str, str]:
        """Store ``data``; return (uri relative to the store root, content hash)."""
        digest = hashlib.sha256(data).hexdigest()
        sub = digest[:2]
        rel = f"artifacts/{sub}/{digest}"
        path = self.root / sub / digest
        if path.exists():
            return rel, digest
        folder = self.root / sub
        if sub not in self._made_dirs:
            folder.mkdir(exist_ok=True)
            self._made_dirs.add(sub)
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=".tmp-")
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
            os.replace(tmp, path)
        except BaseException:
            try:
                os.unlink(tmp)
            except OSError:
                pass
            raise
        return rel, digest

    def get(self, uri: str) -> bytes:
        path = self.root.parent / uri
        try:
            return path.read_bytes()
        except FileNotFoundError:
            raise FileNotFoundError(
                f"artifact file {path} is missing from the store; it was deleted outside dynpipe"
            ) from None

    def exists(self, uri: str) -> bool:
        return (self.root.parent / uri).exists()
