"""The two databases the schedule tables can live in, behind one small interface.

``ScheduleStore`` (``schedules.py``) writes its SQL once, with ``?`` placeholders and
``INSERT ... ON CONFLICT DO NOTHING`` (which both SQLite and PostgreSQL understand); an
adapter here runs it. ``SqliteScheduleDb`` keeps the tables in the store folder's
``metadata.db`` (created and brought up to date on open, as before); ``PostgresScheduleDb``
uses the PostgreSQL metadata database, whose versioned schema (``postgres_schema.py``)
holds the schedule tables, so machines sharing a PostgreSQL store share their schedules.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol, TypeVar

from ..errors import StoreError

T = TypeVar("T")
#: Runs one statement inside a transaction and returns how many rows it changed.
Execute = Callable[[str, Sequence[Any]], int]

_SQLITE_SCHEMA = """
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

# Columns added to the SQLite table since it was first created, with their definitions: added on open.
_ADDED_COLUMNS = (("target", "TEXT NOT NULL DEFAULT 'local'"), ("placement", "TEXT"))


class ScheduleDb(Protocol):
    """What ``ScheduleStore`` needs of a database: reads, single writes, and transactions."""

    #: Where the tables are, for messages (a path, or a URL with its password masked).
    where: str
    #: Exceptions meaning "the connection died during a write that may have been committed".
    lost: tuple[type[Exception], ...]

    def rows(self, sql: str, args: Sequence[Any] = ()) -> list[dict[str, Any]]: ...

    def run(self, sql: str, args: Sequence[Any] = (), again: bool = False) -> int:
        """One statement in its own transaction; the number of rows it changed."""

    def atomically(self, work: Callable[[Execute], T], again: bool = False) -> T:
        """``work`` runs its statements in one transaction (all or nothing); ``again``: this
        repeats a unit of work whose connection was lost, so wait for a restarting server."""

    def insert_new(self, sql: str, rows: Sequence[Sequence[Any]], again: bool = False) -> list[bool]:
        """Run an ``INSERT ... ON CONFLICT DO NOTHING`` for each row in one transaction; which inserted."""

    def close(self) -> None: ...


class SqliteScheduleDb:
    """The schedule tables in a SQLite file, with their own connection (WAL, ``BEGIN IMMEDIATE``)."""

    lost: tuple[type[Exception], ...] = ()

    def __init__(self, path: Path) -> None:
        self.where = str(path)
        self._conn = sqlite3.connect(str(path), timeout=60.0, isolation_level=None)
        self._conn.row_factory = sqlite3.Row
        self._conn.execute("PRAGMA busy_timeout = 60000")
        self._retry(lambda: self._conn.execute("PRAGMA journal_mode = WAL"))
        self._retry(lambda: self._conn.executescript(_SQLITE_SCHEMA))
        self._retry(self._add_columns)

    def _add_columns(self) -> None:
        """Bring a table made by an older version up to date (one writer at a time)."""
        have = {r["name"] for r in self._conn.execute("PRAGMA table_info(schedules)")}
        missing = [(n, d) for n, d in _ADDED_COLUMNS if n not in have]
        if not missing:
            return

        def add(execute: Execute) -> None:
            have = {r["name"] for r in self._conn.execute("PRAGMA table_info(schedules)")}
            for name, definition in missing:
                if name not in have:
                    execute(f"ALTER TABLE schedules ADD COLUMN {name} {definition}", ())

        self.atomically(add)

    @staticmethod
    def _retry(fn: Callable[[], Any], attempts: int = 100) -> Any:
        """The WAL switch and schema set-up can report "locked" without waiting: retry them."""
        for i in range(attempts):
            try:
                return fn()
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or i == attempts - 1:
                    raise
                time.sleep(0.05)
        return None

    def rows(self, sql: str, args: Sequence[Any] = ()) -> list[dict[str, Any]]:
        return [dict(r) for r in self._conn.execute(sql, args)]

    def run(self, sql: str, args: Sequence[Any] = (), again: bool = False) -> int:
        return self._conn.execute(sql, args).rowcount

    def atomically(self, work: Callable[[Execute], T], again: bool = False) -> T:
        self._conn.execute("BEGIN IMMEDIATE")
        try:
            result = work(self.run)
        except BaseException:
            self._conn.execute("ROLLBACK")
            raise
        self._conn.execute("COMMIT")
        return result

    def insert_new(self, sql: str, rows: Sequence[Sequence[Any]], again: bool = False) -> list[bool]:
        return self.atomically(lambda execute: [execute(sql, row) == 1 for row in rows])

    def close(self) -> None:
        self._conn.close()


