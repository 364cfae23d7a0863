"""Isolated steps on Kubernetes (``DYNPIPE_ISOLATED_BACKEND=kubernetes``).

The implementation lives in :mod:`dynpipe.runtimes.k8s`; this module keeps the import
path that ``get_runtime`` and existing code use.
"""

from __future__ import annotations

from .k8s import (
    EnvSource,
    KeyRef,
    KubernetesLaunch,
    KubernetesRuntime,
    KubernetesSettings,
    job_manifest,
    job_name,
    resource_requirements,
)

__all__ = [
    "EnvSource", "KeyRef", "KubernetesLaunch", "KubernetesRuntime", "KubernetesSettings",
    "job_manifest", "job_name", "resource_requirements",
]
