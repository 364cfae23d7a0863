"""Where an isolated step may run on a Dask cluster, checked against the workers there are.

A step's ``DaskSettings`` and ``ResourceSettings`` become ``Client.submit`` keywords:

* ``memory`` must fit a worker's ``memory_limit`` and ``cpu_count`` its ``nthreads`` (what a
  plain ``LocalCluster`` or ``dask worker --nthreads 4 --memory-limit 8GB`` advertises); the
  task is restricted to the workers that qualify (``workers=[addresses]``, others only with
  ``DaskSettings.allow_other_workers``). A worker without a memory limit fits any ``memory``.
* ``gpu_count`` asks for the Dask resource ``GPU`` (Dask has no GPU field); ``cpu_count`` and
  ``memory`` ask for Dask resources instead when ``DaskSettings.cpu_resource`` /
  ``memory_resource`` name one (a cluster whose workers advertise ``--resources "CPU=4"``).
  ``DaskSettings.resources`` pass as they are and win over a mapped name.

Dask keeps a task no current worker can take queued until such a worker joins, forever on a
fixed cluster, so a step no worker fits fails before launch, naming what it asked and the most
a worker offers. What the workers offer is asked once per run and kept :data:`RESOURCES_TTL`
seconds, or until the scheduler reports a worker joining or leaving (a step is never restricted
to a worker known to be gone, e.g. the one its last attempt crashed); a step the kept view
cannot place asks again first, and within :data:`RESTART_GRACE` seconds of a worker leaving
waits for a fitting one to join (the retry of a step whose worker was killed for its memory
waits for the nanny's restart). A fan-out of 1,000 steps with ``memory`` costs one scheduler
round trip, not 1,000.
"""

from __future__ import annotations

import dataclasses
import math
import threading
import time
from typing import Any

from .dask_client import EventBridge
from .task import StepTask

#: ``ResourceSettings`` field -> the ``DaskSettings`` field naming the Dask resource it asks
#: for, and that field's default (``None``: checked against a worker field instead).
TO_DASK_RESOURCE = (
    ("gpu_count", "gpu_resource", "GPU"),
    ("cpu_count", "cpu_resource", None),
    ("memory_bytes", "memory_resource", None),
)

#: ``ResourceSettings`` field -> the worker field (``scheduler_info``) that must hold it, and
#: how the error message names the request.
TO_WORKER_FIELD = {"cpu_count": ("nthreads", "cpu_count={:g}"), "memory_bytes": ("memory_limit", "memory={:g} bytes")}

#: Seconds a run keeps the workers' view before asking the scheduler again.
RESOURCES_TTL = 5.0

#: Seconds a step no worker fits waits for one after the scheduler removed a worker: a nanny
#: restarts a crashed worker (e.g. one killed for its memory) under a new address.
RESTART_GRACE = 30.0


class Unplaceable(Exception):
    """No current worker can take the step (the message is the user's)."""


@dataclasses.dataclass(frozen=True)
class Placement:
    """What a step asks of the worker that runs it."""

    options: dict[str, Any]  # submit keywords other than the worker restriction
    resources: dict[str, float]  # Dask resources, held while the task runs
    minimum: dict[str, tuple[float, str]]  # worker field -> (least value, how the request reads)
    workers: tuple[str, ...]  # DaskSettings.workers: addresses, names or hosts
    allow_other_workers: bool


@dataclasses.dataclass(frozen=True)
class WorkerView:
    """One worker as ``scheduler_info`` describes it."""

    address: str
    aliases: frozenset[str]  # what DaskSettings.workers may call it: address, name, host
    fields: dict[str, float]  # nthreads, memory_limit (inf: no limit)
    resources: dict[str, float]

    @classmethod
    def of(cls, address: str, info: dict[str, Any]) -> WorkerView:
        limit = float(info.get("memory_limit") or 0) or math.inf
        aliases = {address, str(info.get("name", address)), str(info.get("host", address))}
        return cls(
            address,
            frozenset(aliases),
            {"nthreads": float(info.get("nthreads") or 0), "memory_limit": limit},
            {k: float(v) for k, v in (info.get("resources") or {}).items()},
        )

    def takes(self, p: Placement) -> bool:
        return all(self.resources.get(k, 0) >= v for k, v in p.resources.items()) and all(
            self.fields.get(k, 0) >= least for k, (least, _) in p.minimum.items()
        )


def placement(task: StepTask) -> Placement:
    """The step's placement from its ``DaskSettings`` (``task.dask``) and ``ResourceSettings``."""
    ds = task.dask  # a config.DaskSettings or None (read by attribute: runtimes sit below config)
    resources = dict(getattr(ds, "resources", None) or {})
    minimum: dict[str, tuple[float, str]] = {}
    for amount_field, name_field, default_name in TO_DASK_RESOURCE:
        amount = getattr(task.resources, amount_field, None)
        if not amount:
            continue
        name = getattr(ds, name_field, default_name) if ds is not None else default_name
        if name and name not in resources:
            resources[name] = float(amount)
        elif not name and amount_field in TO_WORKER_FIELD:
            field, label = TO_WORKER_FIELD[amount_field]
            minimum[field] = (float(amount), label.format(amount))
    options: dict[str, Any] = {"retries": 0, "pure": False, "priority": getattr(ds, "priority", 0)}
    if resources:
        options["resources"] = resources
    return Placement(
        options,
        resources,
        minimum,
        tuple(getattr(ds, "workers", None) or ()),
        bool(getattr(ds, "allow_other_workers", False)),
    )


