"""Managed schedules: cron in time zones, the scheduler's decisions (injected clock, real child
processes gated by files), two schedulers on one store, and the ``dynpipe schedule`` CLI."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from backends import Backend

from dynpipe.schedule import ScheduleSpec, create_schedule, list_schedule_runs
from dynpipe.schedule.cron import CronSchedule, normalize_cron
from dynpipe.schedule.module_info import resolve_module
from dynpipe.schedule.scheduler import Scheduler
from dynpipe.store.schedules import FireRecord, ScheduleRecord, ScheduleStore

UTC = timezone.utc
MODULE = """
import sys
from dynpipe import pipeline, step

print("set-up cell ran", file=sys.stderr)
raise SystemExit("importing this module runs its set-up cells: a schedule must not import it")

@step(enable_cache=False)
def tick(label: str) -> str:
    return label

@pipeline(dynamic=True, name="nightly_pipe")
def nightly(label: str = "x", epochs: int = 1) -> None:
    tick(label)
"""


class FakeClock:
    """The scheduler's clock in these tests: waiting moves time on at once."""

    def __init__(self, start: datetime) -> None:
        self.t = start

    def now(self) -> datetime:
        return self.t

    def wait(self, seconds: float, stop: threading.Event) -> None:
        self.t += timedelta(seconds=seconds)


def wait_for(what: str, pred: Callable[[], bool], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.02)


class Gates:
    """Child runs as real processes that start, then wait until the test releases them with an exit code."""

    def __init__(self, folder: Path, auto: bool = False) -> None:
        self.folder = folder
        self.auto = auto  # each run ends by itself at once
        folder.mkdir(exist_ok=True)

    def command(self, record: ScheduleRecord, run_name: str) -> list[str]:
        d = self.folder
        if self.auto:
            return ["/bin/sh", "-c", f'touch "{d}/started-{run_name}"']
        script = (
            f'touch "{d}/started-{run_name}"; '
            f'while [ ! -e "{d}/release-{run_name}" ]; do sleep 0.02; done; exit $(cat "{d}/release-{run_name}")'
        )
        return ["/bin/sh", "-c", script]

    def started(self) -> list[str]:
        return sorted(p.name.removeprefix("started-") for p in self.folder.glob("started-*"))

    def release(self, run_name: str, code: int = 0) -> None:
        tmp = self.folder / f"tmp-{run_name}"
        tmp.write_text(str(code))
        tmp.rename(self.folder / f"release-{run_name}")


def record(name: str = "s", cron: str = "* * * * *", **kw: object) -> ScheduleRecord:
    return ScheduleRecord(name=name, module="/nowhere.py", pipeline="p", cron=cron, **kw)  # type: ignore[arg-type]


T0 = datetime(2026, 6, 1, 12, 0, 0, tzinfo=UTC)


def make(store_home: Path, tmp_path: Path, rec: ScheduleRecord, start: datetime = T0, **kw: object):
    store = ScheduleStore(store_home)
    assert store.where.startswith("postgresql://") == ("DYNPIPE_STORE_URL" in os.environ)  # follows the store URL
    store.create(rec, now=start.timestamp())
    gates = Gates(tmp_path / "gates", auto=bool(kw.pop("auto", False)))
    lines: list[str] = []
    clock = FakeClock(start)
    sched = Scheduler(store, clock=clock, command=gates.command, log=lines.append, poll=1e9, **kw)  # type: ignore[arg-type]
    return store, sched, clock, gates, lines


def drain(sched: Scheduler) -> None:
    wait_for("children to end", lambda: all(c.proc.poll() is not None for c in sched.children.values()))
    sched.reap()


def outcomes(store: ScheduleStore, name: str = "s") -> list[tuple[str, str]]:
    return [(f.run_name or datetime.fromtimestamp(f.fire_time, UTC).strftime("%H:%M"), f.outcome)
            for f in reversed(store.fires(name))]


# -- cron ---------------------------------------------------------------------------------


