"""Every exception dynpipe raises on purpose, in one place.

Kept free of imports from the rest of the package so any layer (user API, engine,
runtimes, store, notebook, CLI) can raise them without creating an import cycle.
"""

from __future__ import annotations


class DynpipeError(Exception):
    """Base class of dynpipe's own errors (catch this to catch them all)."""


class ConfigError(DynpipeError, ValueError):
    """Invalid configuration: a step/pipeline option, a YAML file, or a setting."""


class SettingError(ConfigError):
    """A ``DYNPIPE_*`` environment variable has a value dynpipe cannot use."""


class StepTypeError(DynpipeError, TypeError):
    """A step's input or output does not match its type annotation."""


class StepSkippedError(DynpipeError, RuntimeError):
    """A step did not run because an upstream step failed or the run is stopping."""


class StepStoppedError(DynpipeError, RuntimeError):
    """A running step was stopped (FAIL_FAST or interrupt); its results were discarded."""


class StepExecutionError(DynpipeError, RuntimeError):
    """A step failed in another process with an exception that could not travel back."""


class WorkerCrashedError(DynpipeError, RuntimeError):
    """The worker process running a step died (signal, exit, out of memory) or was cancelled."""


class ArtifactLoadError(DynpipeError, RuntimeError):
    """An artifact could not be read back (missing file, failed verification, bad materializer)."""


class RunNameTaken(DynpipeError, ValueError):
    """A run name that must be unique is already used in the store."""


class TargetError(DynpipeError, ValueError):
    """A schedule or export target (notebook, module, function) cannot be used."""


class StoreError(DynpipeError, OSError):
    """The store cannot be opened or written (permissions, ownership, full disk); names the path."""


class StepRecordingError(DynpipeError, RuntimeError):
    """Recording a step's outcome failed (store write, hook, live DAG); the step is failed."""


class InvalidTransition(DynpipeError, RuntimeError):
    """The engine tried to move a step run between statuses that do not follow each other (a bug)."""


class UnsafeStoreError(StoreError):
    """The store folder or a file in it belongs to another user, so its pickles are not trusted."""


class StoreAccessError(StoreError):
    """The store cannot be opened or written: permission denied, read-only, owned by someone else."""


class StoreFullError(StoreError):
    """No space left on the device holding the store; nothing partial was left under a final name."""


class ArtifactIntegrityError(ArtifactLoadError):
    """An artifact's content does not match its address (truncated or changed outside dynpipe)."""
