"""A step's effective configuration: step options, pipeline defaults and YAML merged once per run."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .. import settings
from ..config import CachePolicy, ConfigError, StepRetryConfig, dask_settings
from ..store.materializers import Materializer, registry
from .context import RunContext

if TYPE_CHECKING:
    from ..steps import Step


#: ``settings=`` keys that runtimes read (each gets the pipeline's and the step's layer).
_RUNTIME_SETTING_KEYS = ("kubernetes",)


@dataclass(frozen=True)
class EffectiveStepConfig:
    """A step's configuration with pipeline defaults and YAML applied; computed once per run."""

    enable_cache: bool
    runtime: str
    retry: StepRetryConfig | None
    on_failure: Any
    on_success: Any
    cache_policy: CachePolicy
    resources: Any
    dask: Any  # DaskSettings of the step over the pipeline's, or None
    materializers: dict[str, Materializer | None]
    config_parameters: dict[str, Any]
    fingerprint: str
    capture_logs: bool
    #: runtime settings by key, each a list of layers (pipeline, then step): {"kubernetes": [...]}
    runtime_settings: dict[str, list[Any]] = field(default_factory=dict)
    #: DYNPIPE_ECHO_LOGS, read once per run (reading the environment per attempt cost ~3 µs)
    echo_logs: bool = True
    #: the StepTask fields the same for every attempt of this step in this run (engine/tasks.py),
    #: filled when the config is made
    task_fields: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)


def effective_config(ctx: RunContext, step: Step[Any, Any]) -> EffectiveStepConfig:
    cached = ctx.effective_configs.get(id(step))
    if cached is not None and cached[0] is step and cached[1] is step.config:
        return cached[2]
    pc = ctx.config
    sc = step.config
    yaml_cfg = pc.steps.get(step.name)
    if yaml_cfg is not None:
        sc = sc.merged(**yaml_cfg.model_dump(exclude_defaults=True))
    materializers = _materializers_for(step, sc.output_materializers)
    enable_cache = sc.enable_cache if sc.enable_cache is not None else pc.enable_cache
    policy = sc.cache_policy or pc.cache_policy or CachePolicy.default()
    fingerprint = json.dumps(
        {
            "outputs": [(o.name, repr(o.annotation)) for o in step.outputs],
            "materializers": {k: (m.name if m else None) for k, m in materializers.items()},
            "extra": sc.extra,
        },
        sort_keys=True,
        default=repr,
    )
    eff = EffectiveStepConfig(
        enable_cache=enable_cache,
        runtime=sc.runtime or "inline",
        retry=sc.retry or pc.retry,
        on_failure=sc.on_failure or pc.on_failure,
        on_success=sc.on_success or pc.on_success,
        cache_policy=policy,
        resources=sc.resources,
        dask=dask_settings(pc.settings, sc.settings),
        materializers=materializers,
        config_parameters=dict(sc.parameters),
        fingerprint=fingerprint,
        capture_logs=sc.enable_step_logs if sc.enable_step_logs is not None else pc.enable_step_logs,
        runtime_settings={
            key: [s.settings[key] for s in (pc, sc) if key in s.settings] for key in _RUNTIME_SETTING_KEYS
        },
        echo_logs=settings.echo_logs(),
    )
    eff.task_fields.update(_task_fields(ctx, step, eff))
    # Keyed on the config object too: configure() between calls (notebook cells) takes effect.
    ctx.effective_configs[id(step)] = (step, step.config, eff)
    return eff


def _task_fields(ctx: RunContext, step: Step[Any, Any], cfg: EffectiveStepConfig) -> dict[str, Any]:
    """The ``StepTask`` fields every attempt of ``step`` in this run shares (engine/tasks.py)."""
    return dict(
        run_id=ctx.run_id,
        run_name=ctx.run_name,
        pipeline_name=ctx.pipeline_name,
        step_name=step.name,
        func=step.entrypoint,
        input_annotations=step.input_annotations,
        outputs=step.outputs,
        materializers=cfg.materializers,
        store_root=str(ctx.store.root),
        echo_logs=cfg.echo_logs,
        capture_logs=cfg.capture_logs,
        settings=cfg.runtime_settings,
        resources=cfg.resources,
        artifact_store=ctx.store.artifact_url or "",  # "": the store's own folder
        dask=cfg.dask,
    )


def _materializers_for(step: Step[Any, Any], spec: Any) -> dict[str, Materializer | None]:
    result: dict[str, Materializer | None] = {o.name: None for o in step.outputs}
    if spec is None:
        return result
    if isinstance(spec, dict):
        for name, mat in spec.items():
            if name not in result:
                raise ConfigError(
                    f"step {step.name!r}: output_materializers names output {name!r},"
                    f" but the step's outputs are {list(result)}"
                )
            result[name] = registry.add(mat)
        return result
    mat = registry.add(spec)
    return {name: mat for name in result}
