"""Runtime state has explicit owners: importing starts and registers nothing, the pool is
created on first use and stopped by its owner, a notebook's runs belong to its shell.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from dynpipe.errors import WorkerCrashedError
from dynpipe.runtimes import shipping
from dynpipe.runtimes.local import LocalRuntimes
from dynpipe.runtimes.task import TaskResult
from dynpipe.store.materializers import Materializer, MaterializerRegistry

pytestmark = pytest.mark.timeout(120)

REPO = Path(__file__).resolve().parent.parent


def _python(code: str) -> str:
    proc = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], cwd=REPO, capture_output=True, text=True, timeout=60,
        env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"},
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip()


def test_importing_dynpipe_registers_no_exit_hook_and_starts_no_thread() -> None:
    out = _python(
        """
        import atexit, os, threading
        hooks = []
        register = atexit.register
        atexit.register = lambda f, *a, **k: (hooks.append(getattr(f, "__module__", "") or ""), register(f, *a, **k))[1]
        at_fork = os.register_at_fork
        os.register_at_fork = lambda **k: (hooks.append("fork:" + str(k)), at_fork(**k))[1]
        threads = threading.active_count()
        import dynpipe, dynpipe.runtimes.local, dynpipe.runtimes.kubernetes, dynpipe.runtimes.stop_signals
        import dynpipe.notebook.magics, dynpipe.notebook.session
        print([h for h in hooks if "dynpipe" in h], threading.active_count() - threads)
        """
    )
    assert out == "[] 0"


def test_the_pool_starts_on_first_use_and_its_owner_stops_it() -> None:
    import psutil

    owner = LocalRuntimes()
    assert owner.current() is None
    pool = owner.pool()
    try:
        pool.warm_up(timeout=60)
        pids = pool.worker_pids()
        assert pids and owner.pool() is pool  # one pool per owner, reused
    finally:
        owner.shutdown()
    assert owner.current() is None and pool.closed
    deadline = time.monotonic() + 20
    while any(psutil.pid_exists(p) and psutil.Process(p).status() != psutil.STATUS_ZOMBIE for p in pids):
        assert time.monotonic() < deadline, f"workers {pids} outlived shutdown()"
        time.sleep(0.05)


def test_a_forked_child_does_not_inherit_the_pool() -> None:
    out = _python(
        """
        import os
        from dynpipe.runtimes.local import LocalRuntimes
        owner = LocalRuntimes()
        owner.pool()  # created, not necessarily started
        pid = os.fork()
        if pid == 0:
            os._exit(0 if owner.current() is None else 1)
        _, status = os.waitpid(pid, 0)
        print(os.waitstatus_to_exitcode(status), owner.current() is not None)
        owner.shutdown()
        """
    )
    assert out == "0 True"


class _Upper(Materializer):
    name = "test-upper"
    handles = (str,)

    def save(self, value: object) -> bytes:
        return str(value).upper().encode()

    def load(self, data: bytes, data_type: str) -> object:
        return data.decode()


def test_materializer_shipment_reuses_pickles_until_the_registrations_change(monkeypatch: pytest.MonkeyPatch) -> None:
    registry = MaterializerRegistry()
    monkeypatch.setattr(shipping, "registry", registry)
    shipment = shipping.MaterializerShipment()
    assert shipment.blobs() is None  # built-ins travel with no task
    registry.add(_Upper)
    first = shipment.blobs()
    assert first is not None and len(first) == 1
    assert shipment.blobs() is first  # same registrations: the same pickles, no new work
    registry.register(bytes, _Upper())
    second = shipment.blobs()
    assert second is not first and len(second) == 2  # by name (the newer one) and by type


def test_task_result_from_exception() -> None:
    err = WorkerCrashedError("step 'x': worker process exited with code 3 before it was ready")
    result = TaskResult.from_exception(err, logs="a\n")
    assert (result.error, result.error_type, result.error_message, result.logs) == (
        err, "WorkerCrashedError", str(err), "a\n",
    )
    assert "WorkerCrashedError" in (result.traceback or "")
    assert TaskResult.from_exception(ValueError("v"), error_type="Custom").error_type == "Custom"


def test_the_extension_owns_the_shells_runs() -> None:
    out = _python(
        """
        from IPython.core.interactiveshell import InteractiveShell
        shell = InteractiveShell.instance()
        shell.run_line_magic("load_ext", "dynpipe")
        ext = shell.dynpipe_extension
        shell.run_line_magic("load_ext", "dynpipe")
        same = shell.dynpipe_extension is ext
        from dynpipe.runtimes.local import LOCAL
        hooked = ext.sessions.finish_all in LOCAL._before_exit
        shell.run_line_magic("unload_ext", "dynpipe")
        print(same, hooked, shell.dynpipe_extension is None, ext.sessions.finish_all in LOCAL._before_exit)
        """
    )
    assert out.splitlines()[-1] == "True True True False"  # (IPython notes the second load_ext)
