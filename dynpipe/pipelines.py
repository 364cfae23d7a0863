"""``@pipeline`` and ``Pipeline``: static compile, dynamic run, composition, async runs."""

from __future__ import annotations

import copy
import functools
import inspect
import json
import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any, Generic, ParamSpec, TypeVar, overload

from .config import ConfigError, ExecutionMode, PipelineConfig
from .engine.context import RunContext, current_run
from .engine.invocation import is_step_output
from .engine.run import failure_to_raise, finish_run, load_run, start_run
from .engine.scheduling import release_held
from .engine.single import run_single_step  # noqa: F401 - re-exported for existing imports
from .errors import StepSkippedError, StepStoppedError, StepTypeError
from .signatures import type_matches, type_name
from .steps import Step, resolved_type_hints
from .store.models import PipelineRun
from .store.store import open_store

P = ParamSpec("P")
R = TypeVar("R")

_PIPELINE_OPTIONS = set(PipelineConfig.model_fields) - {"steps"} | {"steps", "depends_on"}


def _json_safe(value: Any) -> bool:
    """Pipeline parameters recorded with the run are the JSON-able ones."""
    try:
        json.dumps(value)
        return True
    except (TypeError, ValueError):
        return False


class Pipeline(Generic[P, R]):
    """A function whose step calls form a recorded run; calling it runs the pipeline."""

    def __init__(self, func: Callable[P, R], config: PipelineConfig, depends_on: list[Step[Any, Any]]) -> None:
        self.entrypoint = func
        self.config = config
        self.depends_on = list(depends_on)
        self.signature = inspect.signature(func)
        functools.update_wrapper(self, func)

    @property
    def name(self) -> str:
        return self.config.name or self.entrypoint.__name__

    @property
    def is_dynamic(self) -> bool:
        return self.config.dynamic

    def configure(self, **options: Any) -> Pipeline[P, R]:
        self.config, self.depends_on = self._merged(options)
        return self

    def with_options(self, **options: Any) -> Pipeline[P, R]:
        clone = copy.copy(self)
        clone.config, clone.depends_on = self._merged(options)
        return clone

    def _merged(self, options: dict[str, Any]) -> tuple[PipelineConfig, list[Step[Any, Any]]]:
        unknown = set(options) - _PIPELINE_OPTIONS
        if unknown:
            raise TypeError(f"pipeline {self.name!r}: unknown option(s) {', '.join(sorted(unknown))}")
        opts = dict(options)
        depends_on = list(opts.pop("depends_on", None) or self.depends_on)
        if "execution_mode" in opts and isinstance(opts["execution_mode"], str):
            opts["execution_mode"] = ExecutionMode(opts["execution_mode"])
        path = opts.get("config_path")
        if path:
            known = {s.name for s in depends_on}
            from .config_yaml import load_config_file  # YAML is read only when a file is given

            file_changes = load_config_file(path, known)
            config = self.config.merged(**file_changes)
            return config.merged(**opts), depends_on
        return self.config.merged(**opts), depends_on

    # -- running -------------------------------------------------------------------------
    def _bind(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> inspect.BoundArguments:
        params = dict(self.config.parameters)
        try:
            bound = self.signature.bind_partial(*args, **kwargs)
        except TypeError as exc:
            raise TypeError(f"pipeline {self.name!r}: {exc}") from None
        for name, value in params.items():
            if name not in self.signature.parameters:
                raise ConfigError(
                    f"pipeline {self.name!r}: configured parameter {name!r} is not a parameter of the pipeline"
                )
            bound.arguments.setdefault(name, value)
        missing = [
            n for n, p in self.signature.parameters.items()
            if n not in bound.arguments and p.default is p.empty
            and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
        ]
        if missing:
            raise TypeError(f"pipeline {self.name!r}: missing parameter(s) {', '.join(map(repr, missing))}")
        self._check_parameter_types(bound.arguments)
        return bound

    def _check_parameter_types(self, arguments: dict[str, Any]) -> None:
        """A plain value that does not match its annotation is an error naming the parameter."""
        hints = getattr(self.entrypoint, "__annotations__", None)
        if not hints:
            return
        resolved = resolved_type_hints(self.entrypoint)
        for name, value in arguments.items():
            ann = resolved.get(name)
            if ann is None or is_step_output(value):
                continue  # composition: artifacts and futures are checked by the steps using them
            if not type_matches(value, ann):
                raise StepTypeError(
                    f"pipeline {self.name!r}: parameter {name!r} expects {type_name(ann)},"
                    f" got {type(value).__name__}"
                )

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> Any:
        if not self.config.runs_synchronously and current_run() is None:
            return self.submit(*args, **kwargs)
        return self._run(args, kwargs)

    def submit(self, *args: Any, **kwargs: Any) -> PipelineRunFuture:
        """Run in a background thread; returns a future for the PipelineRun."""
        bound = self._bind(args, kwargs)
        future: Future[PipelineRun] = Future()
        ready = threading.Event()
        holder: dict[str, RunContext] = {}

        def started(ctx: RunContext) -> None:
            holder.setdefault("ctx", ctx)
            ready.set()

        def target() -> None:
            try:
                future.set_result(self._run(bound.args, bound.kwargs, on_start=started))
            except BaseException as exc:  # noqa: BLE001
                ready.set()
                future.set_exception(exc)

        thread = threading.Thread(target=target, name=f"dynpipe-run-{self.name}", daemon=False)
        thread.start()
        ready.wait()
        return PipelineRunFuture(future, holder.get("ctx"))

    def _run(
        self, args: tuple[Any, ...], kwargs: dict[str, Any], on_start: Callable[[RunContext], Any] | None = None
    ) -> Any:
        bound = self._bind(args, kwargs)
        parent = current_run()
        store = parent.store if parent is not None else open_store()
        if parent is not None and parent.compiling:
            # A static parent holds its steps until its DAG is complete; this child may need
            # their outputs now, so start what has been compiled so far.
            release_held(parent)
        config = self.config
        if bound.arguments:
            config = config.merged(parameters={k: v for k, v in bound.arguments.items() if _json_safe(v)})
        ctx = start_run(
            self.name, config, store, known_steps={s.name for s in self.depends_on}, parent=parent
        )
        if on_start is not None:
            on_start(ctx)
        ctx.activate()
        body_error: BaseException | None = None
        returned: Any = None
        try:
            if self.config.dynamic:
                returned = self.entrypoint(*bound.args, **bound.kwargs)
            else:
                ctx.compiling = True
                try:
                    returned = self.entrypoint(*bound.args, **bound.kwargs)
                finally:
                    ctx.compiling = False
                release_held(ctx)
        except BaseException as exc:  # noqa: BLE001 - finish_run records it; re-raised below
            body_error = exc
        finally:
            ctx.deactivate()
        if isinstance(body_error, (StepSkippedError, StepStoppedError)) and ctx.first_failure:
            # A call refused because an earlier step failed: report that step's error instead.
            body_error = None
        finish_run(ctx, body_error)
        if body_error is not None:
            raise body_error
        failure = failure_to_raise(ctx)
        if failure is not None:
            raise failure
        if parent is not None:
            return returned
        return load_run(ctx)

    def __repr__(self) -> str:
        kind = "dynamic" if self.config.dynamic else "static"
        return f"<Pipeline {self.name} ({kind})>"


class PipelineRunFuture:
    """A pipeline run started with ``submit()`` / ``synchronous=False``."""

    def __init__(self, future: Future[PipelineRun], ctx: RunContext | None) -> None:
        self._future = future
        self._ctx = ctx

    @property
    def run_name(self) -> str | None:
        return self._ctx.run_name if self._ctx else None

    @property
    def graph(self) -> Any:
        return self._ctx.graph if self._ctx else None

    def result(self, timeout: float | None = None) -> PipelineRun:
        return self._future.result(timeout)

    def wait(self, timeout: float | None = None) -> None:
        try:
            self._future.result(timeout)
        except Exception:  # noqa: BLE001 - wait() only waits
            pass

    def done(self) -> bool:
        return self._future.done()

    def __repr__(self) -> str:
        state = "done" if self.done() else "running"
        return f"<PipelineRunFuture {self.run_name} {state}>"


@overload
def pipeline(func: Callable[P, R], /) -> Pipeline[P, R]: ...


@overload
def pipeline(
    *,
    name: str | None = None,
    dynamic: bool = False,
    enable_cache: bool = True,
    execution_mode: Any = None,
    depends_on: list[Step[Any, Any]] | None = None,
    **options: Any,
) -> Callable[[Callable[P, R]], Pipeline[P, R]]: ...


def pipeline(func: Callable[P, R] | None = None, /, **options: Any) -> Any:
    """Make a function a pipeline: ``@pipeline`` or ``@pipeline(dynamic=True, ...)``."""

    def decorate(fn: Callable[P, R]) -> Pipeline[P, R]:
        opts = dict(options)
        depends_on = list(opts.pop("depends_on", None) or [])
        unknown = set(opts) - _PIPELINE_OPTIONS
        if unknown:
            raise TypeError(f"pipeline {fn.__name__!r}: unknown option(s) {', '.join(sorted(unknown))}")
        if "execution_mode" in opts and isinstance(opts["execution_mode"], str):
            opts["execution_mode"] = ExecutionMode(opts["execution_mode"])
        config = PipelineConfig().merged(**opts)
        return Pipeline(fn, config, depends_on)

    if func is not None:
        return decorate(func)
    return decorate
