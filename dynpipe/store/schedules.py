"""The schedules repository: schedules and their fires, in the store's ``metadata.db``.

It keeps its own tables and its own connection so that it does not depend on how the
rest of the metadata store is laid out. Every scheduler on one store shares these rows:
a fire is claimed by inserting its (schedule, fire time) key, which only one process wins,
so two schedulers never start the same tick twice.
"""

from __future__ import annotations

import json
import sqlite3
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .location import find_store_root

_SCHEMA = """
CREATE TABLE IF NOT EXISTS schedules (
    name TEXT PRIMARY KEY,
    module TEXT NOT NULL,
    pipeline TEXT NOT NULL,
    cron TEXT NOT NULL,
    timezone TEXT NOT NULL,
    params TEXT NOT NULL,
    overlap TEXT NOT NULL,
    catchup TEXT NOT NULL,
    state TEXT NOT NULL,
    created REAL NOT NULL,
    resumed REAL NOT NULL,
    target TEXT NOT NULL DEFAULT 'local',
    placement TEXT
);
CREATE TABLE IF NOT EXISTS schedule_fires (
    schedule TEXT NOT NULL,
    fire_time REAL NOT NULL,
    kind TEXT NOT NULL,
    run_name TEXT,
    outcome TEXT NOT NULL,
    owner TEXT,
    pid INTEGER,
    started REAL,
    ended REAL,
    detail TEXT,
    PRIMARY KEY (schedule, fire_time)
);
CREATE INDEX IF NOT EXISTS schedule_fires_by_outcome ON schedule_fires (schedule, outcome);
"""

# Columns added since the table was first created, with their definitions: added on open.
_ADDED_COLUMNS = (("target", "TEXT NOT NULL DEFAULT 'local'"), ("placement", "TEXT"))
_SCHEDULE_COLUMNS = ("name", "module", "pipeline", "cron", "timezone", "params", "overlap", "catchup", "state",
                     "created", "resumed", "target", "placement")
