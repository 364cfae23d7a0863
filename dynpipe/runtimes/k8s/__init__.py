"""Isolated steps on Kubernetes: one Job (one Pod) per step attempt.

``config`` (KubernetesSettings), ``manifests`` (the Job), ``transport`` (task in, JSON
report out), ``watch`` (one watch per run), ``launch`` (the runtime), ``diagnose``
(one-line explanations), ``rbac`` (Role and garbage collection of orphaned Jobs).
The runtime is imported on first use, so ``import dynpipe`` (which exports
``KubernetesSettings``) does not load the worker or the Kubernetes client.
"""

from __future__ import annotations

from typing import Any

from .config import EnvSource, KeyRef, KubernetesSettings
from .manifests import job_manifest, job_name, resource_requirements

__all__ = [
    "EnvSource", "KeyRef", "KubernetesLaunch", "KubernetesRuntime", "KubernetesSettings",
    "job_manifest", "job_name", "resource_requirements",
]


def __getattr__(name: str) -> Any:
    if name in ("KubernetesRuntime", "KubernetesLaunch"):
        from . import launch

        return getattr(launch, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
