"""Which Dask cluster isolated steps use, and the one event subscription per client.

``DaskClients`` is the process's owner of the ``distributed.Client``: one handed over with
``dynpipe.use_dask(client)`` (a notebook's own cluster), else one connected on first need
to ``DYNPIPE_DASK_SCHEDULER`` and kept for the process (connecting costs a handshake, too
much per run). Like the local pool's owner it is created at import but inert: importing
dynpipe neither imports ``distributed`` nor connects anywhere.

``EventBridge`` is what a client needs once: subscriptions to the step-log topic and to
the scheduler's ``all`` topic (``remove-worker`` names the tasks a dead worker was running),
dispatched to the launch waiting for each task key.
"""

from __future__ import annotations

import threading
import time
from typing import Any, Final, Protocol

from .. import settings
from ..errors import SettingError

LOG_TOPIC = "dynpipe-step-log"
"""The event topic of step log lines and start notices (``{"key", "line"}`` or
``{"key", "start": address, "host", "pid"}``)."""


def where_text(address: str, host: object = None, pid: object = None) -> str:
    """A Dask worker as the live DAG names it: ``dask tcp://10.0.0.5:40123 (host node-5, pid 1234)``."""
    about = ", ".join(f"{label} {value}" for label, value in (("host", host), ("pid", pid)) if value)
    return f"dask {address}" + (f" ({about})" if about else "")


class DaskWatcher(Protocol):
    """What the bridge tells a launch: a line, where it started, that its worker died."""

    def add_line(self, line: str) -> None: ...
    def started_on(self, worker: str, where: str) -> None: ...
    def worker_died(self, worker: str) -> None: ...


class EventBridge:
    """Routes a client's Dask events to the launches waiting on their task keys."""

    def __init__(self, client: Any) -> None:
        self.client = client
        self._lock = threading.Lock()
        self._watchers: dict[str, DaskWatcher] = {}
        #: Counts workers joining and leaving: a view of the workers older than a change is stale.
        self.membership = 0
        #: When (``time.monotonic()``) the scheduler last removed a worker (a nanny may restart it).
        self.removed_at: float | None = None
        client.subscribe_topic(LOG_TOPIC, self._on_step_event)
        client.subscribe_topic("all", self._on_cluster_event)

    def watch(self, key: str, watcher: DaskWatcher) -> None:
        with self._lock:
            self._watchers[key] = watcher

    def forget(self, key: str) -> None:
        with self._lock:
            self._watchers.pop(key, None)

    def _on_step_event(self, event: tuple[float, Any]) -> None:
        msg = event[1]
        if not isinstance(msg, dict):
            return
        watcher = self._watchers.get(str(msg.get("key")))
        if watcher is None:
            return
        if "line" in msg:
            watcher.add_line(str(msg["line"]))
        elif "start" in msg:
            worker = str(msg["start"])
            watcher.started_on(worker, where_text(worker, msg.get("host"), msg.get("pid")))

    def _on_cluster_event(self, event: tuple[float, Any]) -> None:
        msg = event[1]
        if not isinstance(msg, dict) or msg.get("action") not in ("add-worker", "remove-worker"):
            return
        self.membership += 1
        if msg["action"] != "remove-worker":
            return
        self.removed_at = time.monotonic()
        worker = str(msg.get("worker"))
        for key in msg.get("processing-tasks") or ():
            watcher = self._watchers.get(str(key))
            if watcher is not None:
                watcher.worker_died(worker)


class DaskClients:
    """Owns this process's Dask client (handed over or connected lazily) and its bridge."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._given: Any = None
        self._connected: dict[str, Any] = {}
        self._bridges: dict[int, tuple[Any, EventBridge]] = {}
        self._links: dict[int, tuple[Any, str | None]] = {}

    def use(self, client: Any) -> None:
        """Hand over a client (``None`` forgets it: ``DYNPIPE_DASK_SCHEDULER`` applies again)."""
        if client is not None and not callable(getattr(client, "submit", None)):
            raise TypeError(f"use_dask() expects a distributed.Client or None, got {type(client).__name__}")
        with self._lock:
            self._given = client

    @property
    def handed_over(self) -> bool:
        return self._given is not None

    def client(self) -> Any:
        """The handed-over client, else one connected to ``DYNPIPE_DASK_SCHEDULER``."""
        with self._lock:
            if self._given is not None:
                return self._given
        address = settings.dask_scheduler()
        if address is None:
            raise SettingError(
                "DYNPIPE_ISOLATED_BACKEND=dask needs a cluster: set DYNPIPE_DASK_SCHEDULER=tcp://host:8786"
                " or hand over a client with dynpipe.use_dask(client)"
            )
        with self._lock:
            client = self._connected.get(address)
            if client is not None and client.status not in ("closed", "closing"):
                return client
        try:
            from distributed import Client
        except ImportError:
            raise SettingError(
                "DYNPIPE_ISOLATED_BACKEND=dask needs the 'distributed' package: pip install 'dynpipe[dask]'"
            ) from None
        try:
            client = Client(address, set_as_default=False)
        except Exception as exc:
            raise SettingError(
                f"DYNPIPE_DASK_SCHEDULER={address!r}: cannot connect: {type(exc).__name__}: {exc}"
            ) from exc
        with self._lock:
            self._connected[address] = client
        return client

    def bridge(self, client: Any) -> EventBridge:
        """The event bridge of ``client`` (subscribed once per client)."""
        with self._lock:
            held = self._bridges.get(id(client))
            if held is not None and held[0] is client:
                return held[1]
            bridge = EventBridge(client)
            self._bridges[id(client)] = (client, bridge)
            return bridge

    def dashboard_link(self) -> str | None:
        """The dashboard URL of the cluster isolated steps use now, if it has one.

        Never connects: only a handed-over client or one already connected counts, and only
        while Dask is the isolated backend (the same choice as ``runtimes.get_runtime``).
        """
        backend = settings.isolated_backend()
        if backend != "dask" and (settings.isolated_backend_chosen() or self._given is None):
            return None
        with self._lock:
            client = self._given if self._given is not None else self._connected.get(settings.dask_scheduler() or "")
            if client is None:
                return None
            held = self._links.get(id(client))
            if held is not None and held[0] is client:
                return held[1]
        try:
            link = client.dashboard_link or None  # asks the scheduler once: kept per client
        except Exception:  # noqa: BLE001 - no dashboard service, or the scheduler is gone
            link = None
        with self._lock:
            self._links[id(client)] = (client, link)
        return link

    def close(self) -> None:
        """Close the clients dynpipe connected (a handed-over client belongs to its owner)."""
        with self._lock:
            clients, self._connected = list(self._connected.values()), {}
            self._bridges.clear()
            self._links.clear()
        for client in clients:
            try:
                client.close()
            except Exception:  # noqa: BLE001 - best effort
                pass


#: The one owner per process; inert until an isolated step runs on Dask or ``use_dask`` is called.
DASK: Final = DaskClients()


def use_dask(client: Any) -> None:
    """Run ``runtime="isolated"`` steps of this process on ``client``'s Dask cluster.

    Takes effect unless ``DYNPIPE_ISOLATED_BACKEND`` names another backend; ``use_dask(None)``
    goes back to ``DYNPIPE_ISOLATED_BACKEND`` / ``DYNPIPE_DASK_SCHEDULER``.
    """
    DASK.use(client)

