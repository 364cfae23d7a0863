"""Task and report objects that dead runs left under ``k8s-tasks/``, found and removed through fsspec.

A launch removes its task and report once it has read the report; an orchestrator that died
leaves them behind. ``dynpipe kubernetes gc`` sweeps them from the artifact store (a bucket)
and from the store root's folder (a shared volume): every object of a run the metadata store
says has ended, and any object older than ``max_age`` (default :data:`MAX_AGE`, 24 h) whose
run is not alive here. A run this store does not know may belong to another store sharing the
bucket, so its objects go only once old; a live run's objects are never removed.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal

from .transport import FOLDER, run_of

MAX_AGE = 24 * 3600.0

RunState = Literal["alive", "ended", "unknown"]


@dataclass(frozen=True)
class TaskFolder:
    """One ``k8s-tasks/`` folder: how to show it, its filesystem and its path there."""

    label: str
    fs: Any
    path: str


@dataclass(frozen=True)
class StaleObject:
    path: str
    run_id: str | None
    why: str


def task_folders(store: Any) -> list[TaskFolder]:
    """The folders the Kubernetes runtime writes to for ``store``: its remote artifact store's
    and, when present, its root's (the shared-volume transport)."""
    import fsspec

    from ...store.artifact_store import mask_url, remote_artifacts

    folders = []
    url = store.artifact_url
    if url and not url.startswith("file://"):
        remote = remote_artifacts(url)
        folders.append(TaskFolder(mask_url(f"{remote.url}/{FOLDER}"), remote.fs, f"{remote.base}/{FOLDER}"))
    local = Path(store.root) / FOLDER
    if local.is_dir():
        folders.append(TaskFolder(str(local), fsspec.filesystem("file"), str(local)))
    return folders


def stale_objects(folder: TaskFolder, run_state: Callable[[str], RunState], max_age: float = MAX_AGE,
                  now: float | None = None) -> list[StaleObject]:
    """The objects of ``folder`` to remove; ``run_state`` is asked once per run id."""
    try:
        entries = folder.fs.ls(folder.path, detail=True, refresh=True)
    except FileNotFoundError:
        return []
    now = datetime.now(timezone.utc).timestamp() if now is None else now
    states: dict[str, RunState] = {}
    stale = []
    for entry in entries:
        if entry.get("type") != "file":
            continue
        path = str(entry["name"])
        run_id = run_of(path.rsplit("/", 1)[-1])
        state: RunState = "unknown"
        if run_id is not None:
            if run_id not in states:
                states[run_id] = run_state(run_id)
            state = states[run_id]
        if state == "alive":
            continue
        if state == "ended":
            stale.append(StaleObject(path, run_id, f"run {run_id} has ended"))
            continue
        modified = _modified(folder.fs, entry)
        if modified is not None and now - modified > max_age:
            whose = f"run {run_id} is unknown here" if run_id else "no run id in its name"
            stale.append(StaleObject(path, run_id, f"older than {max_age:g}s, {whose}"))
    return stale


def remove(folder: TaskFolder, paths: list[str]) -> list[str]:
    """Delete ``paths`` (one batch where the filesystem allows); the ones that failed, with why."""
    if not paths:
        return []
    try:
        folder.fs.rm(paths)
        return []
    except Exception:  # noqa: BLE001 - find out which ones, one by one
        pass
    problems = []
    for path in paths:
        try:
            folder.fs.rm_file(path)
        except FileNotFoundError:
            continue
        except Exception as exc:  # noqa: BLE001 - report and go on
            problems.append(f"{path}: {type(exc).__name__}: {exc}")
    return problems


def _modified(fs: Any, entry: dict[str, Any]) -> float | None:
    """The entry's modification time (seconds since the epoch) as its filesystem lists it."""
    for key in ("mtime", "LastModified", "last_modified", "updated"):
        value = entry.get(key)
        if value is None:
            continue
        stamp = _timestamp(value)
        if stamp is not None:
            return stamp
    try:
        return _timestamp(fs.modified(entry["name"]))
    except Exception:  # noqa: BLE001 - unknown age: the object is kept
        return None


def _timestamp(value: Any) -> float | None:
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return None
    if isinstance(value, datetime):
        return (value if value.tzinfo else value.replace(tzinfo=timezone.utc)).timestamp()
    return None
