"""JSON views of runs, steps and artifacts for the REST API, with every size capped.

Kept apart from the handlers so the shapes can be tested without a server, and so the
caps live in one place: a preview must never ship a whole dataset or a runaway log.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from ..store.models import ArtifactVersion, PipelineRun, StepRun
from ..store.run_pages import RunSummary

#: Characters of an artifact's repr / JSON sent to the browser.
PREVIEW_CHARS = 4000
#: Rows and columns of a dataframe preview.
TABLE_ROWS = 20
TABLE_COLUMNS = 20
#: Artifacts larger than this on disk are not loaded for a preview at all.
LOAD_LIMIT_BYTES = 64 * 1024 * 1024
#: Characters of a step log sent at once (the tail is kept: that is where errors are).
LOG_CHARS = 2 * 1024 * 1024

#: URIs of small artifacts kept in the store's database (not files).
DB_PREFIX = "db:"

ACTIVE = {"queued", "initializing", "running", "retrying"}


def _ts(value: Any) -> float | None:
    return value.timestamp() if value is not None else None


def active_seconds(run: PipelineRun | RunSummary) -> float:
    """Wall time since the run started: to its end, or to now while it is active."""
    end = run.end_time.timestamp() if run.end_time else time.time()
    return max(0.0, end - run.start_time.timestamp())


def run_summary(run: PipelineRun) -> dict[str, Any]:
    """One run in full (the run view): its steps are loaded anyway, so they are counted here."""
    counts: dict[str, int] = {}
    for step in run.steps.values():
        counts[step.status.value] = counts.get(step.status.value, 0) + 1
    return _summary(run, counts)


def list_summary(run: RunSummary) -> dict[str, Any]:
    """One row of the runs list: counted by the store, no step row read."""
    return _summary(run, run.step_counts)


def _summary(run: PipelineRun | RunSummary, counts: dict[str, int]) -> dict[str, Any]:
    return {
        "id": run.id,
        "name": run.name,
        "pipeline": run.pipeline_name,
        "status": run.status.value,
        "active": run.status.value in ACTIVE,
        "start": _ts(run.start_time),
        "end": _ts(run.end_time),
        "active_seconds": round(active_seconds(run), 3),
        "steps": sum(counts.values()),
        "step_counts": counts,
        "error": run.error,
        # Where the run came from (notebook path, script, schedule), once the store records it.
        "origin": run.origin,
    }


def step_detail(step: StepRun) -> dict[str, Any]:
    outputs = []
    for name, versions in step.outputs.items():
        art = versions[0]
        outputs.append({"name": name, "id": art.id, "artifact": art.name, "version": art.version,
                        "type": art.type_name, "size": art.size})
    return {
        "id": step.invocation_id,
        "step": step.step_name,
        "status": step.status.value,
        "start": _ts(step.start_time),
        "end": _ts(step.end_time),
        "duration": step.duration,
        "attempts": step.attempts,
        "runtime": step.runtime,
        "cache": "cached" if step.cached_from else ("computed" if step.end_time else None),
        "cached_from": step.cached_from,
        "upstream": step.upstream,
        "outputs": outputs,
        "error": step.error,
        "traceback": step.traceback,
        "log_chars": len(step.logs),
    }


def capped_log(step: StepRun) -> dict[str, Any]:
    text = step.logs
    truncated = len(text) > LOG_CHARS
    return {"id": step.invocation_id, "logs": text[-LOG_CHARS:] if truncated else text,
            "truncated": truncated, "chars": len(text)}


def _cut(text: str) -> tuple[str, bool]:
    return (text, False) if len(text) <= PREVIEW_CHARS else (text[: PREVIEW_CHARS - 1] + "…", True)


def _table(value: Any) -> dict[str, Any] | None:
    """Dataframes become a small table; anything else has no table view."""
    if type(value).__name__ != "DataFrame" or not hasattr(value, "iloc"):
        return None
    part = value.iloc[:TABLE_ROWS, :TABLE_COLUMNS]
    return {
        "columns": [str(c) for c in part.columns],
        "rows": [[_cut(repr(v))[0][:200] for v in row] for row in part.itertuples(index=False, name=None)],
        "shape": list(value.shape),
    }


def client_snippet(artifact: ArtifactVersion) -> str:
    art: Any = artifact  # fields are set from the row (slots), not declared for type checkers
    return f"from dynpipe import Client\n\nvalue = Client().get_artifact_version({art.id!r}).load()"


def inside(uri: str | None, root: Path) -> bool:
    """Whether a stored artifact URI stays in the store: its database, or a file under the root."""
    if not uri:
        return False
    if uri.startswith(DB_PREFIX):
        return True
    if "://" in uri:
        return False
    try:
        (root / uri).resolve().relative_to(root.resolve())
    except ValueError:
        return False
    return True


def artifact_preview(artifact: ArtifactVersion, store_root: Path) -> dict[str, Any]:
    """Metadata always; the value's repr / JSON / table when it is small and loadable."""
    art: Any = artifact  # fields are set from the row (slots), not declared for type checkers
    out: dict[str, Any] = {
        "id": art.id, "name": art.name, "version": art.version, "type": art.data_type,
        "materializer": art.materializer, "size": art.size, "snippet": client_snippet(art),
        "repr": None, "json": None, "table": None, "truncated": False, "error": None,
    }
    if not inside(art.uri, store_root):
        out["error"] = f"artifact {art.name!r} is stored outside the store root; no preview"
        return out
    if art.size is not None and art.size > LOAD_LIMIT_BYTES:
        out["error"] = f"artifact {art.name!r} is {art.size} bytes; previews load at most {LOAD_LIMIT_BYTES}"
        return out
    try:
        value = art.load()
    except Exception as exc:  # noqa: BLE001 - any load failure becomes the preview's message
        out["error"] = f"artifact {art.name!r} cannot be previewed here: {type(exc).__name__}: {exc}"
        return out
    out["repr"], out["truncated"] = _cut(repr(value))
    if isinstance(value, (dict, list, str, int, float, bool)) or value is None:
        try:
            text, cut = _cut(json.dumps(value, indent=2, default=str))
        except (TypeError, ValueError):
            text, cut = "", False
        if text:
            out["json"], out["truncated"] = text, out["truncated"] or cut
    out["table"] = _table(value)
    return out
