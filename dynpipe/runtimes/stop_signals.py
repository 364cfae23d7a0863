"""SIGTERM and SIGHUP stop a script's run the way Ctrl-C does.

Python turns SIGINT into ``KeyboardInterrupt`` in the main thread, and the run lifecycle
already answers that by stopping the run's steps (isolated ones are killed with their
process groups) and recording the run ``stopped``. SIGTERM (``kill``, a container or
service manager stopping) and SIGHUP (the terminal closed) would instead end the process
on the spot, leaving the run ``running`` forever. While a top-level run is active in the
main thread of a script, ``StopSignals`` raises ``Terminated`` (a ``KeyboardInterrupt``)
for them, so the same path runs; the previous handlers come back when the last such run
finishes.

Left alone: an IPython kernel or shell (the kernel owns its signals and shuts the
notebook's runs down itself), threads other than the main one (Python can only raise
there), and a handler the program installed itself (only the default action is replaced).
"""

from __future__ import annotations

import signal
import sys
import threading
from typing import Any, Final

SIGNALS: Final = tuple(s for s in (getattr(signal, "SIGTERM", None), getattr(signal, "SIGHUP", None)) if s is not None)


class Terminated(KeyboardInterrupt):
    """The process was asked to stop by a signal (SIGTERM, SIGHUP) while a run was active."""

    def __init__(self, signum: int) -> None:
        self.signum = signum
        super().__init__(f"stopped by {signal.Signals(signum).name}")


def _in_ipython() -> bool:
    ipython = sys.modules.get("IPython")
    if ipython is None:
        return False
    try:
        return ipython.get_ipython() is not None
    except Exception:  # noqa: BLE001 - a half-imported IPython owns nothing
        return False


class StopSignals:
    """Installs the translating handlers while at least one top-level script run is active."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._runs: set[str] = set()
        self._previous: dict[int, Any] = {}
        self._raised = False

    def acquire(self, run_id: str) -> None:
        """Called when a top-level run starts; a no-op outside the main thread or in IPython."""
        if threading.current_thread() is not threading.main_thread() or _in_ipython():
            return
        with self._lock:
            if not self._runs:
                self._raised = False
                for signum in SIGNALS:
                    try:
                        if signal.getsignal(signum) is signal.SIG_DFL:
                            self._previous[signum] = signal.signal(signum, self._handle)
                    except (OSError, ValueError):
                        pass
            self._runs.add(run_id)

    def release(self, run_id: str) -> None:
        """Called when that run is recorded; the last one restores the previous handlers."""
        with self._lock:
            if run_id not in self._runs:
                return
            self._runs.discard(run_id)
            if self._runs:
                return
            previous, self._previous = self._previous, {}
        if threading.current_thread() is not threading.main_thread():
            return  # cannot restore from here; the handlers stay (they only raise in a run)
        for signum, handler in previous.items():
            try:
                if signal.getsignal(signum) == self._handle:
                    signal.signal(signum, handler)
            except (OSError, ValueError):
                pass

    def _handle(self, signum: int, frame: Any) -> None:
        """Raise once: a second signal while the run is being stopped must not cut the
        recording short (SIGKILL is there for that)."""
        if self._raised or not self._runs:
            return
        self._raised = True
        raise Terminated(signum)


#: One per process: signal handlers are process-wide. Inert until a run acquires it.
STOP_SIGNALS: Final = StopSignals()
