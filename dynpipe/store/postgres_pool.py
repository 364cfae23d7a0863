"""Connections to one PostgreSQL database: a small per-process pool that survives a lost connection.

A thread takes a connection for a unit of work and gives it back, so a run with many step
threads opens only as many connections as it has writes in flight. A connection can die
between two units of work (the server restarted, an administrator or an idle timeout
terminated its backend): before one is reused, its socket is polled, and one the server has
already written to while it sat idle (its goodbye) or closed is dropped for a fresh one, so
nothing is sent over it. A connection lost *during* a unit of work is retried once on a new
connection when that is safe: reads, and writes whose every statement is idempotent (an
``UPDATE`` that sets values, an ``INSERT ... ON CONFLICT DO NOTHING``). Any other write may
or may not have been committed, so it is not repeated: the error says so and names the host
and database, never the password.

Short steps' records are queued (``write_batch.WriteBatch``, group commit) and committed
together: one transaction whose statements are pipelined, one ``executemany`` per SQL text. A
batch is a write like any other: retried after a lost connection only if every statement in it
is safe to repeat. Every read and write of this pool commits the queue first (read-your-writes).
"""

from __future__ import annotations

import os
import select
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import psycopg
from psycopg import errors as pg_errors
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from psycopg.rows import dict_row

from ..errors import StoreError
from .urls import mask_password
from .write_batch import Grouped, Statement, WriteBatch, commit_queued

Connection = psycopg.Connection[dict[str, Any]]

# How long a retry waits for the server to accept connections again (a restart takes seconds).
RECONNECT_SECONDS = 15.0
#: the per-name lock taken before an artifact version is assigned; a batch takes its names in order
ADVISORY_LOCK = "SELECT pg_advisory_xact_lock(hashtext(%s))"


class ConnectionLost(StoreError):
    """The connection died while a unit of work was on it."""


def idempotent(sql: str) -> bool:
    """True if running ``sql`` twice leaves what running it once does (safe to repeat after a
    lost connection whose commit may have happened)."""
    head = sql.lstrip()[:6].upper()
    if "ON CONFLICT" in sql.upper() and "DO NOTHING" in sql.upper():
        return True
    return head == "SELECT" or (head == "UPDATE" and "||" not in sql)


def _dead(conn: Connection) -> bool:
    """True if an idle connection cannot be used: closed, or the server has sent it something
    (an idle connection receives data only when the server terminates it) or hung up."""
    if conn.closed or conn.broken:
        return True
    try:
        readable, _, _ = select.select([conn.pgconn.socket], [], [], 0)
    except (OSError, ValueError, psycopg.OperationalError):
        return True
    return bool(readable)