class ClusterView:
    """The cluster's workers as a runtime's launches see them, and where each step may go."""

    def __init__(self, client: Any, bridge: EventBridge) -> None:
        self.client = client
        self.bridge = bridge  # its membership count: a worker joined or left since the view was taken
        self._lock = threading.Lock()  # one scheduler query at a time; the others reuse it
        self._workers: list[WorkerView] = []
        self._at: float | None = None
        self._membership = -1

    def submit_options(self, task: StepTask) -> dict[str, Any]:
        """``Client.submit`` keywords for the step; :class:`Unplaceable` if no worker fits."""
        p = placement(task)
        options = dict(p.options)
        if p.resources or p.minimum:
            chosen = self.qualifying(p)
            if p.minimum:  # Dask knows nothing of these: name the workers that fit
                preferred = [w for w in chosen if p.allow_other_workers and _named(w, p.workers)]
                options["workers"] = [w.address for w in preferred or chosen]
                options["allow_other_workers"] = p.allow_other_workers
                return options
        if p.workers:
            options["workers"] = list(p.workers)
            options["allow_other_workers"] = p.allow_other_workers
        return options

    def qualifying(self, p: Placement) -> list[WorkerView]:
        """The workers that can take the step, asking the scheduler again if the kept view has none."""
        seen_at = self._at
        workers = self.workers(RESOURCES_TTL)
        chosen = _fitting(p, workers)
        if not chosen and self._at == seen_at:  # a kept view: a worker that fits may have joined
            workers = self.workers(0.0, seen_at)
            chosen = _fitting(p, workers)
        while not chosen and self._restarting():
            time.sleep(0.1)  # a worker joining makes the view stale (membership): asked again then
            workers = self.workers(RESOURCES_TTL)
            chosen = _fitting(p, workers)
        if not chosen:
            raise Unplaceable(_why_not(p, workers))
        return chosen

    def _restarting(self) -> bool:
        removed = self.bridge.removed_at
        return removed is not None and time.monotonic() - removed < RESTART_GRACE

    def workers(self, max_age: float, stale: float | None = None) -> list[WorkerView]:
        """The workers, asked at most every ``max_age`` seconds; a view newer than ``stale``
        (fetched by another launch meanwhile) is fresh enough."""
        with self._lock:
            at = self._at
            fresh = at is not None and (time.monotonic() - at < max_age or (stale is not None and at != stale))
            if fresh and self._membership == self.bridge.membership:
                return self._workers
            membership = self.bridge.membership  # before asking: a change meanwhile makes it stale
            infos = self.client.scheduler_info(n_workers=-1).get("workers", {})
            self._workers = [WorkerView.of(address, info) for address, info in infos.items()]
            self._at, self._membership = time.monotonic(), membership
            return self._workers


def _named(worker: WorkerView, names: tuple[str, ...]) -> bool:
    return any(n in worker.aliases for n in names)


def _fitting(p: Placement, workers: list[WorkerView]) -> list[WorkerView]:
    if p.workers and not p.allow_other_workers:  # Dask would only look at these
        workers = [w for w in workers if _named(w, p.workers)]
    return [w for w in workers if w.takes(p)]


def _why_not(p: Placement, workers: list[WorkerView]) -> str:
    asked = [f"resources {p.resources}"] if p.resources else []
    asked += [label for _, label in p.minimum.values()]
    short: list[str] = []
    if p.workers and not p.allow_other_workers:
        named = [w for w in workers if _named(w, p.workers)]
        asked.append(f"workers {list(p.workers)}")
        if not named:
            short.append(f"workers {list(p.workers)}: no current worker has that address, name or host")
        workers = named or workers
    for name, amount in p.resources.items():
        most = max((w.resources.get(name, 0) for w in workers), default=0)
        if most <= 0:
            short.append(f"{name}={amount:g}: no worker advertises {name}")
        elif most < amount:
            short.append(f"{name}={amount:g}: the most a worker offers is {most:g}")
    for field, (least, label) in p.minimum.items():
        most = max((w.fields.get(field, 0) for w in workers), default=0)
        if most < least:
            short.append(f"{label}: the most a worker offers is {most:g} ({field})")
    have = sorted(
        {f"{k}={v:g}" for w in workers for k, v in w.resources.items()}
        | {f"{k}={v:g}" for w in workers for k, v in w.fields.items() if k in p.minimum}
    )
    return (
        f"no Dask worker can take it: it asks for {', '.join(asked)} (from DaskSettings / ResourceSettings):"
        f" {'; '.join(short) or 'no single worker offers all of them'}"
        f" (workers offer: {', '.join(have) or 'none'}). Dask would keep the step queued until such a"
        " worker joins. Start workers with enough `--nthreads`, `--memory-limit` or `--resources`"
        ' (e.g. `dask worker --resources "GPU=1"`), or ask for less'
    )
