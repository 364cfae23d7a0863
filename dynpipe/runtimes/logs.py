"""Per-step log capture that keeps concurrent steps apart.

``sys.stdout``/``sys.stderr`` are wrapped once per process by proxies that look up the
current step's sink in a context variable; the root logger gets a handler that does the
same. Each thread running a step sets its own sink, so steps running at the same time in
threads never share a buffer. Lines are echoed to the real stream prefixed with the
step's invocation id, so the console (or notebook) still streams them live.
"""

from __future__ import annotations

import contextvars
import io
import logging
import sys
import threading
from typing import Any, TextIO

_current_sink: contextvars.ContextVar[StepLogSink | None] = contextvars.ContextVar(
    "dynpipe_step_log_sink", default=None
)
_install_lock = threading.Lock()


class StepLogSink:
    """Collects one step's output; optionally echoes complete lines with a prefix."""

    __slots__ = ("label", "echo", "_parts", "_pending", "on_line")

    def __init__(self, label: str, echo: bool, on_line: Any = None) -> None:
        self.label = label
        self.echo = echo
        self._parts: list[str] = []
        self._pending: dict[str, str] = {}
        self.on_line = on_line

    def write(self, text: str, stream_name: str, real: TextIO) -> None:
        self._parts.append(text)
        if not (self.echo or self.on_line):
            return
        buf = self._pending.get(stream_name, "") + text
        *lines, rest = buf.split("\n")
        self._pending[stream_name] = rest
        for line in lines:
            self._emit(line, real)

    def _emit(self, line: str, real: TextIO) -> None:
        if self.echo:
            try:
                real.write(f"[{self.label}] {line}\n")
            except (ValueError, OSError):
                pass
        if self.on_line is not None:
            self.on_line(line)

    def flush_pending(self, streams: dict[str, TextIO]) -> None:
        for name, rest in self._pending.items():
            if rest:
                self._emit(rest, streams.get(name, sys.__stdout__))  # type: ignore[arg-type]
        self._pending.clear()

    def text(self) -> str:
        return "".join(self._parts)

    def record_error(self, traceback_text: str, summary: str, real: TextIO) -> None:
        """Keep the whole traceback in the step's log; echo only its one-line summary."""
        self._parts.append(traceback_text)
        self._emit(summary, real)


class _RoutingStream(io.TextIOBase):
    """Stands in for sys.stdout/sys.stderr; routes writes to the current step's sink."""

    def __init__(self, real: TextIO, name: str) -> None:
        self._real = real
        self._name = name

    def write(self, text: str) -> int:
        sink = _current_sink.get()
        if sink is None:
            return self._real.write(text)
        sink.write(text, self._name, self._real)
        return len(text)

    def flush(self) -> None:
        try:
            self._real.flush()
        except (ValueError, OSError):
            pass

    def isatty(self) -> bool:
        return self._real.isatty()

    def fileno(self) -> int:
        return self._real.fileno()

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return getattr(self._real, "encoding", "utf-8")

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)


def _printed_into_sink_already() -> bool:
    """A user's root handler writing to sys.stdout/stderr already lands in the step's log."""
    return any(
        isinstance(h, logging.StreamHandler) and isinstance(h.stream, _RoutingStream)
        for h in logging.getLogger().handlers
    )


class _RoutingLogHandler(logging.Handler):
    """Sends log records emitted inside a step to that step's sink."""

    def emit(self, record: logging.LogRecord) -> None:
        sink = _current_sink.get()
        if sink is None:
            # Outside a step, behave as if this handler were not there: with no handler of
            # the user's, Python would print WARNING and above through its last resort.
            root = logging.getLogger()
            if len(root.handlers) == 1 and record.levelno >= logging.WARNING and logging.lastResort:
                logging.lastResort.handle(record)
            return
        if _printed_into_sink_already():
            return
        try:
            line = self.format(record)
        except Exception:  # noqa: BLE001 - a bad record must not break the step
            line = record.getMessage()
        stream = sys.stderr
        real = stream._real if isinstance(stream, _RoutingStream) else stream
        sink.write(line + "\n", "logging", real)


