"""Configuration models: steps, pipelines, caching, retries, execution modes, YAML templates."""

from __future__ import annotations

from .errors import ConfigError  # noqa: F401 - re-exported for existing imports

import re
from collections.abc import Callable
from enum import Enum
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator



class ExecutionMode(str, Enum):
    """What a run does when a step fails."""

    FAIL_FAST = "fail_fast"
    STOP_ON_FAILURE = "stop_on_failure"
    CONTINUE_ON_FAILURE = "continue_on_failure"

    @classmethod
    def _missing_(cls, value: object) -> ExecutionMode | None:
        if isinstance(value, str):
            key = value.strip().lower().replace("-", "_")
            for member in cls:
                if member.value == key:
                    return member
        return None


class StepRetryConfig(BaseModel):
    """Retry a failing step ``max_retries`` times, waiting ``delay * backoff**n`` seconds."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    max_retries: int = Field(default=1, ge=0)
    delay: float = Field(default=0.0, ge=0)
    backoff: float = Field(default=1.0, ge=0)

    def wait_before(self, retry_number: int) -> float:
        """Seconds to wait before retry number ``retry_number`` (1-based); backoff < 1 means none."""
        return self.delay * (max(self.backoff, 1.0) ** (retry_number - 1))


class CachePolicy(BaseModel):
    """Which parts of a step invocation make up its cache key, and how long hits stay valid."""

    model_config = ConfigDict(extra="forbid", frozen=True, arbitrary_types_allowed=True)
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
    def default(cls) -> CachePolicy:
        return _DEFAULT_CACHE_POLICY


_DEFAULT_CACHE_POLICY = CachePolicy()

_MEMORY_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMGT]i?B?|B)?\s*$", re.IGNORECASE)
_UNITS = {"": 1, "B": 1, "K": 10**3, "M": 10**6, "G": 10**9, "T": 10**12,
          "KI": 2**10, "MI": 2**20, "GI": 2**30, "TI": 2**40}


class ResourceSettings(BaseModel):
    """CPU, memory and GPUs for a step: enforced locally where the OS allows, passed to Kubernetes."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    cpu_count: float | None = Field(default=None, gt=0)
    memory: str | None = None
    gpu_count: int | None = Field(default=None, ge=0)

    @field_validator("memory")
    @classmethod
    def _check_memory(cls, value: str | None) -> str | None:
        if value is not None and not _MEMORY_RE.match(value):
            raise ValueError(f"memory {value!r} is not a size like '512MB' or '4GiB'")
        return value

    @property
    def memory_bytes(self) -> int | None:
        if self.memory is None:
            return None
        match = _MEMORY_RE.match(self.memory)
        assert match is not None
        unit = (match.group(2) or "").upper().rstrip("B")
        return int(float(match.group(1)) * _UNITS[unit])


