"""Configuration models: steps, pipelines, caching, retries, execution modes, YAML templates.

Every model is declared with ``defer_build=True``: pydantic builds a model's validator when it
is first used, not when this module is imported, so a process that never touches, say,
``DaskSettings`` never pays for it (building them all took ~30 ms of a fresh process's first run).
No ``from __future__ import annotations`` here: pydantic would compile and evaluate every field's
annotation string at import (~25 % of this module's import); only self-references are quoted.
"""

import functools
import math
import re
import string
from collections.abc import Callable
from enum import Enum
from typing import Annotated, Any, ClassVar, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
)

from .errors import ConfigError


class ExecutionMode(str, Enum):
    """What a run does when a step fails."""

    FAIL_FAST = "fail_fast"
    STOP_ON_FAILURE = "stop_on_failure"
    CONTINUE_ON_FAILURE = "continue_on_failure"

    @classmethod
    def _missing_(cls, value: object) -> "ExecutionMode | None":
        if isinstance(value, str):
            key = value.strip().lower().replace("-", "_")
            for member in cls:
                if member.value == key:
                    return member
        return None


class _CheckedModel(BaseModel):
    """A config model users build by hand: bad values raise ``ConfigError`` naming the field.

    Nested validation (a dict inside ``PipelineConfig``) bypasses this ``__init__`` so the
    error keeps its full location (``retry.delay``), which YAML errors turn into a line.
    """

    model_config = ConfigDict(defer_build=True)

    def __init__(self, **data: Any) -> None:
        try:
            super().__init__(**data)
        except ValidationError as exc:
            raise ConfigError(f"invalid {self.what}: {_describe(exc)}") from None

    __init__.__pydantic_base_init__ = True  # type: ignore[attr-defined]
    what: ClassVar[str] = "configuration"

MAX_RETRIES = 100
"""Most retries a step may be given."""
MAX_RETRY_WAIT = 86_400.0
"""Longest wait before a retry, in seconds (one day): the largest ``delay``, and the cap on
``delay * backoff**n`` so a wait never overflows a timeout."""
MAX_RETRY_BACKOFF = 100.0
"""Largest growth factor between two retries."""


