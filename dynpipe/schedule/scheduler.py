"""``dynpipe scheduler``: one process that fires every active schedule of a store and supervises its runs.

Each run is a child process (a crashing run never takes the scheduler down) in its own
process group, so stopping it also reaches the worker processes it started. Decisions are
rows in the store: a due time is claimed by inserting (schedule, due time), which only one
scheduler wins, so two schedulers on one store never fire a tick twice; "queued" fires
wait in the store and are started by whichever scheduler sees the schedule idle first.
"""

from __future__ import annotations

import os
import signal
import socket
import sqlite3
import subprocess
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from types import FrameType
from typing import Protocol

from ..store.schedules import FireRecord, ScheduleRecord, ScheduleStore
from .cron import CronSchedule, fire_label, local_text, to_utc
from .procs import descendants, kill_survivors
from .runner import EXIT_BAD_INPUT, EXIT_STOPPED, run_command


class Clock(Protocol):
    """Where the scheduler reads the time and waits: injectable so tests need not wait for it."""

    def now(self) -> datetime: ...

    def wait(self, seconds: float, stop: threading.Event) -> None: ...


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(timezone.utc)

    def wait(self, seconds: float, stop: threading.Event) -> None:
        stop.wait(max(0.0, seconds))


CommandFactory = Callable[[ScheduleRecord, str], list[str]]


def default_command(record: ScheduleRecord, run_name: str) -> list[str]:
    """How a fire runs the schedule's module (see ``runner.run_command``)."""
    params = [f"{k}={v}" for k, v in record.params.items()]
    return run_command(f"{record.module}:{record.pipeline}", params, run_name, schedule=record.name)


def run_name_for(record: ScheduleRecord, when: datetime, kind: str) -> str:
    """``{schedule}-{due time}``: the run name tags a run with the schedule that fired it."""
    return f"{record.name}-{'manual-' if kind == 'manual' else ''}{fire_label(when)}"


