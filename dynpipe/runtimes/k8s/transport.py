"""How a task reaches a pod and its report comes back, behind one small interface.

Two transports, chosen per step by :func:`choose_transport`:

* :class:`ObjectStoreTransport` (a remote artifact store, ``DYNPIPE_ARTIFACT_STORE=s3://...``):
  no volume. The task payload travels in the Job's env (``DYNPIPE_TASK``, base64) when it
  is at most :data:`INLINE_TASK_BYTES` encoded, else as ``<store>/k8s-tasks/<key>.task``;
  the pod gets the store URL from the Job's env, reads inputs from and writes outputs to the
  store exactly as a worker process or Dask worker does (``run_payload`` -> ``execute_task``
  with the store's ``Artifacts``), and writes its JSON report to ``<store>/k8s-tasks/<key>.result``.
  The pod never sees the orchestrator's store root or metadata database.
* :class:`SharedVolumeTransport` (a local artifact store, only when declared shared with the
  ``pvc`` setting / ``DYNPIPE_K8S_PVC``): files under ``<store root>/k8s-tasks/`` on a
  ReadWriteMany volume mounted at the store root's path.

Either way the orchestrator only reads the JSON report (``result.py``) and loads artifacts
through materializers; inputs kept inside the metadata database travel inside the task.
"""

from __future__ import annotations

import base64
import dataclasses
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from ...store.artifact_store import RemoteArtifacts, is_url, mask_url, remote_artifacts
from ...store.artifacts import DB_PREFIX, ArtifactFiles
from ...store.store import Artifacts, open_store
from ..task import InputRef, StepTask, with_inline_inputs
from .config import KubernetesSettings

# 64 KiB of base64 (48 KiB of payload): far below the API server's ~1.5 MB object limit and
# the kernel's 128 KiB per env string, small enough that a Job stays cheap to list and watch.
INLINE_TASK_BYTES = 64 << 10
TASK_ENV = "DYNPIPE_TASK"
STORE_ENV = "DYNPIPE_ARTIFACT_STORE"
FOLDER = "k8s-tasks"


@dataclass(frozen=True)
class PodTask:
    """What the pod is told (worker arguments, env entries) and how to find its report."""

    key: str
    args: list[str]
    env: list[dict[str, str]] = field(default_factory=list)
    task_object: str | None = None  # the stored task payload, if it is not inline


class TaskTransport(Protocol):
    store_url: str | None  # reported outputs must live under it (None: the store root's files)

    def prepare(self, task: StepTask) -> StepTask:
        """``task`` as the pod may receive it (inputs reachable from the pod)."""

    def put_task(self, key: str, payload: bytes) -> PodTask:
        """Store or inline a task payload."""

    def get_report(self, pod_task: PodTask) -> bytes | None:
        """The pod's JSON report, or None if it wrote none."""

    def report_location(self, pod_task: PodTask) -> str:
        """Where the report was expected, fit to print."""

    def artifact_size(self, uri: str) -> int | None:
        """Size of an artifact the pod says it wrote (None: missing)."""

    def discard(self, pod_task: PodTask) -> None:
        """Remove the task and its report."""


class LocalStoreNotShared(ValueError):
    """The artifact store is on the orchestrator's disk and no volume shares it with pods."""


def choose_transport(task: StepTask, settings: KubernetesSettings) -> tuple[str, str]:
    """``("object", url)`` or ``("shared", store root)``; raises :class:`LocalStoreNotShared`."""
    from ...project_config import artifact_store_url
    from ...store.store import resolve_artifact_url

    url = resolve_artifact_url(artifact_store_url() if task.artifact_store is None else task.artifact_store)
    if url is not None and not url.startswith("file://"):
        return "object", url
    if settings.pvc:
        return "shared", task.store_root
    where = mask_url(url) if url else f"{task.store_root}/artifacts"
    raise LocalStoreNotShared(
        f"the artifact store {where} is on this machine's disk, which pods cannot"
        " read. Set DYNPIPE_ARTIFACT_STORE (or artifact_store in the project config) to an object store the"
        " pods can reach (s3://bucket/prefix, gs://..., az://...), or declare the store root shared with the"
        " pvc setting (settings={'kubernetes': {'pvc': CLAIM}} or DYNPIPE_K8S_PVC=CLAIM): a ReadWriteMany"
        " claim holding the store root, mounted at the same path in the pods"
    )


