"""One watch per run and namespace on Jobs and on Pods, serving every launch of the run.

Each resource has one streaming watch (label ``dynpipe/run-id=<run>``) whose events are
routed to the launch that owns the Job. A watch whose ``resourceVersion`` expired (410
Gone) starts again from a fresh list; a periodic re-list catches anything a broken
stream lost (a Job deleted while no watch was open). The pod watch wakes at least every
``tick`` seconds so launches can enforce their pending timeout. The threads exit when
the run has no launch left, so an idle run costs no API call.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from typing import Any, Protocol

from .diagnose import api_error
from .manifests import JOB_LABEL, RUN_LABEL

MAX_CONSECUTIVE_ERRORS = 6
IDLE_GRACE = 10.0  # keep watching this long after the last launch ended: the next step reuses the stream


class Observer(Protocol):
    def on_job(self, kind: str, job: dict[str, Any] | None) -> None:
        """``kind``: ADDED, MODIFIED, DELETED, or MISSING (absent from a re-list); job None if MISSING."""

    def on_pod(self, kind: str, pod: dict[str, Any]) -> None: ...

    def on_tick(self, now: float) -> None: ...

    def on_watch_failed(self, message: str) -> None: ...


class Gone(Exception):
    """The watch's resourceVersion is too old (HTTP 410): list again."""


