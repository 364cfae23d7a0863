"""Processes a step starts never outlive the run, and worker start failures cost no attempt.

The orchestrator is a real script in a subprocess running a pipeline whose isolated step
starts ``sleep 300`` children (``subprocess.Popen`` and a backgrounded ``os.system``).
The test sends SIGTERM / SIGHUP / SIGKILL to the orchestrator and checks /proc (with a
deadline) that no child, and no worker, survives; for TERM/HUP the run must be recorded
``stopped`` like a Ctrl-C. Start failures are injected where they happen in real life: a
module on ``PYTHONPATH`` that crashes the worker interpreter before it is ready (here a
``sitecustomize``, which every interpreter imports at start-up).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from dynpipe import Client, StepRetryConfig, pipeline, step
from dynpipe.runtimes.local import shutdown_shared_runtime

pytestmark = pytest.mark.timeout(120)

SCRIPT = textwrap.dedent(
    """
    import os, subprocess, sys, time
    from pathlib import Path
    from dynpipe import pipeline, step

    @step(runtime="isolated", enable_cache=False)
    def spawn_sleepers(pid_dir: str) -> int:
        child = subprocess.Popen(["sleep", "300"])
        os.system(f"sleep 300 & echo $! > {pid_dir}/system.pid")
        Path(pid_dir, "popen.pid").write_text(str(child.pid))
        Path(pid_dir, "worker.pid").write_text(str(os.getpid()))
        Path(pid_dir, "ready").write_text("1")
        time.sleep(300)
        return 0

    @pipeline(dynamic=True, enable_cache=False)
    def tree(pid_dir: str) -> None:
        spawn_sleepers(pid_dir)

    if __name__ == "__main__":
        tree(sys.argv[1])
    """
)


def _alive(pid: int) -> bool:
    """True while ``pid`` exists and is not a zombie (an orphan's zombie may wait for PID 1)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return False
    state = next((line.split()[1] for line in status.splitlines() if line.startswith("State:")), "")
    return state != "Z"


def _wait_for(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


@pytest.fixture
def orchestrator(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[bytes], dict[str, int], Path]]:
    """A running script whose isolated step has started its sleep children."""
    script = tmp_path / "tree.py"
    script.write_text(SCRIPT)
    pid_dir = tmp_path / "pids"
    pid_dir.mkdir()
    home = tmp_path / "store"
    env = {
        **os.environ,
        "DYNPIPE_HOME": str(home),
        "DYNPIPE_WORKERS": "1",
        "DYNPIPE_ECHO_LOGS": "false",
        "PYTHONPATH": os.pathsep.join(
            filter(None, [str(Path(__file__).resolve().parent.parent), os.environ.get("PYTHONPATH")])
        ),
    }
    proc = subprocess.Popen(
        [sys.executable, str(script), str(pid_dir)], env=env, cwd=tmp_path,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True,
    )
    pids: dict[str, int] = {}
    try:
        _wait_for(lambda: (pid_dir / "ready").exists() or proc.poll() is not None, 60, "the step's children")
        assert proc.poll() is None, proc.communicate()[0].decode(errors="replace")
        pids = {name: int((pid_dir / f"{name}.pid").read_text()) for name in ("popen", "system", "worker")}
        assert all(_alive(p) for p in pids.values())
        yield proc, pids, home
    finally:
        for pid in pids.values():  # never leave sleepers behind, even when the test fails
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        if proc.poll() is None:
            proc.kill()
        proc.communicate(timeout=30)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP])
def test_term_and_hup_stop_the_run_and_kill_the_steps_children(
    orchestrator: tuple[subprocess.Popen[bytes], dict[str, int], Path], signum: int
) -> None:
    proc, pids, home = orchestrator
    sent = time.time()
    proc.send_signal(signum)
    out, _ = proc.communicate(timeout=60)
    exited = time.time()
    _wait_for(lambda: not any(_alive(p) for p in pids.values()), 20, f"no survivors of {pids}")
    run = Client(home).get_pipeline("tree").last_run
    assert run.status.value == "stopped", out.decode(errors="replace")
    assert run.steps["spawn_sleepers"].status.value == "stopped"
    assert signal.Signals(signum).name in (run.error or ""), run.error
    # The recorded end is when the signal stopped it, not some later clean-up.
    assert run.end_time is not None and sent - 1 <= run.end_time.timestamp() <= exited + 1


def test_sigkill_of_the_orchestrator_leaves_no_child_behind(
    orchestrator: tuple[subprocess.Popen[bytes], dict[str, int], Path],
) -> None:
    proc, pids, _ = orchestrator
    proc.kill()  # no handler, no atexit: the worker must take its group down by itself
    proc.communicate(timeout=30)
    _wait_for(lambda: not any(_alive(p) for p in pids.values()), 20, f"no survivors of {pids}")


# -- worker start failures --------------------------------------------------------------------


FLAKY_START = textwrap.dedent(
    """
    import os, signal
    _counter = {counter!r}
    _n = int(open(_counter).read()) if os.path.exists(_counter) else 0
    if _n < {failures}:
        with open(_counter, "w") as fh:
            fh.write(str(_n + 1))
        if {how!r} == "kill":
            os.kill(os.getpid(), signal.SIGKILL)
        os._exit(3)
    """
)


@pytest.fixture
def broken_worker_start(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., Path]]:
    """``configure(failures, how)``: the next ``failures`` worker interpreters die at start-up."""
    site_dir = tmp_path / "site"
    site_dir.mkdir()
    counter = tmp_path / "starts"

    def configure(failures: int, how: str = "exit") -> Path:
        (site_dir / "sitecustomize.py").write_text(FLAKY_START.format(counter=str(counter), failures=failures, how=how))
        monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(site_dir), os.environ.get("PYTHONPATH")])))
        monkeypatch.setenv("DYNPIPE_WORKERS", "1")
        monkeypatch.setenv("DYNPIPE_ECHO_LOGS", "false")
        shutdown_shared_runtime()  # the next pool starts with this environment
        return counter

    yield configure
    shutdown_shared_runtime()  # later tests get healthy workers


@step(runtime="isolated", enable_cache=False, retry=StepRetryConfig(max_retries=2, delay=0))
def pid_of_worker() -> int:
    return os.getpid()


def test_start_failures_do_not_burn_the_steps_attempts(broken_worker_start: Callable[..., Path]) -> None:
    counter = broken_worker_start(3)

    @pipeline(dynamic=True, enable_cache=False)
    def flaky_pool() -> None:
        pid_of_worker()

    run = flaky_pool()
    assert counter.read_text() == "3"  # the pool really failed three times before it worked
    assert run.status.value == "completed"
    assert run.steps["pid_of_worker"].attempts == 1


@pytest.mark.parametrize(
    ("how", "said"),
    [("exit", "worker process exited with code 3 before it was ready"),
     ("kill", "worker process killed by SIGKILL before it was ready")],
)
def test_a_worker_that_never_starts_fails_the_step_saying_what_happened(
    broken_worker_start: Callable[..., Path], how: str, said: str
) -> None:
    broken_worker_start(1_000_000, how)

    @step(runtime="isolated", enable_cache=False)
    def never_runs() -> int:
        return 1

    @pipeline(dynamic=True, enable_cache=False)
    def dead_pool() -> None:
        never_runs()

    with pytest.raises(Exception, match="before it was ready") as info:
        dead_pool()
    message = str(info.value)
    assert said in message
    assert "never ran" in message
    assert "out of memory" not in message and "OOM" not in message