class ObjectStoreTransport:
    """Task (unless inline) and report as objects under ``<artifact store>/k8s-tasks/``."""

    def __init__(self, url: str) -> None:
        self.remote: RemoteArtifacts = remote_artifacts(url)
        self.store_url: str | None = self.remote.url
        self.folder = f"{self.remote.base}/{FOLDER}"
        self.url_folder = f"{self.remote.url}/{FOLDER}"

    def prepare(self, task: StepTask) -> StepTask:
        """Inputs become store URLs (artifact files of the local store are copied in; ``db:``
        inputs travel inside the task); the store root is not sent: pods never see it."""
        if any(r.uri.startswith(DB_PREFIX) and r.data is None for r in _refs(task)):
            task = with_inline_inputs(task, open_store(task.store_root).metadata)
        local = None

        def one(ref: InputRef) -> InputRef:
            nonlocal local
            if ref.uri.startswith(DB_PREFIX) or is_url(ref.uri):
                return ref
            local = local or open_store(task.store_root)
            data = local.files.get(ref.uri, ref.size)
            uri, _ = self.remote.put(data)
            return dataclasses.replace(ref, uri=uri, size=len(data))

        inputs = {k: [one(r) for r in v] if isinstance(v, list) else one(v) for k, v in task.inputs.items()}
        return dataclasses.replace(task, inputs=inputs, store_root="", artifact_store=self.remote.url)

    def put_task(self, key: str, payload: bytes) -> PodTask:
        report = ["--result", f"{self.url_folder}/{key}.result"]
        env = [{"name": STORE_ENV, "value": self.remote.url}]
        encoded = base64.b64encode(payload).decode("ascii")
        if len(encoded) <= INLINE_TASK_BYTES:
            return PodTask(key, ["--task", f"env:{TASK_ENV}", *report], [*env, {"name": TASK_ENV, "value": encoded}])
        path = f"{self.folder}/{key}.task"
        self.remote.fs.pipe_file(path, payload)
        return PodTask(key, ["--task", f"{self.url_folder}/{key}.task", *report], env, task_object=path)

    def get_report(self, pod_task: PodTask) -> bytes | None:
        from .result import MAX_REPORT_BYTES

        try:
            data: bytes = self.remote.fs.cat_file(f"{self.folder}/{pod_task.key}.result", start=0,
                                                  end=MAX_REPORT_BYTES + 1)
            return data
        except FileNotFoundError:
            return None

    def report_location(self, pod_task: PodTask) -> str:
        return mask_url(f"{self.url_folder}/{pod_task.key}.result")

    def artifact_size(self, uri: str) -> int | None:
        if not uri.startswith(f"{self.remote.url}/artifacts/"):
            return None
        try:
            return self.remote._size_of(self.remote._key(uri))
        except Exception:  # noqa: BLE001 - reported as missing
            return None

    def discard(self, pod_task: PodTask) -> None:
        for path in (pod_task.task_object, f"{self.folder}/{pod_task.key}.result"):
            if path is None:
                continue
            try:
                self.remote.fs.rm_file(path)
            except Exception:  # noqa: BLE001 - best effort; `dynpipe kubernetes gc` is not needed for it
                pass


