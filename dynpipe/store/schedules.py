"""The schedules repository: schedules and their fires, in the store's metadata database.

It follows ``DYNPIPE_STORE_URL`` like the metadata store: the store folder's ``metadata.db``
(or the SQLite file of the URL), or the PostgreSQL database of a ``postgresql://`` URL, so
every machine sharing a store shares its schedules (``schedule_db.py`` runs the one set of
SQL here on either). Every scheduler on one store shares these rows: a fire is claimed by
inserting its (schedule, fire time) key, which only one process wins, so two schedulers
never start the same tick twice.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import astuple, dataclass, field
from pathlib import Path
from typing import Any

from .location import find_store_root
from .schedule_db import Execute, ScheduleDb

_UNSET: Any = object()
_SCHEDULE_COLUMNS = ("name", "module", "pipeline", "cron", "timezone", "params", "overlap", "catchup", "state",
                     "created", "resumed", "target", "placement")
_INSERT_SCHEDULE = (
    f"INSERT INTO schedules ({', '.join(_SCHEDULE_COLUMNS)}) VALUES ({', '.join('?' * len(_SCHEDULE_COLUMNS))})"
    " ON CONFLICT DO NOTHING"
)
_FIRE_COLUMNS = ("schedule", "fire_time", "kind", "outcome", "run_name", "owner", "pid", "started", "ended", "detail")
_INSERT_FIRE = (
    f"INSERT INTO schedule_fires ({', '.join(_FIRE_COLUMNS)}) VALUES ({', '.join('?' * len(_FIRE_COLUMNS))})"
    " ON CONFLICT DO NOTHING"
)

# Outcomes a fire can end with; "queued" and "running" are the two that still change.
FIRE_OUTCOMES = ("missed", "skipped", "queued", "running", "completed", "failed", "stopped")
_FIRE_FIELDS = ("run_name", "outcome", "owner", "pid", "started", "ended", "detail")


@dataclass(frozen=True)
class ScheduleRecord:
    """One schedule as stored: what to run, when, and what to do on overlap or after downtime."""

    name: str
    module: str
    pipeline: str
    cron: str
    timezone: str = "UTC"
    params: dict[str, str] = field(default_factory=dict)  # as given: parsed by the run
    overlap: str = "skip"
    catchup: str = "none"
    state: str = "active"
    created: float = 0.0
    resumed: float = 0.0
    target: str = "local"  # local: fired by `dynpipe scheduler`; kubernetes: a CronJob fires it
    placement: dict[str, str] = field(default_factory=dict)  # kubernetes: namespace, cronjob, configmap


@dataclass(frozen=True)
class FireRecord:
    """One due time of a schedule (or a ``run-now``) and what became of it."""

    schedule: str
    fire_time: float
    kind: str
    outcome: str
    run_name: str | None = None
    owner: str | None = None
    pid: int | None = None
    started: float | None = None
    ended: float | None = None
    detail: str | None = None

    @property
    def duration(self) -> float | None:
        if self.started is None or self.ended is None:
            return None
        return self.ended - self.started


class ScheduleStore:
    """Schedules and fires of one store: the root's (``$DYNPIPE_HOME`` or the nearest ``.dynpipe/``)
    ``metadata.db``, or the database of ``url`` (default: ``DYNPIPE_STORE_URL`` or the project config)."""

    def __init__(self, root: Path | None = None, url: str | None = _UNSET) -> None:
        from .. import project_config
        from .metadata_url import sqlite_path
        from .urls import is_postgres_url

        self.root = (root or find_store_root()).resolve()
        self.url: str | None = project_config.store_url() if url is _UNSET else url
        self._db: ScheduleDb
        if self.url is not None and is_postgres_url(self.url):
            from .schedule_db import PostgresScheduleDb  # psycopg is imported only when asked for

            self._db = PostgresScheduleDb(self.url)
        else:
            from .schedule_db import SqliteScheduleDb

            path = sqlite_path(self.url, self.root)
            path.parent.mkdir(parents=True, exist_ok=True)
            self._db = SqliteScheduleDb(path)
        #: Where the schedules are, for messages: a path, or the URL with its password masked.
        self.where = self._db.where

    def close(self) -> None:
        self._db.close()

    def _write(self, sql: str, args: Sequence[Any], mine: Callable[[], bool] | None = None) -> int:
        """One write; after a lost connection it is made again (every write here is safe to
        repeat), and ``mine`` tells whether a write that now changes nothing was our own."""
        try:
            return self._db.run(sql, args)
        except self._db.lost:
            changed = self._db.run(sql, args, again=True)
            return 1 if changed == 0 and mine is not None and mine() else changed

    # -- schedules -------------------------------------------------------------------
    def create(self, record: ScheduleRecord, now: float | None = None) -> ScheduleRecord:
        """Store a new schedule; a name already taken is an error naming it. Due times count from ``now``."""
        now = time.time() if now is None else now
        stored = ScheduleRecord(**{**record.__dict__, "created": now, "resumed": now})
        row = (stored.name, stored.module, stored.pipeline, stored.cron, stored.timezone,
               json.dumps(stored.params), stored.overlap, stored.catchup, stored.state, now, now,
               stored.target, json.dumps(stored.placement) if stored.placement else None)
        if not self._write(_INSERT_SCHEDULE, row, mine=lambda: self._find(stored.name) == stored):
            raise ValueError(
                f"a schedule named {record.name!r} already exists in {self.where}"
                " (delete it first, or choose another name)"
            )
        return stored

    def _find(self, name: str) -> ScheduleRecord | None:
        rows = self._db.rows("SELECT * FROM schedules WHERE name = ?", (name,))
        return _schedule(rows[0]) if rows else None

    def get(self, name: str) -> ScheduleRecord:
        found = self._find(name)
        if found is None:
            known = ", ".join(s.name for s in self.schedules()) or "none"
            raise KeyError(f"no schedule named {name!r} in {self.where} (schedules: {known})")
        return found

    def schedules(self, target: str | None = None) -> list[ScheduleRecord]:
        """All schedules, or those of one target (``local``: what ``dynpipe scheduler`` fires)."""
        if target is None:
            return [_schedule(r) for r in self._db.rows("SELECT * FROM schedules ORDER BY name")]
        rows = self._db.rows("SELECT * FROM schedules WHERE target = ? ORDER BY name", (target,))
        return [_schedule(r) for r in rows]

    def set_state(self, name: str, state: str, now: float | None = None) -> ScheduleRecord:
        """Pause or resume; resuming restarts the clock so paused ticks are not "missed"."""
        self.get(name)
        if state not in ("active", "paused"):
            raise ValueError(f"schedule state {state!r}: expected active or paused")
        if state == "active":
            self._write(
                "UPDATE schedules SET state = ?, resumed = ? WHERE name = ? AND state != ?",
                (state, time.time() if now is None else now, name, state),
            )
        else:
            self._write("UPDATE schedules SET state = ? WHERE name = ?", (state, name))
        return self.get(name)

    def delete(self, name: str) -> None:
        """Remove the schedule and its fire history (runs stay in the store)."""
        self.get(name)

        def remove(execute: Execute) -> None:
            execute("DELETE FROM schedules WHERE name = ?", (name,))
            execute("DELETE FROM schedule_fires WHERE schedule = ?", (name,))

        try:
            self._db.atomically(remove)
        except self._db.lost:
            self._db.atomically(remove, again=True)

    # -- fires -------------------------------------------------------------------------
    def cursor(self, record: ScheduleRecord) -> float:
        """Due times after this one are still to be decided (fired, queued, skipped or missed)."""
        rows = self._db.rows(
            "SELECT MAX(fire_time) AS t FROM schedule_fires WHERE schedule = ? AND kind = 'cron'", (record.name,)
        )
        last = rows[0]["t"] if rows and rows[0]["t"] is not None else 0.0
        return max(float(last), record.resumed)

    def _fire(self, schedule: str, fire_time: float) -> FireRecord | None:
        rows = self._db.rows("SELECT * FROM schedule_fires WHERE schedule = ? AND fire_time = ?", (schedule, fire_time))
        return FireRecord(**rows[0]) if rows else None

    def _is_mine(self, fire: FireRecord) -> bool:
        """A claim that inserted nothing was still ours if the row is exactly what we wrote (its
        first attempt committed before the connection was lost); an owner names one scheduler."""
        return fire.owner is not None and self._fire(fire.schedule, fire.fire_time) == fire

    def claim(self, fire: FireRecord) -> bool:
        """Record a fire unless another process already did; True when this call won it."""
        return self._write(_INSERT_FIRE, astuple(fire), mine=lambda: self._is_mine(fire)) == 1

    def claim_all(self, fires: list[FireRecord]) -> list[FireRecord]:
        """Claim many fires in one transaction (a long outage's missed ticks); return those this call won."""

        rows = [astuple(fire) for fire in fires]
        try:
            inserted = self._db.insert_new(_INSERT_FIRE, rows)
        except self._db.lost:
            inserted = self._db.insert_new(_INSERT_FIRE, rows, again=True)
            if not any(inserted):  # the first attempt may have committed them
                inserted = [self._is_mine(fire) for fire in fires]
        return [fire for fire, won in zip(fires, inserted, strict=True) if won]

    def update(self, schedule: str, fire_time: float, *, expect: str | None = None, **changes: Any) -> bool:
        """Change a fire's fields; with ``expect``, only if its outcome still is that (a compare-and-set)."""
        unknown = set(changes) - set(_FIRE_FIELDS)
        if unknown:
            raise ValueError(f"schedule fires have no field(s) {', '.join(sorted(unknown))}")
        sets = ", ".join(f"{k} = ?" for k in changes)
        sql = f"UPDATE schedule_fires SET {sets} WHERE schedule = ? AND fire_time = ?"
        args: list[Any] = [*changes.values(), schedule, fire_time]
        if expect is not None:
            sql += " AND outcome = ?"
            args.append(expect)

        def mine() -> bool:
            now = self._fire(schedule, fire_time)
            return now is not None and all(getattr(now, k) == v for k, v in changes.items())

        return self._write(sql, args, mine=mine) == 1

    def fires(
        self, schedule: str | None = None, outcome: str | None = None, limit: int | None = None
    ) -> list[FireRecord]:
        """Newest first."""
        where, args = [], []
        if schedule is not None:
            where.append("schedule = ?")
            args.append(schedule)
        if outcome is not None:
            where.append("outcome = ?")
            args.append(outcome)
        sql = "SELECT * FROM schedule_fires"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY fire_time DESC"
        if limit:
            sql += f" LIMIT {int(limit)}"
        return [FireRecord(**r) for r in self._db.rows(sql, args)]

    def oldest_queued(self, schedule: str) -> FireRecord | None:
        rows = self._db.rows(
            "SELECT * FROM schedule_fires WHERE schedule = ? AND outcome = 'queued' ORDER BY fire_time LIMIT 1",
            (schedule,),
        )
        return FireRecord(**rows[0]) if rows else None


def _schedule(row: dict[str, Any]) -> ScheduleRecord:
    data = dict(row)
    data["params"] = json.loads(data["params"])
    data["placement"] = json.loads(data["placement"]) if data.get("placement") else {}
    return ScheduleRecord(**data)
