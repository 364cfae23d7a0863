"""Schedules in a shared PostgreSQL store: two machines (two store folders, one database) share
their schedules and never fire one tick twice; the schedule tables come with the versioned schema."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from datetime import timedelta
from pathlib import Path

import psycopg
import pytest
from backends import PostgresServer
from test_schedule import MODULE, T0, FakeClock, record, wait_for

from dynpipe.schedule.scheduler import Scheduler
from dynpipe.store.postgres_schema import SCHEMA_VERSION
from dynpipe.store.schedules import FireRecord, ScheduleStore

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def shared_url(postgres_server: PostgresServer, monkeypatch: pytest.MonkeyPatch) -> str:
    url = postgres_server.url(postgres_server.new_database())
    monkeypatch.setenv("DYNPIPE_STORE_URL", url)
    return url


def machine(tmp_path: Path, name: str) -> Path:
    """A machine's own store folder (its DYNPIPE_HOME); only the database URL is shared."""
    home = tmp_path / name
    home.mkdir()
    return home


def test_two_machines_share_schedules_and_fire_each_tick_once(shared_url: str, tmp_path: Path) -> None:
    home_a, home_b = machine(tmp_path, "a"), machine(tmp_path, "b")
    ScheduleStore(home_a).create(record(overlap="queue"), now=T0.timestamp())
    started: list[list[str]] = [[], []]
    clocks = [FakeClock(T0), FakeClock(T0)]
    scheds = [
        Scheduler(ScheduleStore(home), clock=clocks[i], command=lambda r, n: ["true"],
                  log=lambda line, i=i: started[i].append(line) if "starting run" in line else None)
        for i, home in enumerate((home_a, home_b))
    ]

    def tick(i: int, minute: int) -> None:
        clocks[i].t = T0 + timedelta(minutes=minute, seconds=1)
        scheds[i].step()

    def drain(i: int) -> None:
        wait_for("runs to end", lambda: all(c.proc.poll() is not None for c in scheds[i].children.values()))
        scheds[i].reap()

    # Taking turns, each machine fires the schedule the other created and sees the other's claim.
    for minute, first in ((1, 1), (2, 0)):
        tick(first, minute)
        tick(1 - first, minute)
        drain(0), drain(1)
    assert [len(lines) for lines in started] == [1, 1]
    assert "s-20260601T120100Z" in started[1][0] and "s-20260601T120200Z" in started[0][0]

    # At the same moment: a barrier lines both up on every tick; each tick is still fired once.
    barrier = threading.Barrier(2, timeout=30)
    errors: list[BaseException] = []

    def both(i: int) -> None:
        try:
            for minute in range(3, 9):
                barrier.wait()
                tick(i, minute)
                barrier.wait()
                drain(i)
        except BaseException as exc:
            errors.append(exc)
            barrier.abort()

    threads = [threading.Thread(target=both, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not errors, errors
    fires = ScheduleStore(home_b).fires("s")
    assert len(fires) == 8 and len({f.fire_time for f in fires}) == 8
    assert {f.outcome for f in fires} == {"completed"}
    names = [line.split("starting run ")[1].split()[0] for line in started[0] + started[1]]
    assert sorted(names) == sorted(f.run_name for f in fires)  # no tick started twice, none lost
    assert {f.owner for f in fires} == {scheds[0].owner, scheds[1].owner}
    assert not (home_a / "metadata.db").exists() and not (home_b / "metadata.db").exists()


def cli(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DYNPIPE_HOME": str(home)}
    out = subprocess.run([sys.executable, "-m", "dynpipe.cli", *args], capture_output=True, text=True, timeout=120,
                         env=env)
    assert out.returncode == 0, out.stderr
    return out


def test_schedule_list_on_one_machine_shows_a_schedule_created_on_another(shared_url: str, tmp_path: Path) -> None:
    home_a, home_b = machine(tmp_path, "a"), machine(tmp_path, "b")
    module = tmp_path / "nightly.py"
    module.write_text(MODULE)
    cli(home_a, "schedule", "create", "nightly", str(module), "--cron", "0 3 * * *", "--timezone", "Europe/Berlin")
    ScheduleStore(home_a).set_state("nightly", "paused")
    listing = cli(home_b, "schedule", "list").stdout
    assert "nightly" in listing and " paused " in listing and "0 3 * * * (Europe/Berlin)" in listing
    ScheduleStore(home_b).delete("nightly")
    gone = cli(home_a, "schedule", "list").stdout
    assert "nightly" not in gone and "no schedules in postgresql://" in gone and "***" in gone


def test_a_version_2_database_gets_the_schedule_tables_and_version_3(shared_url: str, store_home: Path) -> None:
    ScheduleStore(store_home).create(record(), now=T0.timestamp())
    with psycopg.connect(shared_url, autocommit=True) as conn:  # as the dynpipe before schedules left it
        conn.execute("DROP TABLE schedules, schedule_fires")
        conn.execute("UPDATE schema_version SET version = 2")
    store = ScheduleStore(store_home)
    assert store.schedules() == []
    store.create(record(), now=T0.timestamp())
    assert store.claim(FireRecord("s", T0.timestamp(), "cron", "missed"))
    with psycopg.connect(shared_url, autocommit=True) as conn:
        assert conn.execute("SELECT version FROM schema_version").fetchall() == [(SCHEMA_VERSION,)]
    assert SCHEMA_VERSION >= 3


def test_a_claim_whose_connection_dies_is_made_again_and_won_once(shared_url: str, store_home: Path) -> None:
    store = ScheduleStore(store_home)
    store.create(record(), now=T0.timestamp())
    with psycopg.connect(shared_url, autocommit=True) as conn:
        # The first insert into schedule_fires kills its own server process (a real lost connection).
        conn.execute("CREATE SEQUENCE kill_once")
        conn.execute(
            "CREATE FUNCTION kill_once() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN"
            " IF nextval('kill_once') = 1 THEN PERFORM pg_terminate_backend(pg_backend_pid()); END IF;"
            " RETURN NEW; END $$"
        )
        conn.execute(
            "CREATE TRIGGER kill_once BEFORE INSERT ON schedule_fires FOR EACH ROW EXECUTE FUNCTION kill_once()"
        )
    fire = FireRecord("s", T0.timestamp() + 60, "cron", "running", run_name="s-1", owner="host:1:abc")
    assert store.claim(fire)
    assert store.fires("s") == [fire]
    assert not store.claim(FireRecord("s", fire.fire_time, "cron", "running", run_name="s-1", owner="host:2:def"))
    with psycopg.connect(shared_url, autocommit=True) as conn:
        assert conn.execute("SELECT last_value FROM kill_once").fetchone() == (3,)  # the trigger did fire first


class TickClock(FakeClock):
    """A second of schedule time per 10 ms of waiting: ``serve()`` loops quickly through a minute."""

    def wait(self, seconds: float, stop: threading.Event) -> None:
        stop.wait(0.01)
        self.t += timedelta(seconds=1)


def test_the_scheduler_logs_a_database_error_and_goes_on(shared_url: str, store_home: Path) -> None:
    ScheduleStore(store_home).create(record(), now=T0.timestamp())
    with psycopg.connect(shared_url, autocommit=True) as conn:
        conn.execute("ALTER TABLE schedule_fires RENAME TO elsewhere")
    lines: list[str] = []
    sched = Scheduler(ScheduleStore(store_home), clock=TickClock(T0 + timedelta(seconds=30)),
                      command=lambda r, n: ["true"], log=lines.append, poll=1.0)
    thread = threading.Thread(target=sched.serve)
    thread.start()
    try:
        wait_for("the error to be logged", lambda: any("error, retrying" in line for line in lines))
        assert any("schedule_fires" in line and "postgresql://" in line for line in lines)
        with psycopg.connect(shared_url, autocommit=True) as conn:
            conn.execute("ALTER TABLE elsewhere RENAME TO schedule_fires")
        wait_for("the 12:01 run", lambda: any("starting run s-20260601T120100Z" in line for line in lines))
    finally:
        sched.stopping.set()
        thread.join(timeout=30)
    assert not thread.is_alive()
    assert [f.run_name for f in ScheduleStore(store_home).fires("s")] == ["s-20260601T120100Z"]