class SharedVolumeTransport:
    """Task and report files under ``<store root>/k8s-tasks/`` (a ReadWriteMany volume)."""

    store_url: str | None = None

    def __init__(self, store_root: str) -> None:
        self.root = Path(store_root)
        self.folder = self.root / FOLDER

    def prepare(self, task: StepTask) -> StepTask:
        return dataclasses.replace(task, inputs=inputs_as_files(task))

    def put_task(self, key: str, payload: bytes) -> PodTask:
        self.folder.mkdir(parents=True, exist_ok=True)
        path = self.folder / f"{key}.task"
        path.write_bytes(payload)
        return PodTask(str(path), ["--task", str(path)])

    def get_report(self, pod_task: PodTask) -> bytes | None:
        try:
            return Path(f"{pod_task.key}.result").read_bytes()
        except FileNotFoundError:
            return None

    def report_location(self, pod_task: PodTask) -> str:
        return f"{pod_task.key}.result"

    def artifact_size(self, uri: str) -> int | None:
        try:
            return os.stat(self.root / uri).st_size
        except OSError:
            return None

    def discard(self, pod_task: PodTask) -> None:
        for path in (Path(pod_task.key), Path(f"{pod_task.key}.result")):
            try:
                path.unlink()
            except OSError:
                pass


def _refs(task: StepTask) -> list[InputRef]:
    return [r for v in task.inputs.values() for r in (v if isinstance(v, list) else [v])]


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
    """The pod's store: artifact files only (under ``root``, or objects of ``remote``); it never
    opens the metadata database, and every output, however small, is written to the store
    (nothing travels back as database bytes)."""

    def __init__(self, root: str, remote: RemoteArtifacts | None = None) -> None:
        super().__init__(ArtifactFiles(Path(root), blobs=None, remote=remote), inline_limit=-1)

    def load_value(
        self, uri: str, materializer: str, data_type: str, size: int | None = None, data: bytes | None = None
    ) -> Any:
        if data is None and uri.startswith(DB_PREFIX):
            raise FileNotFoundError(f"artifact {uri} is kept in the metadata database, which pods do not read")
        return super().load_value(uri, materializer, data_type, size, data)


# -- the pod's side -------------------------------------------------------------------------


def pod_store() -> PodArtifacts:
    """The pod's artifacts: the object store of ``DYNPIPE_ARTIFACT_STORE`` (a scratch folder in
    ``$TMPDIR`` for nothing but bookkeeping), else the shared store root ``DYNPIPE_HOME``."""
    url = os.environ.get(STORE_ENV) or ""
    if is_url(url) and not url.startswith("file://"):
        remote = remote_artifacts(url)
        _connect(remote)
        return PodArtifacts(tempfile.mkdtemp(prefix="dynpipe-pod-"), remote)
    return PodArtifacts(os.environ.get("DYNPIPE_HOME") or ".")


def _connect(remote: RemoteArtifacts) -> None:
    """Make the S3 client (credentials, endpoint) before the step runs, so botocore's INFO
    records about it ("Found credentials in environment variables") are not in the step's log.
    A failure is left for the step's first read or write to report, naming the store."""
    connect = getattr(remote.fs, "connect", None)
    if remote._is_s3 and callable(connect):
        try:
            connect()
        except Exception:  # noqa: BLE001
            pass


def read_task(where: str) -> bytes:
    """The payload named by ``--task``: ``env:NAME`` (base64 in the Job's env), a URL or a path."""
    if where.startswith("env:"):
        name = where[4:]
        if name not in os.environ:
            raise RuntimeError(f"the Job's env has no {name}: the task payload is missing")
        return base64.b64decode(os.environ[name])
    if is_url(where) and not where.startswith("file://"):
        import fsspec

        with fsspec.open(where, "rb") as fh:
            data: bytes = fh.read()
            return data
    with open(where.removeprefix("file://"), "rb") as fh:
        return fh.read()


def write_report(where: str, data: bytes) -> None:
    """The JSON report to a URL (one PUT) or a path (atomically)."""
    if is_url(where) and not where.startswith("file://"):
        import fsspec

        with fsspec.open(where, "wb") as fh:
            fh.write(data)
        return
    path = where.removeprefix("file://")
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "wb") as fh:
        fh.write(data)
    os.replace(tmp, path)
