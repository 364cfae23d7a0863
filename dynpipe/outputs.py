"""``OutputArtifact``: a step output inside a run (signatures and type checks live in ``signatures``)."""

from __future__ import annotations

import sys
from collections.abc import Iterator, Mapping
from itertools import chain
from typing import TYPE_CHECKING, Any

from .errors import StepTypeError  # noqa: F401 - re-exported for existing imports
from .signatures import OutputSpec, parse_outputs, type_matches, type_name  # noqa: F401 - re-exported
from .store.artifacts import DB_PREFIX
from .store.models import ArtifactVersion

if TYPE_CHECKING:
    from .engine.lineage import LoadedValues

#: Artifacts up to this size are loaded to preview them in a notebook.
PREVIEW_MAX_BYTES = 1_000_000

# ArtifactVersion's own slots for the fields OutputArtifact computes when they hold their
# default (None there): an open 10,000-step run keeps every output, and its default name,
# a small output's ``db:<hash>`` uri, an empty metadata dict and an empty tag list were
# ~300 B of each. Its content hash is kept as the digest's bytes (65 B, not 113).
_NAME = ArtifactVersion.__dict__["name"]
_URI = ArtifactVersion.__dict__["uri"]
_HASH = ArtifactVersion.__dict__["content_hash"]
_METADATA = ArtifactVersion.__dict__["metadata"]
_TAGS = ArtifactVersion.__dict__["tags"]


class OutputArtifact(ArtifactVersion):
    """A step output inside a run: an artifact version that remembers which invocation made it."""

    __slots__ = ("invocation_id", "step_run_in", "loaded_into", "_pipeline")

    def __init__(self, store: Any, invocation_id: str, step_run_in: str, **fields: Any) -> None:
        # The compact form of each field goes straight to the base class's setters.
        pipeline = None
        name, content_hash = fields.get("name"), fields.get("content_hash")
        default = f"::{invocation_id}::{fields.get('output_name')}"
        if name and name.endswith(default):  # "<pipeline>::<invocation>::<output>"
            # The pipeline's name, one string for all its outputs (interned): the rest is here.
            pipeline = sys.intern(name[: -len(default)])
            fields["name"] = None
        if content_hash:
            if fields.get("uri") == DB_PREFIX + content_hash:
                fields["uri"] = None  # kept in the metadata database: rebuilt from the hash
            fields["content_hash"] = _as_digest(content_hash)
        if not fields.get("metadata"):
            fields["metadata"] = None
        if not fields.get("tags"):
            fields["tags"] = None
        super().__init__(store, **fields)
        self._pipeline: str | None = pipeline  # after the name setter, which clears it
        self.invocation_id = invocation_id
        #: The run of the invocation that returned it; a cache hit's artifact was produced
        #: by an earlier run (``run_id``) but is still this run's data flow.
        self.step_run_in = step_run_in
        #: The run's record of loaded values (set by the engine): a value loaded from here
        #: and passed to a later step keeps this step as its upstream.
        self.loaded_into: LoadedValues | None = None

    @property
    def name(self) -> str:
        name = _NAME.__get__(self)
        if name is None and self._pipeline is not None:
            return f"{self._pipeline}::{self.invocation_id}::{self.output_name}"
        return name

    @name.setter
    def name(self, value: str) -> None:
        _NAME.__set__(self, value)
        self._pipeline = None

    @property
    def content_hash(self) -> str:
        digest = _HASH.__get__(self)
        return digest.hex() if type(digest) is bytes else digest

    @content_hash.setter
    def content_hash(self, value: str) -> None:
        _HASH.__set__(self, value)

    @property
    def uri(self) -> str:
        uri = _URI.__get__(self)
        return DB_PREFIX + self.content_hash if uri is None else uri

    @uri.setter
    def uri(self, value: str) -> None:
        _URI.__set__(self, value)

    @property
    def metadata(self) -> dict[str, Any]:
        metadata = _METADATA.__get__(self)
        if metadata is None:  # made on first use, so changing it in place still sticks
            metadata = {}
            _METADATA.__set__(self, metadata)
        return metadata

    @metadata.setter
    def metadata(self, value: dict[str, Any]) -> None:
        _METADATA.__set__(self, value)

    @property
    def tags(self) -> list[str]:
        tags = _TAGS.__get__(self)
        if tags is None:
            tags = []
            _TAGS.__set__(self, tags)
        return tags

    @tags.setter
    def tags(self, value: list[str]) -> None:
        _TAGS.__set__(self, value)

    def load(self) -> Any:
        value = super().load()
        if self.loaded_into is not None:
            self.loaded_into.remember(value, self.invocation_id)
        return value

    def __repr__(self) -> str:
        return (
            f"OutputArtifact(step={self.invocation_id!r}, output={self.output_name!r},"
            f" type={self.type_name})"
        )

    def _repr_html_(self) -> str:
        import html  # deferred: only notebooks display outputs (cold start)

        size = self.size or 0
        if size > PREVIEW_MAX_BYTES:  # showing an artifact must not load gigabytes
            preview = f"<{size / 1e6:.1f} MB; call .load() to get it>"
        else:
            try:
                preview = repr(self.load())
            except Exception as exc:  # noqa: BLE001 - a preview must never break display
                preview = f"<cannot load: {exc}>"
        if len(preview) > 200:
            preview = preview[:200] + "…"
        return (
            "<div style='font-family:var(--jp-code-font-family,monospace)'>"
            f"<b>{html.escape(self.invocation_id)}</b>.{html.escape(str(self.output_name))}"
            f" <span style='color:var(--jp-ui-font-color2,#666)'>{html.escape(self.type_name)}</span>"
            f"<br><code>{html.escape(preview)}</code></div>"
        )


def _as_digest(content_hash: str) -> bytes | str:
    """The bytes of a lowercase hex digest (what the store makes), else the hash as given."""
    try:
        digest = bytes.fromhex(content_hash)
    except ValueError:
        return content_hash
    return digest if digest.hex() == content_hash else content_hash


class StepOutputs(Mapping[str, OutputArtifact]):
    """A finished step's outputs by name, read-only: what its future holds while the run is open.

    One flat tuple (name, artifact, name, artifact, ...) instead of a dict: a dict of one
    item is 184 B, and an open run keeps one per step. Steps have a handful of outputs, so
    a look-up scans.
    """

    __slots__ = ("_items",)

    def __init__(self, outputs: Mapping[str, OutputArtifact]) -> None:
        self._items: tuple[Any, ...] = tuple(chain.from_iterable(outputs.items()))

    def __getitem__(self, name: str) -> OutputArtifact:
        items = self._items
        for i in range(0, len(items), 2):
            if items[i] == name:
                return items[i + 1]
        raise KeyError(name)

    def __iter__(self) -> Iterator[str]:
        return iter(self._items[::2])

    def __len__(self) -> int:
        return len(self._items) // 2

    def __repr__(self) -> str:
        return f"StepOutputs({dict(self)!r})"
