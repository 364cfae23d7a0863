"""Both metadata backends for one test: a parametrised ``backend`` fixture.

``postgres_server`` starts Debian's PostgreSQL once per test session (``initdb`` and
``pg_ctl`` in a temporary folder, a free port, as the ``postgres`` user when the tests run
as root, which PostgreSQL refuses); every test gets a fresh database copied from an empty
template. ``conftest.py`` imports both fixtures, so any test can ask for them.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

USER = "dynpipe"
PASSWORD = "pw-" + uuid.uuid4().hex[:12]


def postgres_bin_dir() -> Path | None:
    """Where initdb and pg_ctl are: on PATH, else Debian's /usr/lib/postgresql/<ver>/bin."""
    found = shutil.which("pg_ctl")
    candidates = ([found] if found else []) + sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"), reverse=True)
    for candidate in candidates:
        folder = Path(candidate).resolve().parent
        if (folder / "initdb").exists() and (folder / "postgres").exists():
            return folder
    return None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class PostgresServer:
    """A throwaway PostgreSQL server of this test session."""

    port: int
    folder: Path
    bin_dir: Path
    as_user: list[str]

    def url(self, database: str, password: str = PASSWORD, host: str = "127.0.0.1", port: int | None = None) -> str:
        return f"postgresql://{USER}:{password}@{host}:{port or self.port}/{database}"

    def admin(self, sql: str) -> None:
        import psycopg

        with psycopg.connect(self.url("postgres"), autocommit=True) as conn:
            conn.execute(sql)

    def new_database(self) -> str:
        name = "t_" + uuid.uuid4().hex[:16]
        self.admin(f"CREATE DATABASE {name} TEMPLATE dynpipe_template")
        return name

    def pg_ctl(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*self.as_user, str(self.bin_dir / "pg_ctl"), "-D", str(self.folder / "data"), *args],
            capture_output=True, text=True, timeout=120,
        )


def start_server() -> PostgresServer | str:
    """A running server, or why there cannot be one."""
    bin_dir = postgres_bin_dir()
    if bin_dir is None:
        return "PostgreSQL binaries (initdb, pg_ctl) not found: apt-get install postgresql"
    try:
        import psycopg  # noqa: F401
    except ImportError:
        return "psycopg is not installed: pip install 'dynpipe[postgres]'"
    folder = Path(tempfile.mkdtemp(prefix="dynpipe-pg-"))
    as_user: list[str] = []
    if os.geteuid() == 0:  # postgres refuses to run as root
        account = "postgres"
        try:
            entry = pwd.getpwnam(account)
        except KeyError:
            account, entry = "nobody", pwd.getpwnam("nobody")
        os.chown(folder, entry.pw_uid, entry.pw_gid)
        as_user = ["runuser", "-u", account, "--"]
    pwfile = folder / "pw"
    pwfile.write_text(PASSWORD + "\n")
    if as_user:
        os.chown(pwfile, entry.pw_uid, entry.pw_gid)
    server = PostgresServer(_free_port(), folder, bin_dir, as_user)
    init = subprocess.run(
        [*as_user, str(bin_dir / "initdb"), "-D", str(folder / "data"), "-U", USER, f"--pwfile={pwfile}",
         "--auth-local=trust", "--auth-host=scram-sha-256", "-E", "UTF8", "--no-sync"],
        capture_output=True, text=True, timeout=120,
    )
    if init.returncode != 0:
        raise RuntimeError(f"initdb failed: {init.stderr}")
    options = (
        f"-p {server.port} -k {folder} -c listen_addresses=127.0.0.1 -c fsync=off"
        " -c synchronous_commit=off -c full_page_writes=off -c max_connections=400"
    )
    started = server.pg_ctl("-l", str(folder / "log"), "-w", "-t", "60", "-o", options, "start")
    if started.returncode != 0:
        log = (folder / "log").read_text() if (folder / "log").exists() else ""
        raise RuntimeError(f"pg_ctl start failed: {started.stderr}{log}")
    server.admin("CREATE DATABASE dynpipe_template")
    return server


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    server = start_server()
    if isinstance(server, str):
        pytest.skip(server)
    try:
        yield server
    finally:
        server.pg_ctl("-m", "immediate", "-w", "stop")
        shutil.rmtree(server.folder, ignore_errors=True)


@dataclass
class Backend:
    """The metadata backend of one test: ``sqlite`` (the store folder) or ``postgres`` (a fresh database)."""

    name: str
    url: str | None

    def count(self, table: str) -> int:
        from dynpipe.store.store import open_store

        return int(open_store().metadata.query(f"SELECT count(*) AS n FROM {table}")[0]["n"])  # type: ignore[attr-defined]


def _close_stores_of(url: str) -> None:
    """Give back the connections of the stores a test opened (the server has a connection limit)."""
    from dynpipe.store import store as store_module

    for store in list(store_module._by_given_root.values()):
        if store.store_url == url:
            store.metadata.close()
    store_module._by_given_root.clear()
    store_module._open.cache_clear()


@pytest.fixture(params=["sqlite", "postgres"])
def backend(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[Backend]:
    if request.param == "sqlite":
        monkeypatch.delenv("DYNPIPE_STORE_URL", raising=False)
        yield Backend("sqlite", None)
        return
    server: PostgresServer = request.getfixturevalue("postgres_server")
    url = server.url(server.new_database())
    monkeypatch.setenv("DYNPIPE_STORE_URL", url)
    yield Backend("postgres", url)
    _close_stores_of(url)
