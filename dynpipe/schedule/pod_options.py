"""The orchestrator pod's options: ``run --on kubernetes`` and ``schedule create --target kubernetes``.

One set of command-line options, one model (``PodOptions``) checked when built, and one
translation into the step pods' ``KubernetesSettings`` and ``ResourceSettings``: a scheduled
run and a run started by hand get the same pod from the same flags.
"""

from __future__ import annotations

import argparse
import re
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from ..runtimes.k8s.config import EnvSource, KeyRef, KubernetesSettings

_INVALID = re.compile(r"[^a-z0-9-]+")
_EFFECTS = ("NoSchedule", "PreferNoSchedule", "NoExecute")
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]*")


def k8s_name(text: str, limit: int = 52) -> str:
    """A valid DNS-1123 name: lower case, digits and '-', starting and ending alphanumeric.

    52 characters for a CronJob: the controller appends an 11-character suffix for its Jobs.
    """
    name = re.sub(r"-{2,}", "-", _INVALID.sub("-", text.lower())).strip("-")
    return name[:limit].rstrip("-") or "dynpipe"


def parse_toleration(text: str) -> dict[str, Any]:
    """``key[=value]:Effect`` (kubectl's taint syntax) as a toleration."""
    spec, sep, effect = text.rpartition(":")
    if not sep or effect not in _EFFECTS or not spec:
        raise ValueError(
            f"toleration {text!r}: expected KEY[=VALUE]:EFFECT with EFFECT one of {', '.join(_EFFECTS)}"
            " (e.g. nvidia.com/gpu:NoSchedule)"
        )
    key, eq, value = spec.partition("=")
    if eq:
        return {"key": key, "operator": "Equal", "value": value, "effect": effect}
    return {"key": key, "operator": "Exists", "effect": effect}


def parse_env(pairs: list[str]) -> dict[str, str]:
    env: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not _ENV_NAME.fullmatch(key):
            raise ValueError(f"--env {pair!r}: expected NAME=VALUE with a valid variable name")
        env[key] = value
    return env


def parse_env_secrets(pairs: list[str]) -> dict[str, EnvSource]:
    """``NAME=SECRET:KEY`` -> an env var read from a key of a Secret (e.g. the store URL with its password)."""
    env: dict[str, EnvSource] = {}
    for pair in pairs:
        key, sep, ref = pair.partition("=")
        secret, colon, secret_key = ref.partition(":")
        if not sep or not colon or not secret or not secret_key or not _ENV_NAME.fullmatch(key):
            raise ValueError(
                f"--env-secret {pair!r}: expected NAME=SECRET:KEY, e.g. DYNPIPE_STORE_URL=dynpipe-store:url"
            )
        env[key] = EnvSource(secret_key_ref=KeyRef(name=secret, key=secret_key))
    return env