_PLACES = ", ".join("?" * len(_SCHEDULE_COLUMNS))

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
    """Schedules and fires of one store root (``$DYNPIPE_HOME`` or the nearest ``.dynpipe/``)."""

    def __init__(self, root: Path | None = None) -> None:
        self.root = (root or find_store_root()).resolve()
        self.root.mkdir(parents=True, exist_ok=True)
        self.path = self.root / "metadata.db"
        self._conn = sqlite3.connect(str(self.path), timeout=60.0, isolation_level=None)
        self._conn.row_factory = sqlite3.Row
        self._conn.execute("PRAGMA busy_timeout = 60000")
        self._retry(lambda: self._conn.execute("PRAGMA journal_mode = WAL"))
        self._retry(lambda: self._conn.executescript(_SCHEMA))
        self._retry(self._add_columns)

    def _add_columns(self) -> None:
        """Bring a table made by an older version up to date (one writer at a time)."""
        have = {r["name"] for r in self._conn.execute("PRAGMA table_info(schedules)")}
        missing = [(n, d) for n, d in _ADDED_COLUMNS if n not in have]
        if not missing:
            return
        self._conn.execute("BEGIN IMMEDIATE")
        try:
            have = {r["name"] for r in self._conn.execute("PRAGMA table_info(schedules)")}
            for name, definition in missing:
                if name not in have:
                    self._conn.execute(f"ALTER TABLE schedules ADD COLUMN {name} {definition}")
            self._conn.execute("COMMIT")
        except BaseException:
            self._conn.execute("ROLLBACK")
            raise

    @staticmethod
    def _retry(fn: Any, attempts: int = 100) -> Any:
        """The WAL switch and schema set-up can report "locked" without waiting: retry them."""
        for i in range(attempts):
            try:
                return fn()
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or i == attempts - 1:
                    raise
                time.sleep(0.05)
        return None

    def close(self) -> None:
        self._conn.close()

    # -- schedules -------------------------------------------------------------------
    def create(self, record: ScheduleRecord, now: float | None = None) -> ScheduleRecord:
        """Store a new schedule; a name already taken is an error naming it. Due times count from ``now``."""
        now = time.time() if now is None else now
        stored = ScheduleRecord(**{**record.__dict__, "created": now, "resumed": now})
        try:
            self._conn.execute(
                f"INSERT INTO schedules ({', '.join(_SCHEDULE_COLUMNS)}) VALUES ({_PLACES})",
                (stored.name, stored.module, stored.pipeline, stored.cron, stored.timezone,
                 json.dumps(stored.params), stored.overlap, stored.catchup, stored.state, now, now,
                 stored.target, json.dumps(stored.placement) if stored.placement else None),
            )
        except sqlite3.IntegrityError:
            raise ValueError(
                f"a schedule named {record.name!r} already exists in {self.root}"
                " (delete it first, or choose another name)"
            ) from None
        return stored

    def get(self, name: str) -> ScheduleRecord:
        row = self._conn.execute("SELECT * FROM schedules WHERE name = ?", (name,)).fetchone()
        if row is None:
            known = ", ".join(s.name for s in self.schedules()) or "none"
            raise KeyError(f"no schedule named {name!r} in {self.root} (schedules: {known})")
        return _schedule(row)

    def schedules(self, target: str | None = None) -> list[ScheduleRecord]:
        """All schedules, or those of one target (``local``: what ``dynpipe scheduler`` fires)."""
        if target is None:
            return [_schedule(r) for r in self._conn.execute("SELECT * FROM schedules ORDER BY name")]
        rows = self._conn.execute("SELECT * FROM schedules WHERE target = ? ORDER BY name", (target,))
        return [_schedule(r) for r in rows]

    def set_state(self, name: str, state: str, now: float | None = None) -> ScheduleRecord:
        """Pause or resume; resuming restarts the clock so paused ticks are not "missed"."""
        self.get(name)
        if state not in ("active", "paused"):
            raise ValueError(f"schedule state {state!r}: expected active or paused")
        if state == "active":
            self._conn.execute(
                "UPDATE schedules SET state = ?, resumed = ? WHERE name = ? AND state != ?",
                (state, time.time() if now is None else now, name, state),
            )
        else:
            self._conn.execute("UPDATE schedules SET state = ? WHERE name = ?", (state, name))
        return self.get(name)

    def delete(self, name: str) -> None:
        """Remove the schedule and its fire history (runs stay in the store)."""
        self.get(name)
        self._conn.execute("BEGIN IMMEDIATE")
        try:
            self._conn.execute("DELETE FROM schedules WHERE name = ?", (name,))
            self._conn.execute("DELETE FROM schedule_fires WHERE schedule = ?", (name,))
            self._conn.execute("COMMIT")
        except BaseException:
            self._conn.execute("ROLLBACK")
            raise

    # -- fires -------------------------------------------------------------------------
    def cursor(self, record: ScheduleRecord) -> float:
        """Due times after this one are still to be decided (fired, queued, skipped or missed)."""
        row = self._conn.execute(
            "SELECT MAX(fire_time) AS t FROM schedule_fires WHERE schedule = ? AND kind = 'cron'",
            (record.name,),
        ).fetchone()
        last = row["t"] if row is not None and row["t"] is not None else 0.0
        return max(float(last), record.resumed)

    def claim(self, fire: FireRecord) -> bool:
        """Record a fire unless another process already did; True when this call won it."""
        cur = self._conn.execute(
            "INSERT OR IGNORE INTO schedule_fires VALUES (?,?,?,?,?,?,?,?,?,?)",
            (fire.schedule, fire.fire_time, fire.kind, fire.run_name, fire.outcome, fire.owner,
             fire.pid, fire.started, fire.ended, fire.detail),
        )
        return cur.rowcount == 1

    def claim_all(self, fires: list[FireRecord]) -> list[FireRecord]:
        """Claim many fires in one transaction (a long outage's missed ticks); return those this call won."""
        won = []
        self._conn.execute("BEGIN IMMEDIATE")
        try:
            for fire in fires:
                if self.claim(fire):
                    won.append(fire)
            self._conn.execute("COMMIT")
        except BaseException:
            self._conn.execute("ROLLBACK")
            raise
        return won

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
        return self._conn.execute(sql, args).rowcount == 1

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
        return [FireRecord(**dict(r)) for r in self._conn.execute(sql, args)]

    def oldest_queued(self, schedule: str) -> FireRecord | None:
        row = self._conn.execute(
            "SELECT * FROM schedule_fires WHERE schedule = ? AND outcome = 'queued' ORDER BY fire_time LIMIT 1",
            (schedule,),
        ).fetchone()
        return FireRecord(**dict(row)) if row is not None else None


def _schedule(row: sqlite3.Row) -> ScheduleRecord:
    data = dict(row)
    data["params"] = json.loads(data["params"])
    data["placement"] = json.loads(data["placement"]) if data.get("placement") else {}
    return ScheduleRecord(**data)
