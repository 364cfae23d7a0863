"""``@step`` and ``Step``: configure, with_options, call, submit, map, product."""

from __future__ import annotations

import copy
import functools
import inspect
import itertools
import typing
from collections.abc import Callable
from typing import Any, Generic, ParamSpec, TypeVar, overload

from . import settings
from .config import ResourceSettings, StepConfig, StepRetryConfig
from .engine.binding import prepare
from .engine.cache import source_hash
from .engine.context import current_run
from .engine.execution import call_sync
from .engine.scheduling import schedule
from .engine.single import run_single_step
from .futures import MapResultsFuture, StepRunFuture, unmapped
from .runtimes.task import current_step_context
from .signatures import CallShape, OutputSpec, parse_outputs
from .store.models import ArtifactVersion

P = ParamSpec("P")
R = TypeVar("R")

_STEP_OPTIONS = (
    "name", "enable_cache", "runtime", "retry", "parameters", "output_materializers",
    "on_failure", "on_success", "cache_policy", "settings", "extra", "enable_step_logs",
    "resources",
)


def resolved_type_hints(func: Callable[..., Any]) -> dict[str, Any]:
    try:
        return typing.get_type_hints(func, include_extras=True)
    except Exception:  # noqa: BLE001 - unresolvable forward references: keep what resolves
        return {k: v for k, v in getattr(func, "__annotations__", {}).items() if not isinstance(v, str)}


class Step(Generic[P, R]):
    """A function whose calls become recorded, cached step runs inside a pipeline."""

    def __init__(self, func: Callable[P, R], config: StepConfig) -> None:
        self.entrypoint = func
        self.name: str = func.__name__
        self.config = config
        self.signature = inspect.signature(func)
        self.call_shape = CallShape(self.signature)
        hints = resolved_type_hints(func)
        self.input_annotations: dict[str, Any] = {
            n: hints[n] for n in self.signature.parameters if n in hints
        }
        self.outputs: list[OutputSpec] = parse_outputs(func, hints)
        #: the same specs by name (each finished step looks its outputs up)
        self.output_specs: dict[str, OutputSpec] = {o.name: o for o in self.outputs}
        self._code_hash: str | None = None
        functools.update_wrapper(self, func)
        self.missing_annotations: list[str] = [n for n in self.signature.parameters if n not in hints]
        if "return" not in hints:
            self.missing_annotations.append("return")
        self.check_annotations()

    def check_annotations(self) -> None:
        """With DYNPIPE_ENFORCE_TYPE_ANNOTATIONS set, a step missing annotations is an error.

        Checked when the step is defined and again when it is run, so setting the variable
        after the definitions (a notebook's ``%env``) still takes effect.
        """
        if self.missing_annotations and settings.enforce_type_annotations():
            raise TypeError(
                f"step {self.name!r} has no type annotation for {', '.join(self.missing_annotations)}"
                " (DYNPIPE_ENFORCE_TYPE_ANNOTATIONS is set)"
            )

    @property
    def code_hash(self) -> str:
        if self._code_hash is None:
            self._code_hash = source_hash(self.entrypoint)
        return self._code_hash

    # -- configuration ---------------------------------------------------------------
    def configure(self, **options: Any) -> Step[P, R]:
        """Change this step's configuration in place (returns the step)."""
        self.config = self.config.merged(**_normalise_options(self.name, options))
        return self

    def with_options(self, **options: Any) -> Step[P, R]:
        """A copy of this step with changed configuration (``name=`` renames invocations)."""
        clone = copy.copy(self)
        clone.config = self.config.merged(**_normalise_options(self.name, options))
        return clone

    # -- calls -------------------------------------------------------------------------
    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """Run the step now (inside a pipeline: a recorded step run; returns its output artifact(s)).

        ``id=`` names the invocation and ``after=`` adds ordering-only upstream steps.
        Typed ``Any`` like ZenML's: inside a pipeline the call returns an artifact (with
        ``.load() -> R``), its arguments may be futures or artifacts of other steps, and
        outside one it may return the plain value; no single static type is true of all.
        ``submit`` is where the types are exact: ``StepRunFuture[R]``.
        """
        __tracebackhide__ = True
        custom_id: str | None = kwargs.pop("id", None)
        after = kwargs.pop("after", None)
        ctx = current_run()
        if ctx is None:
            if current_step_context() is not None or settings.run_single_steps_without_store():
                return self.entrypoint(*args, **kwargs)
            return run_single_step(self, args, kwargs)
        if current_step_context() is not None:
            return self.entrypoint(*args, **kwargs)
        inv = prepare(ctx, self, args, kwargs, custom_id, after)
        if ctx.compiling:
            ctx.held.append(inv)
            return _placeholders(inv)
        return call_sync(inv)

    def submit(self, *args: Any, **kwargs: Any) -> StepRunFuture[R]:
        """Start the step concurrently; returns a StepRunFuture at once (``id=``, ``after=`` as for a call)."""
        custom_id: str | None = kwargs.pop("id", None)
        after = kwargs.pop("after", None)
        ctx = current_run()
        if ctx is None:
            raise RuntimeError(
                f"{self.name}.submit() needs a running pipeline: call it inside a"
                " @pipeline(dynamic=True) function or a %%pipeline cell"
            )
        inv = prepare(ctx, self, args, kwargs, custom_id, after)
        if ctx.compiling:
            ctx.held.append(inv)
        else:
            schedule(inv)
        return StepRunFuture(inv)

    def map(self, *args: Any, after: Any = None, **kwargs: Any) -> Any:
        """Submit one invocation per element of the mapped inputs (zipped); ``unmapped`` broadcasts."""
        return self._fan_out(args, kwargs, after, product=False)

    def product(self, *args: Any, after: Any = None, **kwargs: Any) -> Any:
        """Submit one invocation per combination of the mapped inputs (cartesian product)."""
        return self._fan_out(args, kwargs, after, product=True)

    def _fan_out(self, args: tuple[Any, ...], kwargs: dict[str, Any], after: Any, product: bool) -> Any:
        try:
            bound = self.signature.bind_partial(*args, **kwargs).arguments
        except TypeError as exc:  # "too many positional arguments" names neither step nor input
            kind = "product" if product else "map"
            raise TypeError(f"step {self.name!r}: {self.name}.{kind}(): {exc}") from None
        mapped: dict[str, list[Any]] = {}
        fixed: dict[str, Any] = {}
        producers: list[Any] = []  # a mapped step output: keep the edge to its producer
        for name, value in bound.items():
            if isinstance(value, unmapped):
                fixed[name] = value.value
            else:
                if isinstance(value, (StepRunFuture, ArtifactVersion)):
                    producers.append(value)
                mapped[name] = _as_sequence(self.name, name, value)
        if producers:
            after = [*producers, *(after if isinstance(after, (list, tuple)) else [after] if after is not None else [])]
        if not mapped:
            raise ValueError(f"{self.name}.map(): no mapped input; wrap broadcast inputs in unmapped()")
        if product:
            combos = [dict(zip(mapped, vals, strict=False)) for vals in itertools.product(*mapped.values())]
        else:
            lengths = {n: len(v) for n, v in mapped.items()}
            if len(set(lengths.values())) > 1:
                raise ValueError(
                    f"{self.name}.map(): mapped inputs have different lengths {lengths}; use product() for combinations"
                )
            combos = [dict(zip(mapped, vals, strict=False)) for vals in zip(*mapped.values(), strict=False)]
        return MapResultsFuture(self.submit(after=after, **fixed, **combo) for combo in combos)

    def __repr__(self) -> str:
        return f"<Step {self.name}>"