class PodOptions(BaseModel):
    """How the orchestrator's pod looks; errors name the option."""

    model_config = ConfigDict(extra="forbid")
    image: str = Field(min_length=1)
    namespace: str = "default"
    service_account: str | None = None
    env: dict[str, str | EnvSource] = Field(default_factory=dict)
    secret_env: list[str] = Field(default_factory=list)
    gpu: int = Field(default=0, ge=0)
    cpu: float | None = Field(default=None, gt=0)
    memory: str | None = None
    tolerations: list[dict[str, Any]] = Field(default_factory=list)
    module_in_image: str | None = None
    store_claim: str | None = None
    allow_local_store: bool = False
    active_deadline: int = Field(default=6 * 3600, ge=1)
    ttl_after_finished: int = Field(default=24 * 3600, ge=0)
    run_as_user: int = Field(default=1000, ge=1)

    @field_validator("module_in_image")
    @classmethod
    def _in_image(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith("/"):
            raise ValueError(f"--module-in-image {value!r}: give the module's absolute path inside the image")
        return value

    @field_validator("namespace")
    @classmethod
    def _namespace(cls, value: str) -> str:
        if k8s_name(value, 63) != value:
            raise ValueError(f"--namespace {value!r} is not a valid namespace (lower case letters, digits and '-')")
        return value

    def settings(self) -> KubernetesSettings:
        """The step pods' settings model, so both kinds of pod share defaults and secure contexts."""
        user = {} if self.run_as_user == 1000 else {
            "runAsUser": self.run_as_user, "runAsGroup": self.run_as_user, "fsGroup": self.run_as_user}
        return KubernetesSettings(
            namespace=self.namespace, image=self.image, service_account=self.service_account, env=self.env,
            tolerations=self.tolerations, pod_security_context=user,
            active_deadline_seconds=self.active_deadline, ttl_seconds_after_finished=self.ttl_after_finished,
        )

    def resources(self) -> dict[str, dict[str, str]]:
        from ..config import ResourceSettings
        from ..runtimes.k8s.manifests import resource_requirements

        try:
            wanted = ResourceSettings(cpu_count=self.cpu, memory=self.memory, gpu_count=self.gpu or None)
        except ValueError as exc:
            raise ValueError(f"--cpu/--memory/--gpu: {exc}") from None
        return resource_requirements(wanted)


def build(model: type[BaseModel], **fields: Any) -> Any:
    """``model(**fields)`` with pydantic's first error as one ValueError naming the option."""
    try:
        return model(**fields)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = "--" + str(err["loc"][0]).replace("_", "-") if err["loc"] else "option"
        raise ValueError(f"{where}: {str(err['msg']).removeprefix('Value error, ')}") from None


def options_from_args(args: argparse.Namespace) -> dict[str, Any]:
    """The ``PodOptions`` fields given on a command line registered with ``add_pod_arguments``."""
    from .. import settings as dynpipe_settings

    env: dict[str, str | EnvSource] = {**parse_env(args.env), **parse_env_secrets(args.env_secret)}
    return dict(
        image=args.image or dynpipe_settings.k8s_image() or "",
        namespace=args.namespace or dynpipe_settings.k8s_namespace(), service_account=args.service_account, env=env,
        secret_env=args.secret_env, gpu=args.gpu, cpu=args.cpu, memory=args.memory,
        tolerations=[parse_toleration(t) for t in args.toleration], module_in_image=args.module_in_image,
        store_claim=args.store_claim, allow_local_store=args.allow_local_store,
        active_deadline=args.active_deadline, ttl_after_finished=args.ttl,
    )


def add_pod_arguments(group: Any, ttl_default: int = 24 * 3600) -> None:
    """The pod's options on an argparse group, each with an example."""
    group.add_argument("--image", help="container image with dynpipe and the module's imports (default"
                                       " $DYNPIPE_K8S_IMAGE), e.g. --image registry/ml:1.2")
    group.add_argument("--namespace", help="namespace (default $DYNPIPE_K8S_NAMESPACE, else 'default'),"
                                           " e.g. --namespace ml")
    group.add_argument("--service-account", help="pod service account, e.g. --service-account pipelines")
    group.add_argument("--env", action="append", default=[], metavar="K=V",
                       help="environment variable, repeatable, e.g. --env LOG_LEVEL=debug")
    group.add_argument("--env-secret", action="append", default=[], metavar="NAME=SECRET:KEY",
                       help="environment variable from a key of a Secret, repeatable,"
                            " e.g. --env-secret DYNPIPE_STORE_URL=dynpipe-store:url")
    group.add_argument("--secret-env", action="append", default=[], metavar="SECRET",
                       help="a Secret whose keys become environment variables, repeatable, e.g. --secret-env s3-creds")
    group.add_argument("--gpu", type=int, default=0, help="GPUs (nvidia.com/gpu) per run, e.g. --gpu 1")
    group.add_argument("--cpu", type=float, help="CPUs per run, e.g. --cpu 2")
    group.add_argument("--memory", help="memory per run, e.g. --memory 4GiB")
    group.add_argument("--toleration", action="append", default=[], metavar="KEY[=VALUE]:EFFECT",
                       help="tolerate a taint, repeatable, e.g. --toleration nvidia.com/gpu:NoSchedule")
    group.add_argument("--module-in-image", metavar="PATH",
                       help="run the module at this path in the image instead of shipping it in a ConfigMap,"
                            " e.g. --module-in-image /app/train.py (MODULE then names FILE:PIPELINE)")
    group.add_argument("--store-claim", help="PersistentVolumeClaim holding the dynpipe store folder,"
                                             " e.g. --store-claim dynpipe-store")
    group.add_argument("--allow-local-store", action="store_true",
                       help="run even though the store is a local SQLite file or artifact folder the cluster"
                            " cannot reach (the pod then records the run on its own disk), e.g. --allow-local-store")
    group.add_argument("--active-deadline", type=int, default=6 * 3600,
                       help="seconds a run may last before it is killed (default 21600), e.g. --active-deadline 3600")
    group.add_argument("--ttl", type=int, default=ttl_default,
                       help=f"seconds finished Jobs are kept (default {ttl_default}), e.g. --ttl 3600")