class PostgresScheduleDb:
    """The schedule tables of a PostgreSQL metadata database, over the metadata store's pool.

    Opening it opens ``PostgresMetadata``, which creates or migrates the versioned schema
    (the schedule tables included) once, under its advisory lock.
    """

    def __init__(self, url: str) -> None:
        import psycopg
        from psycopg import errors as pg_errors

        from .postgres import PostgresMetadata
        from .postgres_pool import RECONNECT_SECONDS, ConnectionLost, PostgresPool
        from .urls import mask_password

        self._pool: PostgresPool = PostgresMetadata(url)
        self.where = mask_password(url)
        self._reconnect_seconds = RECONNECT_SECONDS
        self.lost: tuple[type[Exception], ...] = (ConnectionLost,)
        self._driver_error: type[Exception] = psycopg.Error
        self._retryable: tuple[type[Exception], ...] = (pg_errors.DeadlockDetected, pg_errors.SerializationFailure)

    def rows(self, sql: str, args: Sequence[Any] = ()) -> list[dict[str, Any]]:
        try:
            return self._pool.query(_placeholders(sql), args)
        except self._driver_error as exc:
            raise self._failed(exc) from None

    def _failed(self, exc: Exception) -> StoreError:
        """A driver error as the ``StoreError`` callers handle (a scheduler logs it and goes on)."""
        return StoreError(f"schedules in the PostgreSQL metadata {self.where}: {type(exc).__name__}: {exc}")

    def run(self, sql: str, args: Sequence[Any] = (), again: bool = False) -> int:
        return self.atomically(lambda execute: execute(sql, args), again)

    def atomically(self, work: Callable[[Execute], T], again: bool = False) -> T:
        return self._transaction(lambda conn: work(lambda sql, args: conn.execute(_placeholders(sql), args).rowcount),
                                 again)

    def insert_new(self, sql: str, rows: Sequence[Sequence[Any]], again: bool = False) -> list[bool]:
        """Pipelined: a long outage's thousands of missed ticks take a few round trips, not one each."""
        if not rows:
            return []

        def insert(conn: Any) -> list[bool]:
            cur = conn.cursor()
            cur.executemany(_placeholders(sql) + " RETURNING 1", rows, returning=True)
            won = [cur.fetchone() is not None]
            while cur.nextset():
                won.append(cur.fetchone() is not None)
            return won

        return self._transaction(insert, again)

    def _transaction(self, work: Callable[[Any], T], again: bool, attempts: int = 20) -> T:
        """A deadlock victim tries again; a lost connection raises ``ConnectionLost`` (``lost``)."""
        patience = self._reconnect_seconds if again else 0.0
        for i in range(attempts):
            try:
                with self._pool._connection(patience) as conn, conn.transaction():
                    return work(conn)
            except self._retryable as exc:
                if i == attempts - 1:
                    raise self._failed(exc) from None
                time.sleep(0.005 * (i + 1))
            except self._driver_error as exc:
                raise self._failed(exc) from None
        raise AssertionError("unreachable")

    def close(self) -> None:
        self._pool.close()


def _placeholders(sql: str) -> str:
    """psycopg's ``%s`` for the ``?`` the schedule store writes (its SQL has no other ``?`` or ``%``)."""
    return sql.replace("?", "%s")