class StepRetryConfig(_CheckedModel):
    """Retry a failing step ``max_retries`` times, waiting ``delay * backoff**n`` seconds.

    Limits (a ``ConfigError`` names the field): ``max_retries`` 0..100, ``delay`` 0..86400 s,
    ``backoff`` 0..100, all finite; the wait before any retry is capped at 86400 s.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)
    what: ClassVar[str] = "retry configuration"
    max_retries: int = Field(default=1, ge=0, le=MAX_RETRIES)
    delay: float = Field(default=0.0, ge=0, le=MAX_RETRY_WAIT, allow_inf_nan=False)
    backoff: float = Field(default=1.0, ge=0, le=MAX_RETRY_BACKOFF, allow_inf_nan=False)

    def wait_before(self, retry_number: int) -> float:
        """Seconds to wait before retry number ``retry_number`` (1-based); backoff < 1 means none.

        Never more than ``MAX_RETRY_WAIT``: the engine hands this to a timed wait.
        """
        exponent = min(max(retry_number - 1, 0), MAX_RETRIES)
        try:
            wait = self.delay * (max(self.backoff, 1.0) ** exponent)
        except OverflowError:  # only a model built without validation (model_construct) gets here
            return MAX_RETRY_WAIT
        return wait if 0 <= wait <= MAX_RETRY_WAIT else MAX_RETRY_WAIT


class CachePolicy(BaseModel):
    """Which parts of a step invocation make up its cache key, and how long hits stay valid."""

    model_config = ConfigDict(extra="forbid", frozen=True, arbitrary_types_allowed=True, defer_build=True)
    include_step_code: bool = True
    include_step_parameters: bool = True
    include_artifact_values: bool = True
    include_artifact_ids: bool = False
    ignored_inputs: tuple[str, ...] = ()
    ignore_fields: tuple[str, ...] = ()
    expires_after: float | None = Field(default=None, ge=0, description="seconds")
    max_age_days: float | None = Field(default=None, ge=0)
    cache_func: Callable[[], str] | None = None

    @property
    def max_age_seconds(self) -> float | None:
        ages = [a for a in (self.expires_after, (self.max_age_days or 0) * 86400 or None) if a]
        return min(ages) if ages else None

    @classmethod
    @functools.cache
    def default(cls) -> "CachePolicy":
        """The shared default policy, made on first use.

        All defaults, nothing to validate: ``model_construct`` spares a run that never sets a
        policy the build of this model's validator (see the module doc).
        """
        return cls.model_construct()

_MEMORY_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMGT]i?B?|B)?\s*$", re.IGNORECASE)
_UNITS = {"": 1, "B": 1, "K": 10**3, "M": 10**6, "G": 10**9, "T": 10**12,
          "KI": 2**10, "MI": 2**20, "GI": 2**30, "TI": 2**40}


class ResourceSettings(_CheckedModel):
    """CPU, memory and GPUs for a step: enforced locally where the OS allows, passed to Kubernetes."""

    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)
    what: ClassVar[str] = "resource settings"
    cpu_count: float | None = Field(default=None, gt=0, allow_inf_nan=False)
    memory: str | None = None
    gpu_count: int | None = Field(default=None, ge=0)

    @field_validator("memory")
    @classmethod
    def _check_memory(cls, value: str | None) -> str | None:
        if value is None:
            return None
        match = _MEMORY_RE.match(value)
        if not match:
            raise ValueError(f"memory {value[:40]!r} is not a size like '512MB' or '4GiB'")
        if not math.isfinite(_size(match)):
            raise ValueError(f"memory {value[:40]!r} is too large")
        return value

    @property
    def memory_bytes(self) -> int | None:
        if self.memory is None:
            return None
        match = _MEMORY_RE.match(self.memory)
        assert match is not None
        return int(_size(match))


class DaskSettings(_CheckedModel):
    """Where an isolated step may run on a Dask cluster (``settings={"dask": DaskSettings(...)}``).

    ``resources`` are Dask worker resources (``{"GPU": 1}``); ``workers`` restricts the step to
    those worker addresses or names (others too with ``allow_other_workers``); a higher
    ``priority`` runs first. ``ResourceSettings`` places the step too: ``memory`` must fit a
    worker's ``memory_limit`` and ``cpu_count`` its ``nthreads`` (the step goes only to workers
    that do), ``gpu_count`` asks for the Dask resource ``{gpu_resource: n}``. Name
    ``cpu_resource`` / ``memory_resource`` (e.g. ``"CPU"``, ``"MEMORY"``) to ask for Dask
    resources instead, on clusters whose workers advertise them; a name ``resources`` already
    has, or ``gpu_resource=None``, turns that mapping off.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)
    what: ClassVar[str] = "Dask settings"
    resources: dict[str, float] = {}
    workers: tuple[str, ...] | None = None
    allow_other_workers: bool = False
    priority: int = 0
    gpu_resource: str | None = "GPU"
    cpu_resource: str | None = None
    memory_resource: str | None = None

    @field_validator("resources")
    @classmethod
    def _check_resources(cls, value: dict[str, float]) -> dict[str, float]:
        for name, amount in value.items():
            if not name or not math.isfinite(amount) or amount <= 0:
                raise ValueError(f"resource {name!r} needs a positive finite amount, got {amount!r}")
        return value


def _checked_settings(value: dict[str, Any]) -> dict[str, Any]:
    """``settings["dask"]`` as a ``DaskSettings`` (a mapping is validated where it is configured)."""
    dask = value.get("dask")
    if dask is None or isinstance(dask, DaskSettings):
        return value
    if not isinstance(dask, dict):
        raise ValueError(f"settings.dask must be DaskSettings or a mapping, got {type(dask).__name__}")
    try:
        checked = DaskSettings.model_validate(dask)
    except ValidationError as exc:
        raise ValueError(f"settings.dask: {_describe(exc)}") from None
    return {**value, "dask": checked}