def test_cron_forms_and_clear_errors() -> None:
    assert normalize_cron("@hourly") == "0 * * * *" and normalize_cron("@DAILY") == "0 0 * * *"
    assert normalize_cron(" 0  3 * * 1-5 ") == "0 3 * * 1-5"
    with pytest.raises(ValueError, match="has 6 fields: seconds are not supported"):
        normalize_cron("*/5 * * * * *")
    with pytest.raises(ValueError, match="'0 3 \\* \\*' has 4 fields"):
        normalize_cron("0 3 * *")
    with pytest.raises(ValueError, match="'@reboot': unknown macro"):
        normalize_cron("@reboot")
    with pytest.raises(ValueError, match="'61 \\* \\* \\* \\*' is not valid"):
        normalize_cron("61 * * * *")
    with pytest.raises(ValueError, match="unknown time zone 'Europe/Nowhere'"):
        CronSchedule("@daily", "Europe/Nowhere")


def test_dst_in_europe_berlin_fires_each_wall_time_once() -> None:
    daily = CronSchedule("30 2 * * *", "Europe/Berlin")
    spring = daily.between(datetime(2026, 3, 27, tzinfo=UTC), datetime(2026, 3, 31, tzinfo=UTC))
    assert [t.astimezone(daily.tz).strftime("%d %H:%M %Z") for t in spring] == [
        "27 02:30 CET", "28 02:30 CET", "29 03:30 CEST", "30 02:30 CEST"]  # 02:30 on the 29th does not exist
    autumn = daily.between(datetime(2026, 10, 24, tzinfo=UTC), datetime(2026, 10, 27, tzinfo=UTC))
    assert [t.astimezone(daily.tz).strftime("%d %H:%M %Z") for t in autumn] == [
        "24 02:30 CEST", "25 02:30 CEST", "26 02:30 CET"]  # 02:30 on the 25th happens twice, fires once
    hourly = CronSchedule("@hourly", "Europe/Berlin")
    got = hourly.between(datetime(2026, 3, 28, 23, 30, tzinfo=UTC), datetime(2026, 3, 29, 2, 30, tzinfo=UTC))
    assert [t.astimezone(hourly.tz).strftime("%H:%M") for t in got] == ["01:00", "03:00", "04:00"]
    assert len(set(got)) == len(got)


def test_scheduler_across_dst_with_injected_clock(backend: Backend, store_home: Path, tmp_path: Path) -> None:
    start = datetime(2026, 3, 27, 12, tzinfo=UTC)
    store, sched, clock, gates, lines = make(
        store_home, tmp_path, record(cron="30 2 * * *", timezone="Europe/Berlin"), start=start, auto=True
    )
    while clock.t < datetime(2026, 3, 31, tzinfo=UTC):
        clock.wait(sched.step(), sched.stopping)
        drain(sched)
    assert gates.started() == ["s-20260328T013000Z", "s-20260329T013000Z", "s-20260330T003000Z"]
    assert [o for _, o in outcomes(store)] == ["completed"] * 3
    assert any("2026-03-29 03:30 CEST starting run s-20260329T013000Z" in line for line in lines)


# -- missed ticks and catch-up ----------------------------------------------------------------


@pytest.mark.parametrize("catchup", ["none", "latest", "all"])
def test_missed_ticks_are_reported_as_missed_and_caught_up_by_policy(
    backend: Backend, store_home: Path, tmp_path: Path, catchup: str
) -> None:
    store, sched, clock, gates, lines = make(store_home, tmp_path, record(cron="@hourly", catchup=catchup))
    clock.t = T0 + timedelta(hours=3, minutes=10)  # the scheduler was down for 13:00, 14:00, 15:00
    sched.step()
    fired = {"none": [], "latest": ["s-20260601T150000Z"], "all": ["s-20260601T130000Z"]}[catchup]
    wait_for("the first catch-up run", lambda: gates.started() == fired)
    missed = [f for f in store.fires("s") if f.outcome == "missed"]
    assert len(missed) == {"none": 3, "latest": 2, "all": 0}[catchup]
    assert sum("missed (no scheduler was running then)" in line for line in lines) == len(missed)
    assert not any("skipped" in line for line in lines)
    if catchup == "all":  # the backlog runs one after another
        assert [o for _, o in outcomes(store)] == ["running", "queued", "queued"]
        for name in ["s-20260601T130000Z", "s-20260601T140000Z"]:
            gates.release(name)
            drain(sched)
            sched.step()
        wait_for("the third catch-up run", lambda: len(gates.started()) == 3)
        gates.release("s-20260601T150000Z")
        drain(sched)
        assert [o for _, o in outcomes(store)] == ["completed"] * 3
    for name in gates.started():
        gates.release(name)
    drain(sched)