def _as_sequence(step_name: str, input_name: str, value: Any) -> list[Any]:
    if isinstance(value, (StepRunFuture, ArtifactVersion)):
        value = value.load()
    if isinstance(value, (list, tuple, range)):
        return list(value)
    try:
        return list(value)
    except TypeError:
        raise TypeError(
            f"{step_name}.map(): input {input_name!r} is a {type(value).__name__}, not a sequence;"
            " wrap it in unmapped() to pass it whole"
        ) from None


def _placeholders(inv: Any) -> Any:
    names = inv.output_names
    if len(names) > 1:
        return tuple(StepRunFuture(inv, n) for n in names)
    return StepRunFuture(inv)


def _normalise_options(step_name: str, options: dict[str, Any]) -> dict[str, Any]:
    unknown = set(options) - set(_STEP_OPTIONS) - {"resource_settings"}
    if unknown:
        raise TypeError(f"step {step_name!r}: unknown option(s) {', '.join(sorted(unknown))}")
    opts = dict(options)
    if "resource_settings" in opts:
        opts["resources"] = opts.pop("resource_settings")
    settings = opts.get("settings") or {}
    if "resources" in settings and "resources" not in opts:
        res = settings["resources"]
        opts["resources"] = res if isinstance(res, ResourceSettings) else ResourceSettings(**res)
    retry = opts.get("retry")
    if isinstance(retry, dict):
        opts["retry"] = StepRetryConfig(**retry)
    return opts


@overload
def step(func: Callable[P, R], /) -> Step[P, R]: ...


@overload
def step(
    *,
    name: str | None = None,
    enable_cache: bool | None = None,
    runtime: str | None = None,
    retry: StepRetryConfig | None = None,
    output_materializers: Any = None,
    on_failure: Callable[..., Any] | None = None,
    on_success: Callable[..., Any] | None = None,
    cache_policy: Any = None,
    settings: dict[str, Any] | None = None,
    extra: dict[str, Any] | None = None,
    enable_step_logs: bool | None = None,
    resources: ResourceSettings | None = None,
) -> Callable[[Callable[P, R]], Step[P, R]]: ...


def step(func: Callable[P, R] | None = None, /, **options: Any) -> Any:
    """Make a function a step: ``@step`` or ``@step(runtime="isolated", retry=...)``."""

    def decorate(fn: Callable[P, R]) -> Step[P, R]:
        opts = _normalise_options(fn.__name__, options)
        name = opts.pop("name", None)
        # No options: all defaults, nothing to validate (spares building StepConfig's validator).
        cfg = StepConfig.model_construct() if not opts else StepConfig().merged(**opts)
        s = Step(fn, cfg)
        if name:
            s.name = name
        return s

    if func is not None:
        return decorate(func)
    return decorate
