"""The live DAG's ``where`` across a retry on the local pool: the failed attempt's worker is
not shown while the step waits to retry, and the retry's own worker is named at the end."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from dynpipe import StepRetryConfig, get_step_context, pipeline, step
from dynpipe.engine.context import current_run
from dynpipe.runtimes.local import shutdown_shared_runtime


@step(runtime="isolated", enable_cache=False, retry=StepRetryConfig(max_retries=1, delay=0.05))
def crashes_once(pid_file: str) -> int:
    if get_step_context().attempt == 1:
        Path(pid_file).write_text(str(os.getpid()))
        os._exit(3)  # the worker process dies: the retry needs another one
    return os.getpid()


@pytest.fixture
def one_worker(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("DYNPIPE_ISOLATED_BACKEND", "local")
    monkeypatch.setenv("DYNPIPE_WORKERS", "1")
    monkeypatch.setenv("DYNPIPE_ECHO_LOGS", "false")
    try:
        yield
    finally:
        shutdown_shared_runtime()


def test_where_is_cleared_while_waiting_to_retry_and_names_the_retrys_worker(
    one_worker: None, tmp_path: Path
) -> None:
    pid_file = tmp_path / "first.pid"
    seen: list[tuple[str, str | None]] = []

    def observe(_graph: Any, node: Any) -> None:
        if node is not None and node.invocation_id == "crashes_once":
            seen.append((str(node.status), node.where))

    @pipeline(dynamic=True)
    def retried() -> None:
        ctx = current_run()
        assert ctx is not None
        ctx.graph.subscribe(observe)
        crashes_once(str(pid_file))

    run = retried()
    sr = run.steps["crashes_once"]
    assert sr.status == "completed" and sr.attempts == 2
    first, second = f"pid {pid_file.read_text()}", f"pid {sr.output.load()}"
    assert first != second
    assert ("running", first) in seen  # the first attempt's worker, while it ran
    retrying = [where for status, where in seen if status == "retrying"]
    assert retrying and all(where is None for where in retrying)  # not the dead worker
    assert seen[-1] == ("completed", second)
    assert all(where != first for status, where in seen[seen.index(("retrying", None)):])
