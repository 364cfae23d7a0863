"""Isolated steps in local worker processes: real workers, real signals, real SQLite.

The pool is process-wide (``shared_local_runtime()``), so these tests share warm workers;
``DYNPIPE_WORKERS=4`` is set for the whole module. Steps defined at module level travel
by import path; steps defined inside a test function travel by value (cloudpickle).
"""

from __future__ import annotations

import logging
import os
import queue
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated

import psutil
import pytest
from helpers import DEADLINE, file_barrier, wait_until

from dynpipe import (
    Client,
    ResourceSettings,
    StepRetryConfig,
    pipeline,
    step,
)
from dynpipe.engine.context import current_run
from dynpipe.errors import StepExecutionError
from dynpipe.runtimes.local import WorkerCrashedError, shared_local_runtime
from dynpipe.runtimes.shipping import func_ref

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(autouse=True)
def four_workers(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("DYNPIPE_WORKERS", "4")
    monkeypatch.setenv("DYNPIPE_ECHO_LOGS", "false")
    yield


# -- steps (module level: they travel by import path) -------------------------------------


@step(runtime="isolated", enable_cache=False)
def meets_at(directory: str, parties: int) -> int:
    file_barrier(directory, parties)  # returns only if `parties` steps run at the same time
    return os.getpid()


@step(runtime="isolated", enable_cache=False)
def pid_then_sleep(pid_file: str) -> int:
    Path(pid_file + ".tmp").write_text(str(os.getpid()))
    os.replace(pid_file + ".tmp", pid_file)  # whole or absent: the test reads it as soon as it exists
    time.sleep(600)  # far past the test's timeout: only a kill ends it in time
    return os.getpid()


@step(runtime="isolated", enable_cache=False)
def whoami() -> int:
    return os.getpid()


@step(enable_cache=False)
def make_data(n: int) -> dict[str, list[float]]:
    return {"values": [i / 3 for i in range(n)]}


@step(enable_cache=False)
def summarise(data: dict[str, list[float]], scale: float) -> tuple[
    Annotated[float, "total"], Annotated[list[float], "scaled"], Annotated[bytes, "blob"]
]:
    vals = data["values"]
    return sum(vals), [v * scale for v in vals], repr(vals).encode()


@step(runtime="isolated", enable_cache=False)
def kill_myself() -> int:
    print("about to die")
    os.kill(os.getpid(), signal.SIGKILL)
    return 0


@step(runtime="isolated", enable_cache=False)
def exit_three() -> int:
    os._exit(3)


@step(runtime="isolated", enable_cache=False)
def echo_value(x: int) -> int:
    return x * 10


@step(runtime="isolated", enable_cache=False, retry=StepRetryConfig(max_retries=2, delay=0))
def crash_once(marker: str) -> str:
    path = Path(marker)
    if not path.exists():
        path.write_text("crashed once")
        os.kill(os.getpid(), signal.SIGKILL)
    return "survived"


@step(enable_cache=False)
def fail_soon(delay: float) -> int:
    time.sleep(delay)
    raise ValueError("fail_soon broke")


@step(runtime="isolated", enable_cache=False)
def chatty() -> int:
    print("to stdout")
    print("to stderr", file=sys.stderr)
    logging.getLogger("chatty").warning("a warning record")
    return 1


@step(runtime="isolated", enable_cache=False)
def tick_then_wait(release: str) -> int:
    print("tick", flush=True)
    wait_until(Path(release).exists, what=f"the test to create {release}")
    print("tock")
    return 2


@step(runtime="isolated", enable_cache=False, resources=ResourceSettings(memory="200MB"))
def allocate(megabytes: int) -> int:
    block = bytearray(megabytes * 1024 * 1024)
    return len(block)


@step(runtime="isolated", enable_cache=False, resources=ResourceSettings(cpu_count=1))
def pinned_cores() -> int:
    return len(os.sched_getaffinity(0))


@step(runtime="isolated", enable_cache=False)
def free_cores() -> int:
    return len(os.sched_getaffinity(0))


class TwoArgError(Exception):
    """Unpicklable on the way back: pickle calls __init__ with one argument."""

    def __init__(self, code: int, detail: str) -> None:
        super().__init__(f"code {code}: {detail}")


@step(runtime="isolated", enable_cache=False)
def raise_two_arg() -> int:
    raise TwoArgError(7, "bad thing")


@step(runtime="isolated", enable_cache=False)
def raise_value_error() -> int:
    raise ValueError("plain value error")


def _last_run(name: str):  # type: ignore[no-untyped-def]
    return Client().get_pipeline(name).last_run


def _warm() -> None:
    rt = shared_local_runtime()
    rt.warm_up()


# -- tests ------------------------------------------------------------------------------------


def test_step_runs_in_another_process_of_the_pool() -> None:
    @pipeline(dynamic=True)
    def pids() -> None:
        whoami()

    run = pids()
    pid = run.steps["whoami"].output.load()
    assert pid != os.getpid()
    assert pid in shared_local_runtime().worker_pids()
    assert run.steps["whoami"].runtime == "isolated"


def test_submitted_isolated_steps_run_in_parallel(tmp_path: Path) -> None:
    _warm()
    meeting = str(tmp_path / "barrier")

    @pipeline(dynamic=True)
    def parallel() -> None:
        futures = [meets_at.submit(meeting, 4) for _ in range(4)]
        for f in futures:
            f.wait()

    run = parallel()
    assert run.status == "completed"  # the barrier opened: the four ran at the same time
    pids = {s.output.load() for s in run.steps.values()}
    assert len(pids) == 4  # four different workers


def test_results_and_artifacts_identical_inline_and_isolated() -> None:
    def body(runtime: str) -> None:
        data = make_data.with_options(runtime=runtime)(7)
        summarise.with_options(runtime=runtime)(data, 2.5)

    @pipeline(dynamic=True, name="same_inline")
    def on_inline() -> None:
        body("inline")

    @pipeline(dynamic=True, name="same_isolated")
    def on_isolated() -> None:
        body("isolated")

    a = on_inline()
    b = on_isolated()
    assert b.steps["summarise"].runtime == "isolated"
    for sid in ("make_data", "summarise"):
        sa, sb = a.steps[sid], b.steps[sid]
        assert set(sa.outputs) == set(sb.outputs)
        for name in sa.outputs:
            assert sa.outputs[name].load() == sb.outputs[name].load()
            assert sa.outputs[name].content_hash == sb.outputs[name].content_hash
            assert sa.outputs[name].materializer == sb.outputs[name].materializer


def test_step_defined_in_a_function_travels_by_value() -> None:
    factor = 6

    @step(runtime="isolated", enable_cache=False)
    def local_step(x: int) -> list[int]:
        return [x * factor, os.getpid()]

    assert func_ref(local_step.entrypoint) is None
    assert func_ref(whoami.entrypoint) is not None

    @pipeline(dynamic=True)
    def by_value() -> None:
        local_step(7)

    value, pid = by_value().steps["local_step"].output.load()
    assert value == 42 and pid != os.getpid()


def test_sigkilled_worker_fails_only_its_step() -> None:
    @pipeline(dynamic=True, execution_mode="continue_on_failure")
    def crashy() -> None:
        killed = kill_myself.submit()
        others = [echo_value.submit(i) for i in range(3)]
        killed.wait()
        for f in others:
            f.wait()

    with pytest.raises(WorkerCrashedError, match="killed by SIGKILL"):
        crashy()
    run = _last_run("crashy")
    assert run.status == "failed"
    dead = run.steps["kill_myself"]
    assert dead.status == "failed"
    assert dead.error_type == "WorkerCrashedError"
    assert "worker process killed by SIGKILL" in (dead.error_message or "")
    assert "about to die" in dead.logs  # lines streamed before the crash are kept
    done = [s for k, s in run.steps.items() if k.startswith("echo_value")]
    assert sorted(s.output.load() for s in done) == [0, 10, 20]
    assert all(s.status == "completed" for s in done)

    # The pool replaced the dead worker and keeps serving.
    @pipeline(dynamic=True)
    def after_crash() -> None:
        echo_value(5)

    assert after_crash().steps["echo_value"].output.load() == 50
    assert len(shared_local_runtime().worker_pids()) <= 4


def test_exit_code_is_reported() -> None:
    @pipeline(dynamic=True)
    def exits() -> None:
        exit_three()

    with pytest.raises(WorkerCrashedError, match="exited with code 3"):
        exits()


def test_a_worker_dying_under_a_memory_limit_names_the_limit() -> None:
    @pipeline(dynamic=True)
    def limited_exit() -> None:
        exit_three.with_options(settings={"resources": ResourceSettings(memory="300MB")})()

    with pytest.raises(WorkerCrashedError, match=r"exited with code 3 \(the step ran under a memory limit of 300MB"):
        limited_exit()


def test_retries_apply_to_a_crashed_isolated_step(tmp_path: Path) -> None:
    marker = tmp_path / "crashed"

    @pipeline(dynamic=True)
    def retried() -> None:
        crash_once(str(marker))

    run = retried()
    sr = run.steps["crash_once"]
    assert sr.status == "completed"
    assert sr.attempts == 2
    assert sr.output.load() == "survived"
    assert marker.exists()


def test_fail_fast_kills_a_running_isolated_step(tmp_path: Path) -> None:
    _warm()
    pid_file = tmp_path / "long.pid"

    @pipeline(dynamic=True, execution_mode="fail_fast")
    def fast() -> None:
        long = pid_then_sleep.submit(str(pid_file))
        wait_until(pid_file.exists, what="the isolated step to start")
        fail_soon.submit(0)
        long.wait()

    # The isolated step sleeps past the test's timeout: the run ends only if it is killed.
    with pytest.raises(ValueError, match="fail_soon broke"):
        fast()
    run = _last_run("fast")
    long, failed = run.steps["pid_then_sleep"], run.steps["fail_soon"]
    assert failed.status == "failed"
    assert long.status == "stopped"
    assert long.outputs == {}
    assert long.end_time is not None and failed.end_time is not None
    assert long.end_time >= failed.end_time
    _assert_all_gone([int(pid_file.read_text())])  # its worker process was killed


def test_unpicklable_exception_becomes_step_execution_error() -> None:
    @pipeline(dynamic=True)
    def bad_exc() -> None:
        raise_two_arg()

    with pytest.raises(StepExecutionError, match="TwoArgError: code 7: bad thing"):
        bad_exc()
    sr = _last_run("bad_exc").steps["raise_two_arg"]
    assert sr.error_type == "TwoArgError"
    assert "Traceback" in (sr.traceback or "")

    @pipeline(dynamic=True)
    def plain_exc() -> None:
        raise_value_error()

    with pytest.raises(ValueError, match="plain value error"):
        plain_exc()


def test_isolated_step_logs_are_stored() -> None:
    @pipeline(dynamic=True)
    def logs_iso() -> None:
        chatty()

    run = logs_iso()
    logs = run.steps["chatty"].logs
    assert "to stdout" in logs
    assert "to stderr" in logs
    assert "a warning record" in logs
    # And readable through the Client of another process's view of the store.
    again = Client().get_pipeline_run(run.id).steps["chatty"].logs
    assert again == logs


def test_isolated_log_lines_stream_live(tmp_path: Path) -> None:
    seen_while_running: list[str] = []
    release = tmp_path / "release"

    def tail() -> list[str]:
        ctx = current_run()
        assert ctx is not None
        node = ctx.graph.nodes.get("tick_then_wait")
        return list(node.log_tail) if node is not None and "tick" in node.log_tail else []

    @pipeline(dynamic=True)
    def live() -> None:
        fut = tick_then_wait.submit(str(release))
        # The step cannot end before `release` exists, so this line arrived while it ran.
        seen_while_running.extend(wait_until(tail, what="the step's first line in the live graph"))
        assert not fut.done()
        release.touch()
        fut.wait()

    run = live()
    assert seen_while_running == ["tick"]
    assert run.steps["tick_then_wait"].logs == "tick\ntock\n"


def test_memory_limit_raises_memory_error() -> None:
    @pipeline(dynamic=True)
    def too_big() -> None:
        allocate(600)

    with pytest.raises(MemoryError, match=r"ran out of memory.*ResourceSettings\(memory='200MB'\)"):
        too_big()
    sr = _last_run("too_big").steps["allocate"]
    assert sr.status == "failed" and sr.error_type == "MemoryError"
    assert "ran out of memory" in sr.logs

    @pipeline(dynamic=True)
    def fits() -> None:
        allocate(50)
        free = echo_value(1)  # the same warm workers carry on without the limit
        del free

    run = fits()
    assert run.steps["allocate"].output.load() == 50 * 1024 * 1024


def test_cpu_affinity_is_applied_and_restored() -> None:
    total = len(os.sched_getaffinity(0))

    @pipeline(dynamic=True)
    def cores() -> None:
        pinned_cores()
        free_cores()

    _warm()
    # Run a few times so the pinned step and the free step share a worker at least once.
    for _ in range(3):
        run = cores()
        assert run.steps["pinned_cores"].output.load() == 1
        assert run.steps["free_cores"].output.load() == total


_INTERRUPT_SCRIPT = textwrap.dedent(
    """
    import os, sys, time
    from dynpipe import step, pipeline

    @step(runtime="isolated", enable_cache=False)
    def nap(i: int) -> int:
        print("started", i, os.getpid(), flush=True)
        time.sleep(600)
        return i

    @step(enable_cache=False)
    def doze() -> int:
        time.sleep(600)  # an inline step: cannot be killed, must not hold the exit either
        return 0

    @pipeline(dynamic=True)
    def napping():
        fs = [nap.submit(i) for i in range(2)] + [doze.submit()]
        for f in fs:
            f.wait()

    if __name__ == "__main__":
        napping()
    """
)


class _Output:
    """A child's merged stdout, read on a thread so every wait for a line has a deadline."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.lines: list[str] = []
        self._queue: queue.Queue[str | None] = queue.Queue()
        self._thread = threading.Thread(target=self._read, args=(proc,), daemon=True)
        self._thread.start()

    def _read(self, proc: subprocess.Popen[str]) -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            self.lines.append(line)
            self._queue.put(line)
        self._queue.put(None)

    def wait_for(self, text: str, count: int, timeout: float = 60) -> None:
        end = time.monotonic() + timeout
        seen = 0
        while seen < count:
            try:
                line = self._queue.get(timeout=max(0.0, end - time.monotonic()))
            except queue.Empty:
                raise AssertionError(f"only {seen} of {count} lines with {text!r} within {timeout}s") from None
            if line is None:
                raise AssertionError(f"the process ended after {seen} of {count} lines with {text!r}:\n{self.text()}")
            seen += text in line

    def text(self, timeout: float = 10) -> str:
        self._thread.join(timeout)
        return "".join(self.lines)


def _start_napping(tmp_path: Path) -> tuple[subprocess.Popen[str], list[int], _Output]:
    script = tmp_path / "napping.py"
    script.write_text(_INTERRUPT_SCRIPT)
    env = {**os.environ, "DYNPIPE_WORKERS": "2", "DYNPIPE_ECHO_LOGS": "true", "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [sys.executable, str(script)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        text=True, env=env, cwd=tmp_path,
    )
    output = _Output(proc)
    try:
        output.wait_for("started", 2)  # both isolated steps are running
    except AssertionError:
        proc.kill()
        raise
    workers = [p.pid for p in psutil.Process(proc.pid).children(recursive=True)]
    assert len(workers) >= 2
    return proc, workers, output


def _assert_all_gone(pids: list[int]) -> None:
    procs = []
    for pid in pids:
        try:
            procs.append(psutil.Process(pid))
        except psutil.NoSuchProcess:
            continue
    _, alive = psutil.wait_procs(procs, timeout=DEADLINE)
    alive = [p for p in alive if p.status() != psutil.STATUS_ZOMBIE]
    assert not alive, f"orphan worker processes: {alive}"


def test_ctrl_c_stops_the_run_promptly_and_leaves_no_orphan_workers(tmp_path: Path) -> None:
    proc, workers, output = _start_napping(tmp_path)
    proc.send_signal(signal.SIGINT)
    # Every step sleeps 600 s: the exit comes within the deadline only if neither the
    # isolated steps nor the inline step hold it.
    try:
        proc.wait(timeout=45)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise AssertionError("the interrupted pipeline did not exit") from None
    out = output.text()
    assert proc.returncode != 0
    assert "KeyboardInterrupt" in out
    _assert_all_gone(workers)
    run = Client().get_pipeline("napping").last_run
    assert run.status.value == "stopped"
    assert {s.status.value for s in run.steps.values()} == {"stopped"}


def test_no_orphan_workers_after_orchestrator_is_killed(tmp_path: Path) -> None:
    proc, workers, _ = _start_napping(tmp_path)
    proc.kill()  # no atexit: PR_SET_PDEATHSIG must take the workers down
    proc.wait(timeout=10)
    _assert_all_gone(workers)


def test_workers_that_cannot_start_fail_the_step_instead_of_hanging(tmp_path: Path) -> None:
    from dynpipe.runtimes.local import LocalProcessRuntime
    from dynpipe.runtimes.task import StepTask

    rt = LocalProcessRuntime(size=1, python="/bin/false")
    task = StepTask(
        run_id="r", run_name="r", pipeline_name="p", step_run_id="s", invocation_id="never_runs",
        step_name="never_runs", func=len, parameters={}, inputs={}, input_annotations={},
        outputs=[], materializers={}, store_root=str(tmp_path),
    )
    try:
        result = rt.launch(task).result(timeout=30)
    finally:
        rt.shutdown()
    assert result.error_type == "WorkerCrashedError"
    assert "failed to start" in (result.error_message or "")
    assert "exited with code 1" in (result.error_message or "")


def _nap(seconds: float, started: str | None = None) -> None:
    if started:
        Path(started).touch()
    time.sleep(seconds)


def test_cancel_of_a_queued_attempt(tmp_path: Path) -> None:
    from dynpipe.runtimes.local import LocalProcessRuntime
    from dynpipe.runtimes.task import StepTask

    started = tmp_path / "running-started"

    def task(inv: str, seconds: float) -> StepTask:
        return StepTask(
            run_id="r", run_name="r", pipeline_name="p", step_run_id=inv, invocation_id=inv,
            step_name=inv, func=_nap, inputs={},
            parameters={"seconds": seconds, "started": str(started) if seconds else None},
            input_annotations={}, outputs=[], materializers={}, store_root=str(tmp_path),
        )

    rt = LocalProcessRuntime(size=1)
    try:
        rt.warm_up()
        running = rt.launch(task("running", 600))
        queued = rt.launch(task("queued", 0))
        assert queued.cancel()
        assert "cancelled before a worker" in (queued.result(timeout=DEADLINE).error_message or "")
        wait_until(started.exists, what="the first task to start in the worker")
        assert running.cancel()
        result = running.result(timeout=DEADLINE)
        assert "the step was cancelled: its worker process was killed" in (result.error_message or "")
        assert "out of memory" not in (result.error_message or "")
    finally:
        rt.shutdown()


@step(runtime="isolated", enable_cache=False)
def fork_then_die(pid_file: str) -> int:
    child = os.fork()
    if child == 0:  # the grandchild inherits the worker's socket and would keep it open
        time.sleep(600)  # past the test's timeout: the test hangs if the death is not seen
        os._exit(0)
    Path(pid_file).write_text(str(child))
    os.kill(os.getpid(), signal.SIGKILL)
    return 0


def test_death_is_seen_even_if_a_child_of_the_step_holds_the_socket(tmp_path: Path) -> None:
    pid_file = tmp_path / "grandchild.pid"

    @pipeline(dynamic=True)
    def forky() -> None:
        fork_then_die(str(pid_file))

    with pytest.raises(WorkerCrashedError, match="SIGKILL"):
        forky()
    _assert_all_gone([int(pid_file.read_text())])  # the step's process group was killed too


def test_a_step_that_cannot_be_pickled_fails_with_a_clear_error() -> None:
    import threading

    lock = threading.Lock()

    @step(runtime="isolated", enable_cache=False)
    def holds_lock() -> int:
        with lock:
            return 1

    @pipeline(dynamic=True)
    def unpicklable() -> None:
        holds_lock()

    with pytest.raises(TypeError, match="'holds_lock' cannot be sent to an isolated worker process.*lock"):
        unpicklable()


@step(runtime="isolated", enable_cache=False)
def writes_to_descriptors(i: int) -> int:
    print("python print", i)
    os.system(f"echo from a child process {i}")
    os.write(1, b"raw stdout write\n")
    os.write(2, b"raw stderr write without newline")
    return i


def test_output_written_to_file_descriptors_is_kept_with_its_step() -> None:
    """C extensions and child processes write to fds 1/2, not to sys.stdout."""

    @pipeline(dynamic=True)
    def descriptors() -> None:
        for f in [writes_to_descriptors.submit(i) for i in range(2)]:
            f.wait()

    run = descriptors()
    for i, name in enumerate(("writes_to_descriptors", "writes_to_descriptors_2")):
        logs = run.steps[name].logs.splitlines()
        assert logs == [
            f"python print {i}", f"from a child process {i}", "raw stdout write", "raw stderr write without newline",
        ], logs
