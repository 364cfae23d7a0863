"""The heartbeat of an open run: proof of life for readers on other machines.

With a shared metadata store the orchestrating process may be on another host, where its
PID cannot be checked; a reader takes a run whose heartbeat is older than
``DYNPIPE_HEARTBEAT_TIMEOUT`` for lost. One daemon thread per open run writes it every
``DYNPIPE_HEARTBEAT_INTERVAL`` seconds (15 by default): one tiny UPDATE, off the step path.
"""

from __future__ import annotations

import threading
import warnings
from collections.abc import Callable


class Heartbeat:
    """Calls ``beat`` every ``interval`` seconds until stopped."""

    def __init__(self, beat: Callable[[], None], interval: float, name: str) -> None:
        self._beat = beat
        self._interval = interval
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """No further beats; does not wait (a beat in flight is harmless after the run ends)."""
        self._stopped.set()

    def _loop(self) -> None:
        warned = False
        while not self._stopped.wait(self._interval):
            try:
                self._beat()
            except Exception as exc:  # noqa: BLE001 - a missed beat must not end the run
                if not warned:
                    warned = True
                    warnings.warn(f"dynpipe: could not record the run's heartbeat: {exc}", RuntimeWarning, stacklevel=1)
