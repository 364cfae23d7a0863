"""Where a step's code runs: inline threads, local worker processes, Kubernetes pods."""

from __future__ import annotations

import sys

from .. import settings
from .base import StepRuntime


def get_runtime(name: str) -> StepRuntime:
    """The runtime for ``runtime=`` of a step: ``inline`` or ``isolated``.

    ``isolated`` means local worker processes unless ``DYNPIPE_ISOLATED_BACKEND`` is
    ``kubernetes`` or ``dask`` (a client handed over with ``use_dask`` picks Dask when the
    variable is unset).
    """
    if name == "inline":
        from .inline import InlineRuntime

        return InlineRuntime()
    if name == "isolated":
        backend = settings.isolated_backend()
        if backend == "dask" or (not settings.isolated_backend_chosen() and _dask_handed_over()):
            from .dask_runtime import DaskRuntime

            return DaskRuntime()
        if backend == "kubernetes":
            from .k8s import KubernetesRuntime

            return KubernetesRuntime()
        from .local import shared_local_runtime

        return shared_local_runtime()
    raise ValueError(f"unknown runtime {name!r}; use 'inline' or 'isolated'")


def _dask_handed_over() -> bool:
    """``use_dask(client)`` was called; checked without importing the Dask runtime otherwise."""
    module = sys.modules.get("dynpipe.runtimes.dask_client")
    return module is not None and bool(module.DASK.handed_over)