class PostgresPool:
    """Thread-safe, fork-safe connections to the database of ``url``."""

    def __init__(self, url: str) -> None:
        self.url = url
        try:
            params = conninfo_to_dict(url)
        except psycopg.ProgrammingError as exc:
            shown = mask_password(url)
            raise StoreError(f"DYNPIPE_STORE_URL={shown!r} is not a valid PostgreSQL URL: {exc}") from None
        self._password = str(params.get("password") or "")
        self._where = (
            f"database {params.get('dbname') or params.get('user') or '?'!r} on"
            f" {params.get('host') or 'localhost'}:{params.get('port') or 5432}"
            f" as user {params.get('user') or '?'!r}"
        )
        params.setdefault("connect_timeout", 10)
        params.setdefault("application_name", "dynpipe")
        self._conninfo = make_conninfo("", **params)
        self._lock = threading.Lock()
        self._idle: list[Connection] = []
        self._inherited: list[Connection] = []
        self._pid = os.getpid()
        self._batch_rolled_back = False  # whether the last batch interrupted was rolled back
        self._batch_pid = -1
        self._batch_lock()

    def _batch_lock(self) -> threading.RLock:
        """Held while a batch commits: a read or write takes it to wait for one in flight
        (read-your-writes). A forked child gets its own, and an empty batch: the parent's lock may
        be held for good in the child, and its queued records are the parent's to commit."""
        if self._batch_pid != os.getpid():
            self._batch_pid = os.getpid()
            self._commit_lock = threading.RLock()
            self._batch = WriteBatch(
                mask_password(self.url), self._commit_lock, self._commit_grouped, lambda: self._batch_rolled_back
            )
        return self._commit_lock

    def _scrub(self, message: str) -> str:
        text = " ".join(message.split())
        return text.replace(self._password, "***") if self._password else text

    def _connect(self, patience: float = 0.0) -> Connection:
        """A new connection; with ``patience``, keep trying that long (a restarting server)."""
        deadline = time.monotonic() + patience
        delay = 0.05
        while True:
            try:
                return psycopg.connect(self._conninfo, autocommit=True, row_factory=dict_row)
            except psycopg.OperationalError as exc:
                if time.monotonic() + delay > deadline:
                    reason = self._scrub(str(exc))
                    raise StoreError(f"cannot connect to the PostgreSQL metadata {self._where}: {reason}") from None
            time.sleep(delay)
            delay = min(delay * 2, 1.0)

    def _take(self) -> tuple[Connection | None, bool]:
        """An idle connection known to be alive (or None), and whether dead ones were dropped."""
        dropped = False
        with self._lock:
            if os.getpid() != self._pid:
                # A forked child must not talk over its parent's sockets, nor close them.
                self._inherited += self._idle
                self._idle = []
                self._pid = os.getpid()
            while self._idle:
                conn = self._idle.pop()
                if not _dead(conn):
                    return conn, dropped
                conn.close()
                dropped = True
        return None, dropped

    @contextmanager
    def _connection(self, patience: float = 0.0) -> Iterator[Connection]:
        conn, dropped = self._take()
        if conn is None:
            # Dead idle connections mean the server went away: give a restarting one time.
            conn = self._connect(RECONNECT_SECONDS if dropped else patience)
        try:
            yield conn
        except BaseException as exc:
            if not (conn.broken or conn.closed):
                with self._lock:
                    self._idle.append(conn)
                raise
            conn.close()
            if isinstance(exc, psycopg.OperationalError):
                raise ConnectionLost(
                    f"lost the connection to the PostgreSQL metadata {self._where}: {self._scrub(str(exc))}"
                ) from None
            raise
        else:
            with self._lock:
                self._idle.append(conn)

    def _execute(self, statements: Sequence[Statement], patience: float = 0.0) -> None:
        with self._connection(patience) as conn:
            if len(statements) == 1:
                conn.execute(*statements[0])
                return
            # One round trip: the statements, bound client-side, as one multi-statement
            # query, which the server runs as one implicit transaction (all or nothing).
            cursor = psycopg.ClientCursor(conn)
            cursor.execute(";".join(cursor.mogrify(sql, params) for sql, params in statements))

    def write(self, statements: Sequence[Statement], attempts: int = 20) -> None:
        """Run statements in one transaction, in one round trip, after the records queued before
        them (they may update a queued row)."""
        with self._batch_lock():
            self._batch.commit_pending()
        self._retrying(lambda patience: self._execute(statements, patience), [sql for sql, _ in statements], attempts)

    def _commit_grouped(self, grouped: Grouped) -> None:
        """Queued records in one transaction: an ``executemany`` per SQL text, all pipelined."""
        locks = grouped.get(ADVISORY_LOCK)
        if locks:  # the order every transaction takes them in: no deadlock between batches
            grouped[ADVISORY_LOCK] = sorted(set(locks))

        def run(patience: float) -> None:
            with self._connection(patience) as conn:
                self._batch_rolled_back = True
                with conn.pipeline(), conn.transaction(), conn.cursor() as cursor:
                    for sql, rows in grouped.items():
                        cursor.executemany(sql, rows)
                    # an interrupt from here on may land after the COMMIT: counted as committed
                    self._batch_rolled_back = False

        self._retrying(run, list(grouped), attempts=20)

    def _retrying(self, run: Callable[[float], None], sqls: Sequence[str], attempts: int = 20) -> None:
        """``run(patience)`` once; a deadlock victim tries again, a lost connection once more if
        repeating every statement of ``sqls`` is safe (see the module doc)."""
        for i in range(attempts):
            try:
                run(0.0)
                return
            except (pg_errors.DeadlockDetected, pg_errors.SerializationFailure):
                if i == attempts - 1:
                    raise
                time.sleep(0.005 * (i + 1))
            except ConnectionLost as lost:
                if not all(idempotent(sql) for sql in sqls):
                    raise ConnectionLost(
                        f"{lost}. The write may or may not have been committed, so it was not repeated"
                    ) from None
                run(RECONNECT_SECONDS)
                return

    def _settle(self) -> None:
        """Read-your-writes: commit the records queued for this database, wait for a commit in flight."""
        lock = self._batch_lock()
        commit_queued(self._batch.key)  # each batch under its own lock
        with lock:
            pass  # a batch the writer thread took (under the lock) before we looked is committed

    def query(self, sql: str, params: Any = ()) -> list[dict[str, Any]]:
        """Rows of a read, after the records queued in this process are committed (read-your-writes)."""
        self._settle()
        return self._read(sql, params)

    def _read(self, sql: str, params: Any = ()) -> list[dict[str, Any]]:
        """Rows of a read; a read whose connection was lost is asked again on a new one."""
        try:
            with self._connection() as conn:
                return conn.execute(sql, params).fetchall()
        except ConnectionLost:
            with self._connection(RECONNECT_SECONDS) as conn:
                return conn.execute(sql, params).fetchall()

    def flush(self, run_id: str | None = None) -> None:
        """Commit the queued records now; raise the error of a batch that held records of ``run_id``."""
        self._batch.flush(run_id)

    def close(self) -> None:
        try:
            self._batch.commit_pending()
        finally:
            with self._lock:
                idle, self._idle = self._idle, []
            for conn in idle:
                conn.close()