class ArtifactConfig(BaseModel):
    """Name, tags and metadata of an output, used as ``Annotated[T, ArtifactConfig(...)]``."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    name: str | None = None
    tags: tuple[str, ...] = ()
    run_metadata: dict[str, Any] = Field(default_factory=dict)


Runtime = Literal["inline", "isolated"]
Hook = Callable[..., Any]


class StepConfig(BaseModel):
    """Everything a step invocation can be configured with (decorator, configure, with_options, YAML)."""

    model_config = ConfigDict(extra="forbid", frozen=True, arbitrary_types_allowed=True)
    name: str | None = None
    enable_cache: bool | None = None
    runtime: Runtime | None = None
    retry: StepRetryConfig | None = None
    parameters: dict[str, Any] = Field(default_factory=dict)
    output_materializers: Any = None
    on_failure: Hook | None = None
    on_success: Hook | None = None
    cache_policy: CachePolicy | None = None
    resources: ResourceSettings | None = None
    settings: dict[str, Any] = Field(default_factory=dict)
    extra: dict[str, Any] = Field(default_factory=dict)
    enable_step_logs: bool | None = None

    def merged(self, **changes: Any) -> StepConfig:
        """A copy with ``changes`` applied (None leaves a field as it is); validated."""
        data = self.model_dump(exclude_defaults=True)
        for key, value in changes.items():
            if value is None:
                continue
            if key in ("parameters", "settings", "extra"):
                data[key] = {**data.get(key, {}), **value}
            else:
                data[key] = value
        if "settings" in data and "resources" in data["settings"] and "resources" not in changes:
            res = data["settings"]["resources"]
            data["resources"] = res if isinstance(res, ResourceSettings) else ResourceSettings(**res)
        return build_model(StepConfig, data, "step configuration")


class Model(BaseModel):
    """The model a pipeline's runs are linked to (ZenML's ``Model``); recorded with each run."""

    model_config = ConfigDict(extra="allow", frozen=True)
    name: str
    version: str | None = None
    description: str | None = None
    tags: list[str] = Field(default_factory=list)


class PipelineConfig(BaseModel):
    """Pipeline-level options; step defaults (cache, retry, hooks) apply to every step."""

    model_config = ConfigDict(extra="forbid", frozen=True, arbitrary_types_allowed=True)
    name: str | None = None
    dynamic: bool = False
    enable_cache: bool = True
    execution_mode: ExecutionMode | None = None
    retry: StepRetryConfig | None = None
    on_failure: Hook | None = None
    on_success: Hook | None = None
    on_init: Hook | None = None
    on_cleanup: Hook | None = None
    run_name: str | None = None
    tags: tuple[str, ...] = ()
    parameters: dict[str, Any] = Field(default_factory=dict)
    steps: dict[str, StepConfig] = Field(default_factory=dict)
    synchronous: bool = True
    cache_policy: CachePolicy | None = None
    config_path: str | None = None
    settings: dict[str, Any] = Field(default_factory=dict)
    extra: dict[str, Any] = Field(default_factory=dict)
    enable_artifact_metadata: bool = True
    enable_step_logs: bool = True
    model: Model | None = None

    @property
    def runs_synchronously(self) -> bool:
        """``synchronous=False``, or ZenML's ``settings={"orchestrator": {"synchronous": False}}``
        (also ``orchestrator.<flavor>``), makes a call return at once with a run future."""
        if not self.synchronous:
            return False
        for key, value in self.settings.items():
            if (key == "orchestrator" or key.startswith("orchestrator.")) and isinstance(value, dict):
                if value.get("synchronous") is False:
                    return False
        return True

    @property
    def mode(self) -> ExecutionMode:
        if self.execution_mode is not None:
            return self.execution_mode
        return ExecutionMode.STOP_ON_FAILURE

    def merged(self, **changes: Any) -> PipelineConfig:
        data = self.model_dump(exclude_defaults=True)
        for key, value in changes.items():
            if value is None:
                continue
            if key in ("parameters", "settings", "extra"):
                data[key] = {**data.get(key, {}), **value}
            elif key == "steps":
                steps = dict(data.get("steps", {}))
                for step_name, step_cfg in value.items():
                    prior = self.steps.get(step_name, StepConfig())
                    cfg = step_cfg if isinstance(step_cfg, StepConfig) else StepConfig(**step_cfg)
                    steps[step_name] = prior.merged(**cfg.model_dump(exclude_defaults=True))
                data["steps"] = steps
            else:
                data[key] = value
        data["steps"] = {
            k: (v if isinstance(v, StepConfig) else StepConfig(**v))
            for k, v in data.get("steps", {}).items()
        }
        return build_model(PipelineConfig, data, "pipeline configuration")


def build_model(model: type[BaseModel], data: dict[str, Any], what: str) -> Any:
    try:
        return model(**data)
    except ValidationError as exc:
        raise ConfigError(f"invalid {what}: {_describe(exc)}") from None


def _describe(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"])
        msg = "unknown key" if err["type"] == "extra_forbidden" else err["msg"]
        parts.append(f"{loc}: {msg}" if loc else msg)
    return "; ".join(parts)


# -- YAML config templates --------------------------------------------------------


class _FileSettings(BaseModel):
    """``settings:`` of a step in a YAML template: ``resources`` is checked where it is written."""

    model_config = ConfigDict(extra="allow")
    resources: ResourceSettings | None = None


class _StepFileConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    parameters: dict[str, Any] = Field(default_factory=dict)
    enable_cache: bool | None = None
    runtime: Runtime | None = None
    retry: StepRetryConfig | None = None
    settings: _FileSettings = Field(default_factory=_FileSettings)
    enable_step_logs: bool | None = None
    extra: dict[str, Any] = Field(default_factory=dict)


class _PipelineFileConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    parameters: dict[str, Any] = Field(default_factory=dict)
    steps: dict[str, _StepFileConfig] = Field(default_factory=dict)
    run_name: str | None = None
    execution_mode: ExecutionMode | None = None
    enable_cache: bool | None = None
    synchronous: bool | None = None
    retry: StepRetryConfig | None = None
    tags: list[str] = Field(default_factory=list)
    settings: dict[str, Any] = Field(default_factory=dict)
    extra: dict[str, Any] = Field(default_factory=dict)
    enable_step_logs: bool | None = None


def _line_of(node: Any, loc: tuple[Any, ...]) -> int | None:
    """1-based line of the key at ``loc`` in a composed YAML node tree."""
    import yaml

    line = None
    for part in loc:
        if not isinstance(node, yaml.MappingNode):
            break
        for key_node, value_node in node.value:
            if key_node.value == str(part):
                line = key_node.start_mark.line + 1
                node = value_node
                break
        else:
            break
    return line


def load_config_file(path: str | Path, known_steps: set[str] | None) -> dict[str, Any]:
    """Read a YAML config template; return changes for ``PipelineConfig.merged``.

    ``known_steps`` are the step names the pipeline ``depends_on``; a ``steps:`` key naming
    any other step is an error that names the key and the file.
    """
    import yaml

    file = Path(path)
    try:
        text = file.read_text()
    except OSError as exc:
        raise ConfigError(f"cannot read config file {file}: {exc.strerror}") from None
    try:
        node = yaml.compose(text)
        raw = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f", line {mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(f"malformed YAML in {file}{where}: {problem}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"config file {file} must hold a mapping at the top level")
    try:
        parsed = _PipelineFileConfig(**raw)
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = tuple(err["loc"])
        line = _line_of(node, loc)
        key = ".".join(str(p) for p in loc)
        what = "unknown key" if err["type"] == "extra_forbidden" else err["msg"]
        where = f", line {line}" if line else ""
        raise ConfigError(f"{file}{where}: {key}: {what}") from None
    if known_steps is not None:
        for step_name in parsed.steps:
            if step_name not in known_steps:
                line = _line_of(node, ("steps", step_name))
                where = f", line {line}" if line else ""
                known = ", ".join(sorted(known_steps)) or "none (add them with depends_on=[...])"
                raise ConfigError(
                    f"{file}{where}: steps.{step_name}: no such step in this pipeline"
                    f" (configurable steps: {known})"
                )
    changes: dict[str, Any] = parsed.model_dump(exclude_defaults=True)
    changes["steps"] = {
        name: StepConfig(**cfg.model_dump(exclude_defaults=True))
        for name, cfg in parsed.steps.items()
    }
    if "tags" in changes:
        changes["tags"] = tuple(changes["tags"])
    return changes