def _die_with_parent() -> None:
    """In the child: get SIGTERM if the scheduler dies without stopping it (Linux), so no run is orphaned."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


@dataclass
class Child:
    """A run the scheduler started and still supervises."""

    fire: FireRecord
    proc: subprocess.Popen[bytes]
    started: float
    stop_reason: str | None = None
    family: dict[int, str] | None = None  # its descendants when it was told to stop


class Scheduler:
    """Fires the active schedules of ``store``; ``step()`` is one pass, ``serve()`` loops until stopped.

    ``grace`` is how late a due time may be seen and still count as on time: older ones were
    missed (the scheduler was not running) and ``catchup`` decides what to do about them.
    """

    def __init__(
        self,
        store: ScheduleStore,
        *,
        clock: Clock | None = None,
        command: CommandFactory = default_command,
        log: Callable[[str], None] | None = None,
        grace: float = 60.0,
        poll: float = 1.0,
        stop_timeout: float = 30.0,
    ) -> None:
        self.store = store
        self.clock: Clock = clock or SystemClock()
        self.command = command
        self.log = log or (lambda line: print(line, flush=True))
        self.grace = grace
        self.poll = poll
        self.stop_timeout = stop_timeout
        self.host = socket.gethostname()
        self.owner = f"{self.host}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.children: dict[tuple[str, float], Child] = {}
        self.stopping = threading.Event()
        self._crons: dict[tuple[str, str], CronSchedule] = {}
        # schedule -> (what the due times depend on, the next one): a pass decides only what is due
        self._next_due: dict[str, tuple[tuple[str, str, float], datetime]] = {}

    # -- one pass ----------------------------------------------------------------------
    def step(self) -> float:
        """Reap finished runs, decide every due time, start queued runs; seconds until the next pass."""
        self.reap()
        now = self.clock.now()
        wake = self.poll
        for record in self.store.schedules(target="local"):
            if record.state != "active":
                continue
            key = (record.cron, record.timezone, record.resumed)
            known = self._next_due.get(record.name)
            if known is None or known[0] != key or now >= known[1]:
                cron = self._cron(record)
                self._decide(record, cron, now)
                known = (key, cron.next_after(now))
                self._next_due[record.name] = known
            if record.overlap == "queue" or record.catchup == "all":  # the policies that queue
                self._start_queued(record)
            wake = min(wake, (known[1] - now).total_seconds())
        return max(0.0, wake)

    def _cron(self, record: ScheduleRecord) -> CronSchedule:
        key = (record.cron, record.timezone)
        if key not in self._crons:
            self._crons[key] = CronSchedule(record.cron, record.timezone)
        return self._crons[key]

    def _decide(self, record: ScheduleRecord, cron: CronSchedule, now: datetime) -> None:
        due = cron.between(to_utc(self.store.cursor(record)), now)
        if not due:
            return
        if record.catchup == "all":
            fire, missed = due, []
        elif record.catchup == "latest":
            fire, missed = due[-1:], due[:-1]
        else:
            on_time = [t for t in due if (now - t).total_seconds() <= self.grace]
            fire = on_time[-1:]
            missed = [t for t in due if t not in fire]
        if missed:
            won = self.store.claim_all([
                FireRecord(record.name, when.timestamp(), "cron", "missed", owner=self.owner,
                           detail="no scheduler was running at the due time")
                for when in missed
            ])
            self._log_missed(record, won)
        for i, when in enumerate(fire):
            self._fire(record, when, "cron", backlog=i > 0)

    def _log_missed(self, record: ScheduleRecord, won: list[FireRecord]) -> None:
        """A line per missed due time; a long outage's many in one line."""
        texts = [local_text(to_utc(f.fire_time), record.timezone) for f in won]
        if len(texts) > 3:
            texts = [f"{len(texts)} due times from {texts[0]} to {texts[-1]}"]
        for text in texts:
            self.log(f"dynpipe scheduler: {record.name} {text} missed (no scheduler was running then)")

    def _fire(self, record: ScheduleRecord, when: datetime, kind: str, backlog: bool = False) -> FireRecord | None:
        """Claim one due time and act on it by the overlap policy; None when another scheduler won it."""
        text = local_text(when, record.timezone)
        name = run_name_for(record, when, kind)
        busy = self._busy(record)
        waiting = self.store.oldest_queued(record.name) is not None
        if busy is None and not waiting and not backlog:
            return self._claim_and_start(record, when, kind, name)
        if record.overlap == "queue" or backlog:
            fire = FireRecord(record.name, when.timestamp(), kind, "queued", run_name=name, owner=self.owner,
                              detail=f"waiting for {busy.run_name if busy else 'earlier runs'}")
            if self.store.claim(fire):
                self.log(f"dynpipe scheduler: {record.name} {text} queued ({fire.detail})")
                return fire
            return None
        if record.overlap == "replace" and busy is not None:
            return self._claim_and_start(record, when, kind, name, replacing=busy)
        detail = f"previous run {busy.run_name} still going" if busy else "earlier runs are queued"
        fire = FireRecord(record.name, when.timestamp(), kind, "skipped", owner=self.owner, detail=detail)
        if self.store.claim(fire):
            self.log(f"dynpipe scheduler: {record.name} {text} skipped, {detail}")
            return fire
        return None

    def _claim_and_start(
        self, record: ScheduleRecord, when: datetime, kind: str, name: str, replacing: FireRecord | None = None
    ) -> FireRecord | None:
        fire = FireRecord(record.name, when.timestamp(), kind, "running", run_name=name, owner=self.owner,
                          started=time.time())
        if not self.store.claim(fire):
            return None
        if replacing is not None:
            self._stop_fire(replacing, f"replaced by {name}")
        return self._start(record, fire)

    def _start(self, record: ScheduleRecord, fire: FireRecord) -> FireRecord:
        try:
            proc = subprocess.Popen(
                self.command(record, fire.run_name or record.name),
                start_new_session=True,
                preexec_fn=_die_with_parent,
            )
        except OSError as exc:
            self.store.update(fire.schedule, fire.fire_time, outcome="failed", ended=time.time(),
                              detail=f"could not start: {exc}")
            self.log(f"dynpipe scheduler: {record.name} run {fire.run_name} failed to start: {exc}")
            return fire
        self.store.update(fire.schedule, fire.fire_time, pid=proc.pid, started=time.time(), owner=self.owner)
        started = FireRecord(**{**fire.__dict__, "pid": proc.pid})
        self.children[(fire.schedule, fire.fire_time)] = Child(started, proc, time.monotonic())
        self.log(
            f"dynpipe scheduler: {record.name} {local_text(to_utc(fire.fire_time), record.timezone)}"
            f" starting run {fire.run_name} (pid {proc.pid})"
        )
        return started

    def _start_queued(self, record: ScheduleRecord) -> None:
        if self._busy(record) is not None:
            return
        queued = self.store.oldest_queued(record.name)
        if queued is None:
            return
        if self.store.update(record.name, queued.fire_time, expect="queued", outcome="running",
                             owner=self.owner, started=time.time()):
            self._start(record, queued)

    # -- supervision -------------------------------------------------------------------
    def _busy(self, record: ScheduleRecord) -> FireRecord | None:
        """The schedule's run still going (ours or another scheduler's), if any."""
        for (schedule, _), child in self.children.items():
            if schedule == record.name:
                return child.fire
        for fire in self.store.fires(record.name, outcome="running"):
            if fire.owner != self.owner and self._alive(fire):
                return fire
            self.store.update(fire.schedule, fire.fire_time, expect="running", outcome="failed", ended=time.time(),
                              detail="its scheduler exited while it ran")
        return None

    def _alive(self, fire: FireRecord) -> bool:
        """Whether another scheduler's run is still going; runs on other machines are trusted."""
        host = (fire.owner or "").split(":", 1)[0]
        if host != self.host:
            return True
        if fire.pid is None:  # claimed, being started right now (or its scheduler died doing so)
            return fire.started is not None and time.time() - fire.started < self.stop_timeout
        try:
            os.kill(fire.pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True

    def reap(self) -> list[FireRecord]:
        """Record the runs that ended since the last pass; return their fires."""
        done = []
        for key, child in list(self.children.items()):
            code = child.proc.poll()
            if code is None:
                continue
            del self.children[key]
            done.append(self._finish(child, code))
        return done

    def _finish(self, child: Child, code: int) -> FireRecord:
        try:
            os.killpg(child.proc.pid, signal.SIGKILL)  # worker processes the run left behind
        except (ProcessLookupError, PermissionError):
            pass
        if child.family:
            kill_survivors(child.family)
        if child.stop_reason is not None or code == EXIT_STOPPED:
            outcome, detail = "stopped", child.stop_reason or "stopped"
        elif code == 0:
            outcome, detail = "completed", None
        elif code < 0:
            outcome, detail = "failed", f"killed by {signal.Signals(-code).name}"
        else:
            outcome, detail = "failed", "bad input (see its output)" if code == EXIT_BAD_INPUT else f"exit code {code}"
        ended = time.time()
        self.store.update(child.fire.schedule, child.fire.fire_time, outcome=outcome, ended=ended, detail=detail)
        took = time.monotonic() - child.started
        self.log(
            f"dynpipe scheduler: {child.fire.schedule} run {child.fire.run_name} {outcome} in {took:.1f}s"
            + (f" ({detail})" if detail and detail != outcome else "")
        )
        return FireRecord(**{**child.fire.__dict__, "outcome": outcome, "ended": ended, "detail": detail})

    def _stop_fire(self, fire: FireRecord, reason: str) -> None:
        child = self.children.get((fire.schedule, fire.fire_time))
        if child is not None:
            self._stop_children([child], reason)
        elif fire.pid is not None and self._alive(fire):
            try:
                os.kill(fire.pid, signal.SIGTERM)  # another scheduler's child on this machine
            except ProcessLookupError:
                pass

    def _stop_children(self, children: list[Child], reason: str) -> None:
        """SIGTERM each run (it ends ``stopped``), wait up to ``stop_timeout``, then SIGKILL its group."""
        for child in children:
            child.stop_reason = reason
            child.family = descendants(child.proc.pid)
            try:
                child.proc.send_signal(signal.SIGTERM)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + self.stop_timeout
        for child in children:
            try:
                child.proc.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                os.killpg(child.proc.pid, signal.SIGKILL)
                child.proc.wait(timeout=10)
            self.children.pop((child.fire.schedule, child.fire.fire_time), None)
            self._finish(child, child.proc.returncode)

    def stop_all(self, reason: str) -> None:
        self._stop_children(list(self.children.values()), reason)

    # -- the long-running process ----------------------------------------------------------
    def run_now(self, record: ScheduleRecord) -> FireRecord:
        """Start one run of ``record`` at once (overlap policy not applied) and wait for it."""
        when = self.clock.now()
        while True:
            fire = self._claim_and_start(record, when, "manual", run_name_for(record, when, "manual"))
            if fire is not None:
                break
            when = to_utc(when.timestamp() + 0.001)
        self._install_signals()
        try:
            while self.children and not self.stopping.is_set():
                self.clock.wait(0.2, self.stopping)
                finished = self.reap()
                if finished:
                    return finished[0]
            self.stop_all("stopped with the command")
        finally:
            self._restore_signals()
        return self.store.fires(record.name, limit=1)[0]

    def serve(self) -> int:
        """Loop until SIGTERM/SIGINT; then stop the running runs (recorded ``stopped``) and return."""
        self._install_signals()
        active = sum(1 for r in self.store.schedules(target="local") if r.state == "active")
        self.log(f"dynpipe scheduler: {active} active schedule(s) in {self.store.where}; SIGTERM or Ctrl-C stops it")
        try:
            while not self.stopping.is_set():
                try:
                    delay = self.step()
                except (sqlite3.Error, OSError) as exc:  # a busy or full disk must not end supervision
                    self.log(f"dynpipe scheduler: error, retrying in {self.poll:g}s: {type(exc).__name__}: {exc}")
                    delay = self.poll
                self.clock.wait(delay, self.stopping)
        finally:
            if self.children:
                self.log(f"dynpipe scheduler: stopping {len(self.children)} run(s)")
            self.stop_all(f"scheduler stopped ({self._signal or 'exit'})")
            self._restore_signals()
        return 0

    _signal: str | None = None
    _previous: dict[int, object] | None = None

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        self._signal = signal.Signals(signum).name
        self.stopping.set()

    def _install_signals(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        self._previous = {s: signal.signal(s, self._on_signal) for s in (signal.SIGTERM, signal.SIGINT)}

    def _restore_signals(self) -> None:
        for signum, handler in (self._previous or {}).items():
            signal.signal(signum, handler)  # type: ignore[arg-type]
        self._previous = None
