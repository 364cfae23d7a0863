"""What a pod reports back: JSON, never a pickle.

A pod is a different trust domain (another image, maybe another node): the orchestrator
must not unpickle anything it wrote. The pod reports artifact addresses, sizes and hashes,
the error's type, message and traceback as text, and its logs; the orchestrator validates
the report against the task it sent and loads artifacts only through materializers.
"""

from __future__ import annotations

import json
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ...store.store import SavedArtifact
from ..task import StepTask, TaskResult

FORMAT = "dynpipe.pod-result/1"
MAX_REPORT_BYTES = 64 << 20


class ReportedArtifact(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    id: str = Field(pattern=r"^[0-9a-f]{32}$")
    uri: str
    content_hash: str = Field(pattern=r"^[0-9a-f]{64}$")
    data_type: str = Field(max_length=1000)
    materializer: str = Field(max_length=1000)
    size: int = Field(ge=0)
    metadata: dict[str, Any] | None = None
    tags: list[str] = Field(default_factory=list)


class PodReport(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    format: str
    outputs: dict[str, ReportedArtifact] = Field(default_factory=dict)
    logs: str = ""
    error_type: str | None = None
    error_message: str | None = None
    traceback: str | None = None
    preview: str | None = None


class BadReport(ValueError):
    """The pod's report is not what the task it was sent can produce."""


def encode_report(result: TaskResult) -> bytes:
    """The pod side: a TaskResult as JSON (metadata that is not JSON fails the step clearly)."""
    outputs = {
        name: {"id": a.id, "uri": a.uri, "content_hash": a.content_hash, "data_type": a.data_type,
               "materializer": a.materializer, "size": a.size, "metadata": a.metadata, "tags": list(a.tags)}
        for name, a in result.outputs.items()
    }
    body = {"format": FORMAT, "outputs": outputs, "logs": result.logs, "error_type": result.error_type,
            "error_message": result.error_message, "traceback": result.traceback, "preview": result.preview}
    try:
        return json.dumps(body).encode()
    except (TypeError, ValueError) as exc:
        body.update(outputs={}, error_type="TypeError", traceback=None,
                    error_message=f"the step's output metadata cannot be reported as JSON: {exc}")
        return json.dumps(body, default=repr).encode()


def decode_report(data: bytes, task: StepTask, artifact_size: Any, store_url: str | None = None) -> TaskResult:
    """The orchestrator side: validate ``data`` against ``task``; ``artifact_size(uri)`` -> int | None.

    Outputs must be the artifacts of their hash in the store the pod was given: under
    ``store_url`` (an object store) or, when None, the store root's ``artifacts/`` files.
    """
    if len(data) > MAX_REPORT_BYTES:
        raise BadReport(f"the report is {len(data)} bytes, more than {MAX_REPORT_BYTES}")
    try:
        report = PodReport.model_validate_json(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise BadReport(f"the report is not valid ({where}: {first['msg']})") from None
    if report.format != FORMAT:
        raise BadReport(f"the report has format {report.format!r}, expected {FORMAT!r}")
    expected = {o.name for o in task.outputs}
    if report.error_type is None and set(report.outputs) != expected:
        raise BadReport(f"the report has outputs {sorted(report.outputs)}, the step declares {sorted(expected)}")
    if not set(report.outputs) <= expected:
        raise BadReport(f"the report has unknown outputs {sorted(set(report.outputs) - expected)}")
    saved: dict[str, SavedArtifact] = {}
    for name, art in report.outputs.items():
        digest = art.content_hash
        where = f"artifacts/{digest[:2]}/{digest}"
        if art.uri != (where if store_url is None else f"{store_url}/{where}"):
            raise BadReport(f"output {name!r}: address {art.uri!r} is not the artifact file of hash {art.content_hash}")
        size = artifact_size(art.uri)
        if size != art.size:
            raise BadReport(f"output {name!r}: artifact {art.uri} has size {size}, the report says {art.size}")
        saved[name] = SavedArtifact(id=art.id, uri=art.uri, content_hash=art.content_hash, data_type=art.data_type,
                                    materializer=art.materializer, size=art.size, metadata=art.metadata,
                                    tags=tuple(art.tags))
    return TaskResult(outputs=saved, logs=report.logs, error=None, error_type=report.error_type,
                      error_message=report.error_message, traceback=report.traceback, preview=report.preview)
