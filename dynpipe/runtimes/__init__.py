"""Where a step's code runs: inline threads, local worker processes, Kubernetes pods."""

from __future__ import annotations

from .. import settings

import os

from .base import StepRuntime


def get_runtime(name: str) -> StepRuntime:
    """The runtime for ``runtime=`` of a step: ``inline`` or ``isolated``.

    ``isolated`` means local worker processes unless ``DYNPIPE_ISOLATED_BACKEND=kubernetes``.
    """
    if name == "inline":
        from .inline import InlineRuntime

        return InlineRuntime()
    if name == "isolated":
        backend = settings.isolated_backend()
        if backend == "kubernetes":
            from .kubernetes import KubernetesRuntime

            return KubernetesRuntime()
        from .local import shared_local_runtime

        return shared_local_runtime()
    raise ValueError(f"unknown runtime {name!r}; use 'inline' or 'isolated'")
