"""A bounded pool of daemon threads for submitted steps.

``concurrent.futures.ThreadPoolExecutor`` joins its (non-daemon) threads when the
interpreter exits, so a script interrupted with Ctrl-C would hang until every running
inline step returned on its own. Steps cannot be killed inside a thread; they can be
abandoned: the run records them as ``stopped`` and these daemon threads end with the
process. Outcomes travel on each invocation's own future, so ``submit`` returns nothing.
"""

from __future__ import annotations

import contextvars
import queue
import threading
from collections.abc import Callable
from typing import Any

_STOP = object()


class DaemonThreadPool:
    """Runs callables on at most ``size`` daemon threads, started on demand."""

    def __init__(self, size: int, name: str) -> None:
        self._size = size
        self._name = name
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._threads: list[threading.Thread] = []
        # Threads done with a task and back (or on their way back) to the queue. A counter
        # under a plain lock, not a Semaphore: that is a Python-level Condition, ~10
        # function calls a step between submit and the worker.
        self._idle = 0
        self._lock = threading.Lock()
        self._closed = False

    def submit(self, fn: Callable[..., Any], *args: Any) -> None:
        """Run ``fn(*args)`` in a copy of the caller's context: a notebook kernel tracks the
        cell that submitted the work there, so the step's printed output goes to that cell."""
        if self._closed:
            raise RuntimeError(f"thread pool {self._name} is shut down")
        self._queue.put((contextvars.copy_context(), fn, args))
        with self._lock:
            if self._idle:
                self._idle -= 1
                return  # an idle thread will take it
            if len(self._threads) < self._size:
                thread = threading.Thread(
                    target=self._work, name=f"{self._name}_{len(self._threads)}", daemon=True
                )
                self._threads.append(thread)
                thread.start()

    def _work(self) -> None:
        while True:
            item = self._queue.get()
            if item is _STOP:
                return
            context, fn, args = item
            try:
                context.run(fn, *args)
            except BaseException:  # noqa: BLE001 - outcomes are reported by fn itself
                pass
            del item, context, fn, args
            with self._lock:
                self._idle += 1

    def shutdown(self, wait: bool = True, cancel_futures: bool = False) -> None:
        """Stop taking work; with ``cancel_futures`` drop what has not started."""
        self._closed = True
        if cancel_futures:
            try:
                while True:
                    self._queue.get_nowait()
            except queue.Empty:
                pass
        with self._lock:
            threads = list(self._threads)
        for _ in threads:
            self._queue.put(_STOP)
        if wait:
            current = threading.current_thread()
            for thread in threads:
                if thread is not current:
                    thread.join()
