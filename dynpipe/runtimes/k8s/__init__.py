"""Isolated steps on Kubernetes: one Job (one Pod) per step attempt.

``config`` (KubernetesSettings), ``manifests`` (the Job), ``transport`` (task in, JSON
report out), ``watch`` (one watch per run), ``launch`` (the runtime), ``diagnose``
(one-line explanations), ``rbac`` (Role and garbage collection of orphaned Jobs).
"""

from __future__ import annotations

from .config import EnvSource, KeyRef, KubernetesSettings
from .launch import KubernetesLaunch, KubernetesRuntime
from .manifests import job_manifest, job_name, resource_requirements

__all__ = [
    "EnvSource", "KeyRef", "KubernetesLaunch", "KubernetesRuntime", "KubernetesSettings",
    "job_manifest", "job_name", "resource_requirements",
]
