"""Errors that say why the store cannot be used, naming the path at fault.

Raised instead of raw ``sqlite3.OperationalError``/``OSError``/``TypeError`` so that the CLI,
a notebook and a pipeline all tell the user which file, which owner and what to do.
"""

from __future__ import annotations


class StoreError(RuntimeError):
    """The store at a path cannot be used as asked (base class)."""


class UnsafeStoreError(StoreError):
    """The store folder or a file in it belongs to another user, so its pickles are not trusted."""


class StoreAccessError(StoreError):
    """The store cannot be opened or written: permission denied, read-only, owned by someone else."""


class StoreFullError(StoreError):
    """No space left on the device holding the store; nothing partial was left under a final name."""


class ArtifactIntegrityError(StoreError):
    """An artifact's content does not match its address (truncated or altered outside dynpipe)."""
