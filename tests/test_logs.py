"""Per-step logs: concurrent inline steps in threads keep their own lines; isolated steps too.

Eight submitted inline steps wait on a barrier so they print, write to stderr and log at
the same time; each stored log must hold exactly its own lines, in order.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from dynpipe import Client, pipeline, step

N_STEPS = 8
N_LINES = 25
_barrier = threading.Barrier(N_STEPS, timeout=20)


@step(enable_cache=False)
def noisy(tag: str) -> str:
    log = logging.getLogger(f"noisy.{tag}")
    _barrier.wait()  # all eight are inside their step bodies now
    for i in range(N_LINES):
        print(f"{tag} out {i}")
        print(f"{tag} err {i}", file=sys.stderr)
        log.info(f"{tag} log {i}")
        if i % 5 == 0:
            time.sleep(0.001)  # let the other threads interleave
    return tag


def _expected(tag: str) -> list[str]:
    lines: list[str] = []
    for i in range(N_LINES):
        lines += [f"{tag} out {i}", f"{tag} err {i}", f"INFO noisy.{tag}: {tag} log {i}"]
    return lines


def test_eight_concurrent_inline_steps_keep_their_own_logs(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DYNPIPE_ECHO_LOGS", "false")
    tags = [f"s{k}" for k in range(N_STEPS)]

    @pipeline(dynamic=True)
    def chorus() -> None:
        futures = [noisy.submit(tag, id=f"noisy_{tag}") for tag in tags]
        for f in futures:
            f.wait()

    run = chorus()
    assert run.status == "completed"
    fetched = Client().get_pipeline_run(run.id)
    for tag in tags:
        logs = fetched.steps[f"noisy_{tag}"].logs
        assert logs.splitlines() == _expected(tag), f"logs of {tag} are mixed:\n{logs[:500]}"


def test_echo_prefixes_lines_with_the_invocation_id(capsys: pytest.CaptureFixture[str]) -> None:
    @step(enable_cache=False)
    def speaker() -> int:
        print("hello there")
        return 1

    @pipeline(dynamic=True)
    def speak() -> None:
        speaker(id="the_speaker")

    speak()
    out = capsys.readouterr().out
    assert "[the_speaker] hello there" in out


def test_isolated_echo_and_cli_logs(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, store_home: Path
) -> None:
    monkeypatch.setenv("DYNPIPE_WORKERS", "2")

    @step(runtime="isolated", enable_cache=False)
    def far_away() -> int:
        print("from the worker")
        logging.getLogger("far").warning("careful")
        return os.getpid()

    @pipeline(dynamic=True)
    def remote_logs() -> None:
        far_away()

    run = remote_logs()
    out = capsys.readouterr().out
    assert "[far_away] from the worker" in out  # echoed live by the orchestrator
    assert run.steps["far_away"].logs == "from the worker\nWARNING far: careful\n"
    cli = subprocess.run(
        [sys.executable, "-m", "dynpipe.cli", "runs", "logs", run.name, "far_away"],
        capture_output=True, text=True, env={**os.environ, "DYNPIPE_HOME": str(store_home)}, timeout=60,
    )
    assert cli.returncode == 0, cli.stderr
    assert "from the worker" in cli.stdout and "careful" in cli.stdout


def test_logs_of_a_failed_inline_step_include_the_traceback(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DYNPIPE_ECHO_LOGS", "false")

    @step(enable_cache=False)
    def breaks() -> int:
        print("before the error")
        raise KeyError("missing thing")

    @pipeline(dynamic=True)
    def broken() -> None:
        breaks()

    with pytest.raises(KeyError):
        broken()
    sr = Client().get_pipeline("broken").last_run.steps["breaks"]
    assert sr.logs.startswith("before the error\n")
    assert "KeyError: 'missing thing'" in sr.logs


_USER_LOGGING_SCRIPT = """
import logging
from dynpipe import pipeline, step

@step(enable_cache=False)
def chatty() -> int:
    logging.info("info inside the step")
    return 1

@pipeline(dynamic=True)
def p() -> None:
    chatty()

run = p()
print("STORED:", run.steps["chatty"].logs.strip())
print("ROOT:", logging.getLogger().level, len(logging.getLogger().handlers))
logging.basicConfig(level=logging.INFO, format="USER %(message)s")
logging.info("configured after a run")
"""


def test_step_log_capture_leaves_the_users_logging_alone(tmp_path: Path) -> None:
    script = tmp_path / "user_logging.py"
    script.write_text(_USER_LOGGING_SCRIPT)
    proc = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=60, cwd=tmp_path,
        env={**os.environ, "DYNPIPE_ECHO_LOGS": "false"},
    )
    assert proc.returncode == 0, proc.stderr
    assert "STORED: INFO root: info inside the step" in proc.stdout
    # After the run the root logger is as Python left it: level WARNING, no handlers...
    assert "ROOT: 30 0" in proc.stdout
    # ...so the user's own basicConfig() still takes effect.
    assert "USER configured after a run" in proc.stderr