class RunWatcher:
    """The watches of one run in one namespace."""

    def __init__(self, batch: Any, core: Any, namespace: str, run_label: str, resync: float) -> None:
        self.batch = batch
        self.core = core
        self.namespace = namespace
        self.selector = f"{RUN_LABEL}={run_label}"
        self.resync = resync
        self.tick = 30.0
        self._lock = threading.Lock()
        self._observers: dict[str, Observer] = {}
        self._threads: dict[str, threading.Thread] = {}
        self._responses: dict[str, Any] = {}
        self._idle_since: float | None = None
        self.resyncs = 0

    # -- registration -------------------------------------------------------------------
    def register(self, job: str, observer: Observer, tick: float) -> None:
        """Route ``job``'s events to ``observer`` (before the Job is created: no event is lost)."""
        with self._lock:
            self._observers[job] = observer
            self._idle_since = None
            self.tick = min(self.tick, max(0.05, tick))
            for resource in ("jobs", "pods"):
                thread = self._threads.get(resource)
                if thread is None or not thread.is_alive():
                    thread = threading.Thread(target=self._run, args=(resource,), daemon=True,
                                              name=f"dynpipe-k8s-watch-{resource}")
                    self._threads[resource] = thread
                    thread.start()

    def unregister(self, job: str) -> None:
        with self._lock:
            self._observers.pop(job, None)
            if not self._observers:
                self._idle_since = time.monotonic()
                timer = threading.Timer(IDLE_GRACE, self._close_if_idle)
                timer.daemon = True
                timer.start()

    def _close_if_idle(self) -> None:
        with self._lock:
            since = self._idle_since
            idle = not self._observers and since is not None and time.monotonic() - since >= IDLE_GRACE * 0.99
            responses = list(self._responses.values()) if idle else []
        for resp in responses:  # unblock the streams: nothing left to watch
            try:
                resp.shutdown()
            except Exception:  # noqa: BLE001 - already closed
                pass

    def _observer(self, name: str | None) -> Observer | None:
        if name is None:
            return None
        with self._lock:
            return self._observers.get(name)

    def _active(self) -> bool:
        with self._lock:
            return self._active_locked()

    def _active_locked(self) -> bool:
        if self._observers:
            return True
        return self._idle_since is not None and time.monotonic() - self._idle_since < IDLE_GRACE

    # -- the loops ----------------------------------------------------------------------
    def _list_fn(self, resource: str) -> Callable[..., Any]:
        if resource == "jobs":
            return self.batch.list_namespaced_job
        return self.core.list_namespaced_pod

    def _run(self, resource: str) -> None:
        version: str | None = None
        listed_at = 0.0
        errors = 0
        while self._active():
            try:
                if version is None or time.monotonic() - listed_at > self.resync:
                    version = self._relist(resource)
                    listed_at = time.monotonic()
                version = self._stream(resource, version)
                errors = 0
            except Gone:
                version = None
            except Exception as exc:  # noqa: BLE001 - connection loss, API errors
                if _is_timeout(exc):
                    version = version  # a quiet period: wake up, tick, watch again
                else:
                    errors += 1
                    if errors >= MAX_CONSECUTIVE_ERRORS:
                        self._fail_all(f"watching {resource} in namespace {self.namespace!r} failed: {api_error(exc)}")
                        errors = 0
                    time.sleep(min(0.1 * 2**errors, 5.0))
                    version = None
            if resource == "pods":
                self._tick()
        with self._lock:
            self._responses.pop(resource, None)
            if self._threads.get(resource) is threading.current_thread():
                del self._threads[resource]
        if self._active():  # a launch registered while this loop was ending
            with self._lock:
                if resource not in self._threads:
                    thread = threading.Thread(target=self._run, args=(resource,), daemon=True,
                                              name=f"dynpipe-k8s-watch-{resource}")
                    self._threads[resource] = thread
                    thread.start()

    def _relist(self, resource: str) -> str | None:
        listing = self._list_fn(resource)(self.namespace, label_selector=self.selector, _preload_content=False)
        try:
            body = json.loads(listing.data)
        finally:
            listing.release_conn()
        self.resyncs += 1
        seen: set[str] = set()
        for item in body.get("items") or []:
            name = _owner_job(resource, item)
            if name is not None:
                seen.add(name)
            self._dispatch(resource, "ADDED", item)
        if resource == "jobs":
            with self._lock:
                missing = [obs for name, obs in self._observers.items() if name not in seen]
            for obs in missing:
                obs.on_job("MISSING", None)
        version = (body.get("metadata") or {}).get("resourceVersion")
        return version if version and version.isdigit() else ""

    def _stream(self, resource: str, version: str | None) -> str | None:
        kwargs: dict[str, Any] = {"label_selector": self.selector, "watch": True, "allow_watch_bookmarks": True,
                                  "_preload_content": False}
        if version:
            kwargs["resource_version"] = version
        read_timeout = self.tick if resource == "pods" else self.resync
        resp = self._list_fn(resource)(self.namespace, _request_timeout=(10, read_timeout), **kwargs)
        with self._lock:
            self._responses[resource] = resp
        try:
            from kubernetes.watch.watch import iter_resp_lines

            for line in iter_resp_lines(resp):
                event = json.loads(line)
                kind = event.get("type")
                obj = event.get("object") or {}
                if kind == "ERROR":
                    if obj.get("code") == 410:
                        raise Gone()
                    raise RuntimeError(f"watch error {obj.get('code')}: {obj.get('message')}")
                version = (obj.get("metadata") or {}).get("resourceVersion") or version
                if kind != "BOOKMARK":
                    self._dispatch(resource, kind, obj)
                if not self._active():
                    break
                if resource == "pods":
                    self._tick()
        finally:
            resp.release_conn()
        return version

    def _dispatch(self, resource: str, kind: str, obj: dict[str, Any]) -> None:
        observer = self._observer(_owner_job(resource, obj))
        if observer is None:
            return
        if resource == "jobs":
            observer.on_job(kind, obj)
        else:
            observer.on_pod(kind, obj)

    def _tick(self) -> None:
        now = time.monotonic()
        with self._lock:
            observers = list(self._observers.values())
        for obs in observers:
            obs.on_tick(now)

    def _fail_all(self, message: str) -> None:
        with self._lock:
            observers = list(self._observers.values())
        for obs in observers:
            obs.on_watch_failed(message)


def _owner_job(resource: str, obj: dict[str, Any]) -> str | None:
    meta = obj.get("metadata") or {}
    if resource == "jobs":
        return meta.get("name")
    return (meta.get("labels") or {}).get(JOB_LABEL)


def _is_timeout(exc: BaseException) -> bool:
    name = type(exc).__name__
    return "Timeout" in name or "timed out" in str(exc)