def test_a_tick_seen_in_time_runs_and_a_paused_schedule_does_not(
    backend: Backend, store_home: Path, tmp_path: Path
) -> None:
    store, sched, clock, gates, lines = make(store_home, tmp_path, record(cron="@hourly"))
    clock.t = T0 + timedelta(hours=1, seconds=20)
    sched.step()
    wait_for("the 13:00 run", lambda: gates.started() == ["s-20260601T130000Z"])
    gates.release("s-20260601T130000Z", code=4)
    drain(sched)
    assert store.fires("s")[0].outcome == "failed" and store.fires("s")[0].detail == "exit code 4"
    assert any("s run s-20260601T130000Z failed in" in line for line in lines)
    store.set_state("s", "paused")
    clock.t = T0 + timedelta(hours=3, seconds=5)
    sched.step()
    store.set_state("s", "active", now=clock.t.timestamp())
    clock.t = T0 + timedelta(hours=4, seconds=5)
    sched.step()
    wait_for("the 16:00 run", lambda: len(gates.started()) == 2)
    assert gates.started()[-1] == "s-20260601T160000Z"
    assert not [f for f in store.fires("s") if f.outcome == "missed"]  # paused ticks are not missed
    gates.release("s-20260601T160000Z")
    drain(sched)


# -- overlap ------------------------------------------------------------------------------


@pytest.mark.parametrize("overlap", ["skip", "queue", "replace"])
def test_overlap_policies(backend: Backend, store_home: Path, tmp_path: Path, overlap: str) -> None:
    store, sched, clock, gates, lines = make(store_home, tmp_path, record(overlap=overlap))
    first, second = "s-20260601T120100Z", "s-20260601T120200Z"
    clock.t = T0 + timedelta(minutes=1, seconds=1)
    sched.step()
    wait_for("the first run", lambda: gates.started() == [first])
    clock.t += timedelta(minutes=1)
    sched.step()
    if overlap == "skip":
        assert outcomes(store) == [(first, "running"), ("12:02", "skipped")]
        assert store.fires("s")[0].detail == f"previous run {first} still going"
        assert any("skipped, previous run" in line for line in lines)
        gates.release(first)
        drain(sched)
    elif overlap == "queue":
        assert outcomes(store) == [(first, "running"), (second, "queued")]
        gates.release(first)
        drain(sched)
        sched.step()
        wait_for("the queued run", lambda: gates.started() == [first, second])
        gates.release(second)
        drain(sched)
        assert outcomes(store) == [(first, "completed"), (second, "completed")]
    else:
        wait_for("the replacing run", lambda: gates.started() == [first, second])
        assert outcomes(store) == [(first, "stopped"), (second, "running")]
        assert store.fires("s")[1].detail == f"replaced by {second}"
        gates.release(second)
        drain(sched)


# -- two schedulers, one store ----------------------------------------------------------------


