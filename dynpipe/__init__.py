"""dynpipe: a Jupyter-first workbench for dynamic ML pipelines.

Public API (re-exports only); see README.md for a quickstart.

The re-exports are lazy (PEP 562 ``__getattr__``): ``import dynpipe`` loads nothing, and
``from dynpipe import step, pipeline`` loads only what defining and running a step needs —
not pydantic's models for Dask or Kubernetes settings, the ``Client``, or the materializers
(a fresh process's first run is most of its cost in imports; see tests/test_import_cost.py).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # what mypy and IDEs see; at run time ``__getattr__`` imports on first use
    from .config import (
        ArtifactConfig,
        CachePolicy,
        ConfigError,
        DaskSettings,
        ExecutionMode,
        Model,
        PipelineConfig,
        ResourceSettings,
        StepConfig,
        StepRetryConfig,
    )
    from .errors import (
        ArtifactIntegrityError,
        ArtifactLoadError,
        StepExecutionError,
        StepRecordingError,
        StepSkippedError,
        StepStoppedError,
        StoreAccessError,
        StoreError,
        StoreFullError,
        UnsafeStoreError,
    )
    from .futures import MapResultsFuture, StepRunFuture, as_completed, unmapped, wait
    from .outputs import OutputArtifact, StepTypeError
    from .pipelines import Pipeline, PipelineRunFuture, pipeline
    from .runtimes.dask_client import use_dask
    from .runtimes.k8s.config import KubernetesSettings
    from .runtimes.task import StepContext, get_step_context
    from .status import ExecutionStatus
    from .steps import Step, step
    from .store.client import Client
    from .store.materializers import Materializer, register_materializer
    from .store.models import ArtifactVersion, PipelineRun, StepAttempt, StepRun

__version__ = "0.1.0"

# public name -> module (relative to this package) that defines it
_EXPORTS: dict[str, str] = {
    **dict.fromkeys(
        ("ArtifactConfig", "CachePolicy", "ConfigError", "DaskSettings", "ExecutionMode", "Model",
         "PipelineConfig", "ResourceSettings", "StepConfig", "StepRetryConfig"),
        ".config",
    ),
    **dict.fromkeys(
        ("ArtifactIntegrityError", "ArtifactLoadError", "StepExecutionError", "StepRecordingError",
         "StepSkippedError", "StepStoppedError", "StoreAccessError", "StoreError", "StoreFullError",
         "UnsafeStoreError"),
        ".errors",
    ),
    **dict.fromkeys(("MapResultsFuture", "StepRunFuture", "as_completed", "unmapped", "wait"), ".futures"),
    **dict.fromkeys(("OutputArtifact", "StepTypeError"), ".outputs"),
    **dict.fromkeys(("Pipeline", "PipelineRunFuture", "pipeline"), ".pipelines"),
    "use_dask": ".runtimes.dask_client",
    "KubernetesSettings": ".runtimes.k8s.config",
    **dict.fromkeys(("StepContext", "get_step_context"), ".runtimes.task"),
    "ExecutionStatus": ".status",
    **dict.fromkeys(("Step", "step"), ".steps"),
    "Client": ".store.client",
    **dict.fromkeys(("Materializer", "register_materializer"), ".store.materializers"),
    **dict.fromkeys(("ArtifactVersion", "PipelineRun", "StepAttempt", "StepRun"), ".store.models"),
}


def __getattr__(name: str) -> Any:
    """Import a public name's module on first use, then cache the name in this module."""
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))


def load_ipython_extension(ipython):
    """``%load_ext dynpipe``: register the %%pipeline magics."""
    from .notebook.magics import load_ipython_extension as _load  # deferred: imports IPython

    _load(ipython)


def unload_ipython_extension(ipython):
    from .notebook.magics import unload_ipython_extension as _unload  # deferred: imports IPython

    _unload(ipython)


__all__ = [
    "ArtifactConfig", "ArtifactIntegrityError", "ArtifactLoadError", "ArtifactVersion", "CachePolicy", "Client",
    "ConfigError", "DaskSettings", "ExecutionMode",
    "ExecutionStatus", "Materializer", "MapResultsFuture", "Model", "OutputArtifact", "Pipeline",
    "KubernetesSettings", "PipelineConfig", "PipelineRun", "PipelineRunFuture", "ResourceSettings", "Step",
    "StepAttempt", "StepConfig", "StepContext", "StepExecutionError", "StepRetryConfig", "StepRun",
    "StepRecordingError", "StepRunFuture", "StepSkippedError", "StepStoppedError", "StepTypeError",
    "StoreAccessError", "StoreError", "StoreFullError", "UnsafeStoreError", "as_completed",
    "get_step_context", "pipeline", "register_materializer", "step", "unmapped", "use_dask", "wait",
]
