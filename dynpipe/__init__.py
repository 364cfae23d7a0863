"""dynpipe: a Jupyter-first workbench for dynamic ML pipelines.

Public API (re-exports only); see README.md for a quickstart.
"""

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
