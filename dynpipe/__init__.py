"""dynpipe: a Jupyter-first workbench for dynamic ML pipelines.

Public API (re-exports only); see README.md for a quickstart.
"""

from .config import (
    ArtifactConfig,
    CachePolicy,
    ConfigError,
    ExecutionMode,
    Model,
    PipelineConfig,
    ResourceSettings,
    StepConfig,
    StepRetryConfig,
)
from .engine.launcher import StepExecutionError, StepSkippedError, StepStoppedError
from .futures import MapResultsFuture, StepRunFuture, as_completed, unmapped, wait
from .outputs import OutputArtifact, StepTypeError
from .pipelines import Pipeline, PipelineRunFuture, pipeline
from .runtimes.k8s.config import KubernetesSettings
from .runtimes.task import StepContext, get_step_context
from .steps import Step, step
from .store.client import Client
from .store.materializers import Materializer, register_materializer
from .store.models import ArtifactLoadError, ArtifactVersion, ExecutionStatus, PipelineRun, StepAttempt, StepRun

__version__ = "0.1.0"


def load_ipython_extension(ipython):  # type: ignore[no-untyped-def]
    """``%load_ext dynpipe``: register the %%pipeline magics."""
    from .notebook.magics import load_ipython_extension as _load

    _load(ipython)


def unload_ipython_extension(ipython):  # type: ignore[no-untyped-def]
    from .notebook.magics import unload_ipython_extension as _unload

    _unload(ipython)


__all__ = [
    "ArtifactConfig", "ArtifactLoadError", "ArtifactVersion", "CachePolicy", "Client", "ConfigError", "ExecutionMode",
    "ExecutionStatus", "Materializer", "MapResultsFuture", "Model", "OutputArtifact", "Pipeline",
    "KubernetesSettings", "PipelineConfig", "PipelineRun", "PipelineRunFuture", "ResourceSettings", "Step",
    "StepAttempt", "StepConfig", "StepContext", "StepExecutionError", "StepRetryConfig", "StepRun",
    "StepRunFuture", "StepSkippedError", "StepStoppedError", "StepTypeError", "as_completed",
    "get_step_context", "pipeline", "register_materializer", "step", "unmapped", "wait",
]