def _install() -> None:
    with _install_lock:
        if not isinstance(sys.stdout, _RoutingStream):
            sys.stdout = _RoutingStream(sys.stdout, "stdout")
        if not isinstance(sys.stderr, _RoutingStream):
            sys.stderr = _RoutingStream(sys.stderr, "stderr")


class _LogCapture:
    """The root-logger handler, attached only while at least one run is open in this process.

    Attaching it for good would change the user's logging outside steps: ``basicConfig()``
    does nothing once the root has a handler. While runs are open, a root logger at Python's
    default level (WARNING) is lowered to INFO so steps' ``logging.info`` is kept, and put
    back when the last run ends; a level the user chose is left alone.
    """

    def __init__(self) -> None:
        self.handler = _RoutingLogHandler()
        self.handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
        self.users = 0
        self.lowered_from: int | None = None

    def attach(self) -> None:
        with _install_lock:
            self.users += 1
            if self.users > 1:
                return
            root = logging.getLogger()
            if root.level == logging.WARNING:
                self.lowered_from = root.level
                root.setLevel(logging.INFO)
            root.addHandler(self.handler)

    def detach(self) -> None:
        with _install_lock:
            self.users -= 1
            if self.users > 0:
                return
            root = logging.getLogger()
            root.removeHandler(self.handler)
            if self.lowered_from is not None and root.level == logging.INFO:
                root.setLevel(self.lowered_from)
            self.lowered_from = None


_log_capture = _LogCapture()


def attach_log_capture() -> None:
    """Route ``logging`` records of steps to their logs; paired with ``detach_log_capture``.

    Called per run (not per step: changing the root level clears every logger's cache) and
    once by a worker process, which only ever runs steps.
    """
    _log_capture.attach()


def detach_log_capture() -> None:
    _log_capture.detach()


def record_step_error(traceback_text: str, summary: str) -> None:
    """Log a step's error: full traceback stored, one line streamed to the console/notebook."""
    sink = _current_sink.get()
    stream = sys.stderr
    real = stream._real if isinstance(stream, _RoutingStream) else stream
    if sink is None:
        real.write(traceback_text)
    else:
        sink.record_error(traceback_text, summary, real)


class capture_step_logs:  # lower case: used like the function it was (``with capture_step_logs(...)``)
    """Route this thread's prints and log records to a fresh sink while the block runs.

    A class rather than a ``@contextmanager`` generator: it runs once per step attempt, and
    the generator's machinery cost more than the routing itself.
    """

    __slots__ = ("sink", "_token")

    def __init__(self, label: str, echo: bool, on_line: Any = None) -> None:
        self.sink = StepLogSink(label, echo, on_line)

    def __enter__(self) -> StepLogSink:
        if not isinstance(sys.stdout, _RoutingStream) or not isinstance(sys.stderr, _RoutingStream):
            _install()
        self._token = _current_sink.set(self.sink)
        return self.sink

    def __exit__(self, *exc_info: object) -> None:
        _current_sink.reset(self._token)
        if self.sink._pending:  # only an unfinished last line (no newline) is left to echo
            streams: dict[str, TextIO] = {}
            for name, stream in (("stdout", sys.stdout), ("stderr", sys.stderr)):
                streams[name] = stream._real if isinstance(stream, _RoutingStream) else stream
            streams["logging"] = streams["stderr"]
            self.sink.flush_pending(streams)


def relay_line(
    line: str, invocation_id: str, echo: bool, context: contextvars.Context, on_line: Any
) -> None:
    """A log line that arrived from another process: echo it as ``[step] line`` in the
    submitting cell's context, then tell the observer. Neither may break the step."""
    if echo:
        text = f"[{invocation_id}] {line}\n"
        try:
            try:
                context.run(sys.stdout.write, text)
            except RuntimeError:  # the context is busy elsewhere: write it here instead
                sys.stdout.write(text)
        except (ValueError, OSError):
            pass
    if on_line is not None:
        try:
            on_line(line)
        except Exception:  # noqa: BLE001 - an observer must never break the step
            pass