def test_two_schedulers_on_one_store_fire_each_tick_once(backend: Backend, store_home: Path, tmp_path: Path) -> None:
    ScheduleStore(store_home).create(record(overlap="queue"), now=T0.timestamp())
    started: list[list[str]] = [[], []]
    barrier = threading.Barrier(2, timeout=30)
    errors: list[BaseException] = []

    def scheduler(i: int) -> None:
        try:
            clock = FakeClock(T0)
            sched = Scheduler(ScheduleStore(store_home), clock=clock, command=lambda r, n: ["true"],
                              log=lambda line: started[i].append(line) if "starting run" in line else None)
            for minute in range(1, 9):
                clock.t = T0 + timedelta(minutes=minute, seconds=1)
                barrier.wait()  # both decide the same tick at the same moment
                sched.step()
                barrier.wait()
                wait_for("runs to end", lambda: all(c.proc.poll() is not None for c in sched.children.values()))
                sched.reap()
                barrier.wait()
        except BaseException as exc:
            errors.append(exc)
            barrier.abort()

    threads = [threading.Thread(target=scheduler, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors, errors
    fires = ScheduleStore(store_home).fires("s")
    assert len(fires) == 8 and len({f.fire_time for f in fires}) == 8
    names = [line.split("starting run ")[1].split()[0] for line in started[0] + started[1]]
    assert len(names) == len(set(names))  # no tick started twice
    assert {f.run_name for f in fires if f.pid is not None} == set(names)


def test_claim_all_returns_only_the_fires_this_call_inserted(backend: Backend, store_home: Path) -> None:
    store = ScheduleStore(store_home)
    store.create(record())
    mine = [FireRecord("s", float(t), "cron", "missed", owner="a") for t in range(5)]
    assert store.claim(FireRecord("s", 2.0, "cron", "missed", owner="b"))
    assert [f.fire_time for f in store.claim_all(mine)] == [0.0, 1.0, 3.0, 4.0]
    assert store.claim_all(mine) == [] and store.claim_all([]) == []
    assert {f.fire_time: f.owner for f in store.fires("s")} == {0.0: "a", 1.0: "a", 2.0: "b", 3.0: "a", 4.0: "a"}
    store.close()


# -- managed objects and the CLI ----------------------------------------------------------


def cli(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    out = subprocess.run([sys.executable, "-m", "dynpipe.cli", *args], capture_output=True, text=True, timeout=120)
    if check:
        assert out.returncode == 0, out.stderr
    return out


def test_module_is_parsed_not_imported(tmp_path: Path) -> None:
    path = tmp_path / "nightly.py"
    path.write_text(MODULE)
    resolved, info = resolve_module(str(path))
    assert resolved == path and info.attr == "nightly" and info.name == "nightly_pipe"
    assert info.params == ("label", "epochs")
    with pytest.raises(ValueError, match="has no pipeline named 'other' \\(pipelines: nightly\\)"):
        resolve_module(f"{path}:other")
    with pytest.raises(ValueError, match="missing.py does not exist"):
        resolve_module(str(tmp_path / "missing.py"))
    spec = ScheduleSpec(name="n", module=str(path), cron="@daily", params=["nope=1"])
    with pytest.raises(ValueError, match="parameter 'nope' is not a parameter of pipeline 'nightly_pipe'"):
        create_schedule(spec)


def test_schedule_cli_lifecycle(tmp_path: Path, store_home: Path) -> None:
    path = tmp_path / "nightly.py"
    path.write_text(MODULE)
    out = cli("schedule", "create", "nightly", str(path), "--cron", "0 3 * * *", "--timezone", "Europe/Berlin",
              "-p", "label=tock", "--overlap", "queue", "--catchup", "latest")
    assert "created schedule nightly" in out.stdout and "CET" in out.stdout
    assert "set-up cell ran" not in out.stderr
    bad = cli("schedule", "create", "nightly", str(path), "--cron", "0 3 * * *", check=False)
    assert bad.returncode == 1 and "a schedule named 'nightly' already exists" in bad.stderr
    bad = cli("schedule", "create", "other", str(path), "--cron", "0 0 3 * * *", check=False)
    assert "has 6 fields: seconds are not supported" in bad.stderr
    listing = cli("schedule", "list").stdout
    assert "nightly" in listing and "active" in listing and "0 3 * * * (Europe/Berlin)" in listing
    assert cli("schedule", "pause", "nightly").stdout.strip() == "schedule nightly is paused"
    assert " paused " in cli("schedule", "list").stdout
    cli("schedule", "resume", "nightly")
    stored = ScheduleStore(store_home).get("nightly")
    assert stored.params == {"label": "tock"} and stored.overlap == "queue" and stored.catchup == "latest"
    ScheduleStore(store_home).claim(FireRecord("nightly", 1.0, "cron", "missed", detail="no scheduler"))
    assert [f.outcome for f in list_schedule_runs("nightly", store_home)] == ["missed"]
    assert "missed" in cli("schedule", "runs", "nightly").stdout
    cli("schedule", "delete", "nightly")
    missing = cli("schedule", "pause", "nightly", check=False)
    assert missing.returncode == 1 and "no schedule named 'nightly'" in missing.stderr


def test_every_subcommand_has_help_with_an_example() -> None:
    for args in (["schedule"], ["schedule", "create"], ["schedule", "list"], ["schedule", "pause"],
                 ["schedule", "resume"], ["schedule", "delete"], ["schedule", "run-now"], ["schedule", "runs"],
                 ["scheduler"]):
        text = cli(*args, "--help").stdout
        assert "example:" in text, args
    create = cli("schedule", "create", "--help").stdout
    for option in ("--cron", "--timezone", "--param", "--overlap", "--catchup", "--target", "--image", "--namespace",
                   "--service-account", "--env", "--secret-env", "--gpu", "--toleration", "--module-in-image",
                   "--output", "--apply"):
        assert option in create, option
    assert create.count("e.g.") >= 20


def test_a_long_outage_is_missed_in_one_transaction_and_one_line(
    backend: Backend, store_home: Path, tmp_path: Path
) -> None:
    store, sched, clock, gates, lines = make(store_home, tmp_path, record())
    clock.t = T0 + timedelta(days=2, seconds=5)
    sched.step()
    wait_for("the on-time run", lambda: gates.started() == ["s-20260603T120000Z"])
    missed = [f for f in store.fires("s") if f.outcome == "missed"]
    assert len(missed) == 2 * 24 * 60 - 1
    assert [line for line in lines if "missed" in line] == [
        "dynpipe scheduler: s 2879 due times from 2026-06-01 12:01 UTC to 2026-06-03 11:59 UTC missed"
        " (no scheduler was running then)"
    ]
    gates.release("s-20260603T120000Z")
    drain(sched)


RUNNABLE = """
from dynpipe import pipeline, step

@step(enable_cache=False)
def hello(who: str) -> str:
    return f"hello {who}"

@pipeline(dynamic=True)
def greet(who: str = "x") -> None:
    hello(who)
"""


def test_run_now_runs_in_a_child_and_tags_the_run(tmp_path: Path, store_home: Path) -> None:
    from dynpipe import Client

    path = tmp_path / "greet.py"
    path.write_text(RUNNABLE)
    cli("schedule", "create", "greeting", str(path), "--cron", "@yearly", "-p", "who=now")
    out = cli("schedule", "run-now", "greeting")
    (fire,) = list_schedule_runs("greeting", store_home)
    assert fire.kind == "manual" and fire.outcome == "completed" and fire.run_name.startswith("greeting-manual-")
    assert f"greeting run {fire.run_name} completed in" in out.stdout
    run = Client(store_home).get_pipeline_run(fire.run_name)
    assert run.pipeline_name == "greet" and run.steps["hello"].output.load() == "hello now"
    assert run.origin == "schedule:greeting"  # not the runner's path: runs list names the schedule
    listing = cli("schedule", "list").stdout
    assert fire.run_name in listing and "completed" in listing
    cli("run", str(path), "-p", "who=unscheduled")  # a run of the same pipeline, not by the schedule
    tagged = cli("runs", "list", "--schedule", "greeting").stdout
    assert fire.run_name in tagged and len(tagged.strip().splitlines()) == 2  # header + the one run
    assert len(cli("runs", "list", "--pipeline", "greet").stdout.strip().splitlines()) == 3


def test_runner_bad_input_exits_2_naming_the_problem(tmp_path: Path) -> None:
    path = tmp_path / "greet.py"
    path.write_text(RUNNABLE)
    for args, message in [
        ([str(tmp_path / "missing.py")], "missing.py does not exist"),
        ([f"{path}:nope"], "has no pipeline named 'nope'"),
        ([str(path), "who"], "-p 'who' is not NAME=VALUE"),
        ([str(path), "whom=1"], "has no parameter 'whom'"),
        ([str(path), "--run-name"], "--run-name needs a value"),
    ]:
        out = subprocess.run([sys.executable, "-m", "dynpipe.schedule.runner", *args], capture_output=True,
                             text=True, timeout=120)
        assert out.returncode == 2 and message in out.stderr, (args, out.stderr)


def test_parameters_are_kept_as_text_and_parsed_by_the_pipeline_signature(tmp_path: Path, store_home: Path) -> None:
    from dynpipe import Client

    path = tmp_path / "greet.py"
    path.write_text(RUNNABLE)
    cli("schedule", "create", "digits", str(path), "--cron", "@yearly", "-p", "who=5")  # who: str stays "5"
    assert ScheduleStore(store_home).get("digits").params == {"who": "5"}
    cli("schedule", "run-now", "digits")
    (fire,) = list_schedule_runs("digits", store_home)
    assert Client(store_home).get_pipeline_run(fire.run_name).steps["hello"].output.load() == "hello 5"
