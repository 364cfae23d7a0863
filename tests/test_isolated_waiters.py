"""The threads that wait on a run's isolated steps are sized for the runtime running them.

The local pool runs one attempt per worker, so a run keeps a few waiting threads per worker
(``settings.WAITERS_PER_ATTEMPT``), not one per step in flight: more only contend for the
GIL. ``DYNPIPE_ISOLATED_WAITERS`` still sets the number; runtimes without a known bound
(Kubernetes, Dask) keep ``settings.DEFAULT_ISOLATED_WAITERS``.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
from helpers import DEADLINE

from dynpipe import pipeline, settings, step
from dynpipe.runtimes.local import shared_local_runtime

pytestmark = pytest.mark.timeout(120)

STEPS = 10


@step(runtime="isolated", enable_cache=False)
def wait_for(release: str, i: int) -> int:
    end = time.monotonic() + DEADLINE
    while not Path(release).exists():
        if time.monotonic() >= end:
            raise AssertionError(f"{release} did not appear within {DEADLINE}s")
        time.sleep(0.01)
    return i


def _run_and_count_waiters(tmp_path: Path, name: str) -> int:
    """Submit STEPS isolated steps that block until released; return the run's waiting threads.

    No step can finish before the release, so no waiting thread is idle while they are
    submitted: the pool starts one per step up to its size.
    """
    release = str(tmp_path / "release")
    counted: list[int] = []

    @pipeline(dynamic=True, name=name)
    def blocked() -> None:
        futures = [wait_for.submit(release, i) for i in range(STEPS)]
        counted.append(sum(t.name.startswith(f"dynpipe-iso-{name}_") for t in threading.enumerate()))
        Path(release).touch()
        assert [f.load(timeout=DEADLINE) for f in futures] == list(range(STEPS))

    run = blocked()
    assert run.status == "completed"
    assert len(run.steps) == STEPS
    return counted[0]


def test_a_run_keeps_a_few_waiting_threads_per_local_worker(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("DYNPIPE_WORKERS", "1")
    monkeypatch.setenv("DYNPIPE_ECHO_LOGS", "false")
    assert shared_local_runtime().attempts_at_once() == 1
    assert _run_and_count_waiters(tmp_path, "waiters_per_worker") == settings.WAITERS_PER_ATTEMPT


def test_the_setting_overrides_the_runtime(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("DYNPIPE_WORKERS", "1")
    monkeypatch.setenv("DYNPIPE_ECHO_LOGS", "false")
    monkeypatch.setenv("DYNPIPE_ISOLATED_WAITERS", "6")
    assert _run_and_count_waiters(tmp_path, "waiters_from_setting") == 6


def test_waiters_per_runtime_bound(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DYNPIPE_ISOLATED_WAITERS", raising=False)
    per = settings.WAITERS_PER_ATTEMPT
    assert settings.isolated_waiters() == settings.DEFAULT_ISOLATED_WAITERS  # no known bound
    assert settings.isolated_waiters(1) == per
    assert settings.isolated_waiters(3) == 3 * per
    assert settings.isolated_waiters(1000) == settings.DEFAULT_ISOLATED_WAITERS  # never more than before


def test_unbounded_runtimes_keep_the_default() -> None:
    from dynpipe.runtimes.inline import InlineRuntime

    assert InlineRuntime().attempts_at_once() is None
