"""``%%pipeline`` and ``%pipeline``: run notebook cells inside a dynamic run that stays open.

    %%pipeline NAME [--new] [--config PATH] [--mode MODE] [--no-widget]
        run the cell body inside the open run NAME (started on first use); variables the
        cell defines land in the notebook namespace; top-level ``await`` works.
    %pipeline end NAME      finish run NAME (wait for its steps) and print its summary
    %pipeline status        list open runs with their progress
    %pipeline export [NAME] [-o module.py] [--notebook PATH]
                            write the saved notebook's run NAME as a pipeline module
    %pipeline schedule NAME --cron CRON [--run RUN] [...]
                            export it and create schedule NAME (local or a CronJob)

Open runs are finished when the kernel shuts down (at interpreter exit, before the worker
pool stops; running steps are stopped) or the extension is unloaded.
Interrupting a ``%%pipeline`` cell stops its run (running steps are stopped, the run ends
``stopped``); the next cell with that name starts a new run.
"""

from __future__ import annotations

import ast
import asyncio
import contextvars
import inspect
import threading
from typing import Any

from IPython.core.magic import Magics, cell_magic, line_magic, magics_class
from IPython.core.magic_arguments import argument, magic_arguments, parse_argstring

from ..config import ExecutionMode, PipelineConfig
from ..config_yaml import load_config_file
from ..runtimes.local import LOCAL
from .session import NotebookSessions


def _config_for(name: str, mode: str | None, config_path: str | None) -> PipelineConfig:
    config = PipelineConfig(name=name, dynamic=True)
    if config_path:
        config = config.merged(**load_config_file(config_path, None), config_path=config_path)
    if mode:
        try:
            config = config.merged(execution_mode=ExecutionMode(mode))
        except ValueError:
            modes = ", ".join(m.value for m in ExecutionMode)
            raise ValueError(f"%%pipeline {name}: unknown --mode {mode!r} (use one of: {modes})") from None
    return config


def run_cell_body(shell: Any, body: str) -> Any:
    """Execute ``body`` like a notebook cell in the user namespace; return nothing.

    The last expression is shown through the display hook, as a normal cell would;
    a body with top-level ``await`` runs its coroutine on a private event loop (the
    kernel's own loop is busy running this magic).
    """
    __tracebackhide__ = True
    transformed = shell.transform_cell(body)
    # IPython has already counted this cell (execution_count is the next one), so name the
    # body after the cell's own number: tracebacks then say "Cell In[N]" like the prompt.
    filename = shell.compile.cache(transformed, max(shell.execution_count - 1, 0), raw_code=body)
    tree = ast.parse(transformed, filename=filename)
    last: ast.Expression | None = None
    if tree.body and isinstance(tree.body[-1], ast.Expr):
        last = ast.Expression(tree.body.pop().value)
    flags = getattr(shell.compile, "flags", 0) | ast.PyCF_ALLOW_TOP_LEVEL_AWAIT
    ns = shell.user_ns
    _run(compile(tree, filename, "exec", flags=flags, dont_inherit=True), ns)
    if last is not None:
        value = _run(compile(last, filename, "eval", flags=flags, dont_inherit=True), ns)
        if value is not None:
            shell.displayhook(value)


def _run(code: Any, ns: dict[str, Any]) -> Any:
    __tracebackhide__ = True
    result = eval(code, ns)
    if code.co_flags & inspect.CO_COROUTINE:
        return _run_coroutine(result)
    return result


def _run_coroutine(coro: Any) -> Any:
    """Run a cell's coroutine to completion in a helper thread with its own loop."""
    __tracebackhide__ = True
    box: dict[str, Any] = {}
    ready = threading.Event()
    context = contextvars.copy_context()

    async def main() -> Any:
        box["task"] = asyncio.current_task()
        box["loop"] = asyncio.get_running_loop()
        ready.set()
        return await coro

    def target() -> None:
        try:
            box["value"] = context.run(asyncio.run, main())
        except BaseException as exc:  # noqa: BLE001 - re-raised in the cell's thread
            box["error"] = exc
        finally:
            ready.set()

    thread = threading.Thread(target=target, name="dynpipe-cell-await", daemon=True)
    thread.start()
    try:
        while thread.is_alive():
            thread.join(0.1)
    except KeyboardInterrupt:
        ready.wait()
        if "loop" in box:
            box["loop"].call_soon_threadsafe(box["task"].cancel)
        thread.join(5)
        raise
    if "error" in box:
        raise box["error"]
    return box.get("value")


