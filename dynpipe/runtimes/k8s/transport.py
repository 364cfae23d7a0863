"""How a task reaches a pod and its report comes back, behind one small interface.

Today: files in ``<store root>/k8s-tasks/`` on a volume shared by the orchestrator and the
pods. An object-store transport implements the same four methods. Artifacts go through
the store's artifact files, never through the metadata database: the pod uses
:class:`PodArtifacts`, which writes files only, and inputs kept inside the database are
copied out to files by the orchestrator before the task is sent.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Protocol

from ...store.artifacts import DB_PREFIX, ArtifactFiles
from ...store.store import Artifacts, open_store
from ..task import InputRef, StepTask


class TaskTransport(Protocol):
    def put_task(self, name: str, payload: bytes) -> str:
        """Store a task payload; return the URL the pod reads it from."""

    def get_report(self, task_url: str) -> bytes | None:
        """The pod's JSON report, or None if it wrote none."""

    def artifact_size(self, uri: str) -> int | None:
        """Size of an artifact the pod says it wrote (None: missing)."""

    def discard(self, task_url: str) -> None:
        """Remove the task and its report."""


class SharedVolumeTransport:
    """Task and report files under ``<store root>/k8s-tasks/`` (a ReadWriteMany volume)."""

    def __init__(self, store_root: str) -> None:
        self.root = Path(store_root)
        self.folder = self.root / "k8s-tasks"

    def put_task(self, name: str, payload: bytes) -> str:
        self.folder.mkdir(parents=True, exist_ok=True)
        path = self.folder / f"{name}.task"
        path.write_bytes(payload)
        return str(path)

    def get_report(self, task_url: str) -> bytes | None:
        try:
            return Path(f"{task_url}.result").read_bytes()
        except FileNotFoundError:
            return None

    def artifact_size(self, uri: str) -> int | None:
        try:
            return os.stat(self.root / uri).st_size
        except OSError:
            return None

    def discard(self, task_url: str) -> None:
        for path in (Path(task_url), Path(f"{task_url}.result")):
            try:
                path.unlink()
            except OSError:
                pass


def inputs_as_files(task: StepTask) -> dict[str, InputRef | list[InputRef]]:
    """``task.inputs`` with artifacts kept in the metadata database copied to artifact files."""
    store = None

    def one(ref: InputRef) -> InputRef:
        nonlocal store
        if not ref.uri.startswith(DB_PREFIX):
            return ref
        store = store or open_store(task.store_root)
        uri, _ = store.files.put(store.files.get(ref.uri))
        return InputRef(id=ref.id, uri=uri, materializer=ref.materializer, data_type=ref.data_type)

    return {k: [one(r) for r in v] if isinstance(v, list) else one(v) for k, v in task.inputs.items()}


class PodArtifacts(Artifacts):
    """The pod's store: artifact files only; it never opens the metadata database, and every
    output, however small, is written as a file (nothing travels back as database bytes)."""

    def __init__(self, root: str) -> None:
        super().__init__(ArtifactFiles(Path(root), blobs=None), inline_limit=-1)

    def load_value(
        self, uri: str, materializer: str, data_type: str, size: int | None = None, data: bytes | None = None
    ) -> Any:
        if data is None and uri.startswith(DB_PREFIX):
            raise FileNotFoundError(f"artifact {uri} is kept in the metadata database, which pods do not read")
        return super().load_value(uri, materializer, data_type, size, data)