def dask_settings(*layers: dict[str, Any]) -> DaskSettings | None:
    """The ``dask`` settings of the last layer that has them (pipeline, then step)."""
    found: DaskSettings | None = None
    for layer in layers:
        value = _checked_settings(layer).get("dask")
        if value is not None:
            found = value
    return found


def _size(match: re.Match[str]) -> float:
    unit = (match.group(2) or "").upper().rstrip("B")
    return float(match.group(1)) * _UNITS[unit]


class ArtifactConfig(BaseModel):
    """Name, tags and metadata of an output, used as ``Annotated[T, ArtifactConfig(...)]``."""

    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)
    name: str | None = None
    tags: tuple[str, ...] = ()
    run_metadata: dict[str, Any] = {}


RUN_NAME_PLACEHOLDERS = ("date", "time", "run_id", "pipeline_name")
"""The ``{placeholders}`` a ``run_name`` template may use; each is replaced by a string."""


def check_run_name(template: str) -> str:
    """A ``run_name`` template must format when the run starts; check it when it is configured."""
    known = ", ".join("{" + name + "}" for name in RUN_NAME_PLACEHOLDERS)
    shown = template if len(template) <= 60 else template[:57] + "..."
    try:
        for _, field, spec, _ in string.Formatter().parse(template):
            if field is not None and field not in RUN_NAME_PLACEHOLDERS:
                raise ValueError(f"unknown placeholder {field!r}")
            if spec and ("{" in spec or "}" in spec):
                raise ValueError("a placeholder inside a format spec")
        template.format(**dict.fromkeys(RUN_NAME_PLACEHOLDERS, "x"))
    except ValueError as exc:
        raise ValueError(f"run name {shown!r} is not a valid template ({exc}); known placeholders: {known}") from None
    return template


RunNameTemplate = Annotated[str, AfterValidator(check_run_name)]
Runtime = Literal["inline", "isolated"]
Hook = Callable[..., Any]


class StepConfig(BaseModel):
    """Everything a step invocation can be configured with (decorator, configure, with_options, YAML)."""

    model_config = ConfigDict(extra="forbid", frozen=True, arbitrary_types_allowed=True, defer_build=True)
    name: str | None = None
    enable_cache: bool | None = None
    runtime: Runtime | None = None
    retry: StepRetryConfig | None = None
    parameters: dict[str, Any] = {}
    output_materializers: Any = None
    on_failure: Hook | None = None
    on_success: Hook | None = None
    cache_policy: CachePolicy | None = None
    resources: ResourceSettings | None = None
    settings: dict[str, Any] = {}
    extra: dict[str, Any] = {}
    enable_step_logs: bool | None = None

    yaml_keys: ClassVar[tuple[str, ...]] = (
        "parameters", "enable_cache", "runtime", "retry", "settings", "enable_step_logs", "extra",
    )
    """Fields a YAML config template may set under ``steps.<name>:`` (the rest hold code)."""

    @field_validator("settings")
    @classmethod
    def _check_settings(cls, value: dict[str, Any]) -> dict[str, Any]:
        return _checked_settings(value)

    def merged(self, **changes: Any) -> "StepConfig":
        """A copy with ``changes`` applied (None leaves a field as it is); validated."""
        data = _apply(self.model_dump(exclude_defaults=True), changes)
        settings = data.get("settings")
        if isinstance(settings, dict) and "resources" in settings and "resources" not in changes:
            data["resources"] = settings["resources"]  # validated (and named) as a field below
        return build_model(StepConfig, data, "step configuration")


class Model(BaseModel):
    """The model a pipeline's runs are linked to (ZenML's ``Model``); recorded with each run."""

    model_config = ConfigDict(extra="allow", frozen=True, defer_build=True)
    name: str
    version: str | None = None
    description: str | None = None
    tags: list[str] = []