@magics_class
class PipelineMagics(Magics):
    """The ``%%pipeline`` cell magic and the ``%pipeline`` line magic."""

    def __init__(self, shell: Any, sessions: NotebookSessions) -> None:
        super().__init__(shell)
        self.sessions = sessions

    @magic_arguments()
    @argument("name", help="the run to add this cell to (started on first use)")
    @argument("--new", action="store_true", help="finish the open run NAME and start a new one")
    @argument("--config", default=None, help="YAML config template applied when the run starts")
    @argument("--mode", default=None, help="fail_fast | stop_on_failure | continue_on_failure")
    @argument("--no-widget", action="store_true", help="no live DAG under this cell")
    @cell_magic
    def pipeline(self, line: str, cell: str) -> None:
        """Run the cell inside the open dynamic run NAME."""
        __tracebackhide__ = True
        args = parse_argstring(self.pipeline, line)
        name = args.name
        sessions = self.sessions
        existing = sessions.get(name)
        config = _config_for(name, args.mode, args.config)
        if (
            existing is not None and not existing.ctx.finished and not args.new
            and not existing.ctx.stopping and (args.config or args.mode) and config != existing.config
        ):
            print(f"dynpipe: run {name!r} is already open; --config/--mode apply when a run starts (use --new)")
        session, finished = sessions.session_for(name, config, new=args.new)
        if finished:
            print(finished)
        view = session.open_cell(widget=not args.no_widget)
        ctx = session.ctx
        ctx.activate()
        interrupted = False
        try:
            run_cell_body(self.shell, cell)
        except KeyboardInterrupt:
            interrupted = True
            raise
        finally:
            ctx.deactivate()
            session.close_cell(view)
            if interrupted:
                # Interrupting the kernel stops the run's steps (isolated ones are killed)
                # and ends the run as stopped; the next %%pipeline NAME cell starts anew.
                print(sessions.stop(name, "the cell was interrupted"))

    @line_magic("pipeline")  # type: ignore[arg-type]  # IPython types a named magic as Never
    def pipeline_line(self, line: str) -> None:
        """``%pipeline end NAME`` | ``%pipeline status`` | ``%pipeline export ...`` | ``%pipeline schedule ...``."""
        sessions = self.sessions
        words = line.split()
        if not words or words[0] == "status":
            runs = sessions.open_sessions()
            if not runs:
                print("no open dynpipe runs")
            for s in runs:
                print(s.progress())
            return
        if words[0] == "export":
            from .export import export_magic

            print(export_magic(self.shell, line.strip()[len("export"):]))
            return
        if words[0] == "schedule":
            from .schedule_magic import schedule_magic

            print(schedule_magic(self.shell, line.strip()[len("schedule"):]))
            return
        if words[0] == "end" and len(words) == 2:
            try:
                print(sessions.end(words[1]))
            except KeyError:
                open_names = ", ".join(s.name for s in sessions.open_sessions()) or "none"
                raise ValueError(f"%pipeline end: no open run named {words[1]!r} (open: {open_names})") from None
            return
        raise ValueError(
            f"%pipeline {line!r}: use '%pipeline end NAME', '%pipeline status', '%pipeline export [NAME]'"
            " or '%pipeline schedule NAME --cron CRON'"
        )


class DynpipeExtension:
    """What ``%load_ext dynpipe`` installs in one shell, and the owner of its open runs.

    Stored on the shell (``SHELL_ATTRIBUTE``), so loading twice is a no-op and nothing
    lives in module globals. It finishes the shell's open runs at interpreter exit through
    the worker pool's owner (``LOCAL.before_exit``), which runs it before the pool stops:
    running isolated steps are then stopped and recorded ``stopped``, not failed by a pool
    that went away first.
    """

    def __init__(self, shell: Any) -> None:
        self.shell = shell
        self.sessions = NotebookSessions()
        self.magics = PipelineMagics(shell, self.sessions)

    def load(self) -> None:
        self.shell.register_magics(self.magics)
        self.shell.events.register("post_run_cell", self.sweep_all)
        LOCAL.before_exit(self.sessions.finish_all)

    def unload(self) -> None:
        try:
            self.shell.events.unregister("post_run_cell", self.sweep_all)
        except ValueError:
            pass
        LOCAL.discard_before_exit(self.sessions.finish_all)
        self.sessions.finish_all()

    def sweep_all(self, *_args: Any) -> None:
        """After every cell: freeze finished older cells with the current cell as parent."""
        for s in self.sessions.open_sessions():
            try:
                s.sweep()
            except Exception:  # noqa: BLE001 - never break the user's cell
                pass


SHELL_ATTRIBUTE = "dynpipe_extension"


def load_ipython_extension(ipython: Any) -> None:
    if getattr(ipython, SHELL_ATTRIBUTE, None) is not None:
        return
    extension = DynpipeExtension(ipython)
    setattr(ipython, SHELL_ATTRIBUTE, extension)
    extension.load()


def unload_ipython_extension(ipython: Any) -> None:
    extension = getattr(ipython, SHELL_ATTRIBUTE, None)
    if extension is not None:
        setattr(ipython, SHELL_ATTRIBUTE, None)
        extension.unload()
