"""``OutputArtifact``: a step output inside a run (signatures and type checks live in ``signatures``)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .errors import StepTypeError  # noqa: F401 - re-exported for existing imports
from .signatures import OutputSpec, parse_outputs, type_matches, type_name  # noqa: F401 - re-exported
from .store.models import ArtifactVersion

if TYPE_CHECKING:
    from .engine.lineage import LoadedValues

#: Artifacts up to this size are loaded to preview them in a notebook.
PREVIEW_MAX_BYTES = 1_000_000


class OutputArtifact(ArtifactVersion):
    """A step output inside a run: an artifact version that remembers which invocation made it."""

    __slots__ = ("invocation_id", "step_run_in", "loaded_into")

    def __init__(self, store: Any, invocation_id: str, step_run_in: str, **fields: Any) -> None:
        super().__init__(store, **fields)
        self.invocation_id = invocation_id
        #: The run of the invocation that returned it; a cache hit's artifact was produced
        #: by an earlier run (``run_id``) but is still this run's data flow.
        self.step_run_in = step_run_in
        #: The run's record of loaded values (set by the engine): a value loaded from here
        #: and passed to a later step keeps this step as its upstream.
        self.loaded_into: LoadedValues | None = None

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