class PipelineConfig(BaseModel):
    """Pipeline-level options; step defaults (cache, retry, hooks) apply to every step."""

    model_config = ConfigDict(extra="forbid", frozen=True, arbitrary_types_allowed=True, defer_build=True)
    name: str | None = None
    dynamic: bool = False
    enable_cache: bool = True
    execution_mode: ExecutionMode | None = None
    retry: StepRetryConfig | None = None
    on_failure: Hook | None = None
    on_success: Hook | None = None
    on_init: Hook | None = None
    on_cleanup: Hook | None = None
    run_name: RunNameTemplate | None = None
    tags: tuple[str, ...] = ()
    parameters: dict[str, Any] = {}
    steps: dict[str, StepConfig] = {}
    synchronous: bool = True
    cache_policy: CachePolicy | None = None
    config_path: str | None = None
    settings: dict[str, Any] = {}
    extra: dict[str, Any] = {}
    enable_artifact_metadata: bool = True
    enable_step_logs: bool = True
    model: Model | None = None

    yaml_keys: ClassVar[tuple[str, ...]] = (
        "parameters", "steps", "run_name", "execution_mode", "enable_cache", "synchronous", "retry",
        "tags", "settings", "extra", "enable_step_logs",
    )
    """Fields a YAML config template may set at the top level (the rest hold code or identity)."""

    @field_validator("settings")
    @classmethod
    def _check_settings(cls, value: dict[str, Any]) -> dict[str, Any]:
        return _checked_settings(value)

    @property
    def runs_synchronously(self) -> bool:
        """``synchronous=False``, or ZenML's ``settings={"orchestrator": {"synchronous": False}}``
        (also ``orchestrator.<flavor>``), makes a call return at once with a run future."""
        if not self.synchronous:
            return False
        for key, value in self.settings.items():
            is_orchestrator = key == "orchestrator" or key.startswith("orchestrator.")
            if is_orchestrator and isinstance(value, dict) and value.get("synchronous") is False:
                return False
        return True

    @property
    def mode(self) -> ExecutionMode:
        if self.execution_mode is not None:
            return self.execution_mode
        return ExecutionMode.STOP_ON_FAILURE

    def merged(self, **changes: Any) -> "PipelineConfig":
        """A copy with ``changes`` applied (None leaves a field as it is); ``steps`` merge per step."""
        data = _apply(self.model_dump(exclude_defaults=True), {k: v for k, v in changes.items() if k != "steps"})
        new_steps = changes.get("steps")
        if isinstance(new_steps, dict):
            steps = dict(self.steps)
            for step_name, step_cfg in new_steps.items():
                what = f"configuration of step {step_name!r}"
                cfg = step_cfg if isinstance(step_cfg, StepConfig) else build_model(StepConfig, step_cfg, what)
                prior = self.steps.get(step_name) if isinstance(step_name, str) else None
                if prior is None:
                    prior = _no_step_config()
                steps[step_name] = prior.merged(**cfg.model_dump(exclude_defaults=True))
            data["steps"] = steps
        elif new_steps is not None:
            data["steps"] = new_steps  # not a mapping: validation names it
        else:
            data["steps"] = dict(self.steps)
        return build_model(PipelineConfig, data, "pipeline configuration")


@functools.cache
def _no_step_config() -> StepConfig:
    return StepConfig.model_construct()  # all defaults, nothing to validate

_MERGED_DICTS = ("parameters", "settings", "extra")


def _apply(data: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    """``changes`` over ``data``: None leaves a value, mappings in ``_MERGED_DICTS`` are merged."""
    for key, value in changes.items():
        if value is None:
            continue
        prior = data.get(key, {})
        if key in _MERGED_DICTS and isinstance(value, dict) and isinstance(prior, dict):
            data[key] = {**prior, **value}
        else:
            data[key] = value
    return data


def build_model(model: type[BaseModel], data: Any, what: str) -> Any:
    """Validate ``data`` as ``model``; any problem is a ``ConfigError`` naming each field."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(f"invalid {what}: {_describe(exc)}") from None


def _describe(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"])
        msg = error_message(err)
        parts.append(f"{loc}: {msg}" if loc else msg)
    return "; ".join(parts)


def error_message(err: Any) -> str:
    """One pydantic error as a user reads it: no "Value error, " prefix, extra keys are unknown keys."""
    if err["type"] == "extra_forbidden":
        return "unknown key"
    msg: str = err["msg"]
    return msg.removeprefix("Value error, ")
