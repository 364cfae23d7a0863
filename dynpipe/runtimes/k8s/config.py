"""``KubernetesSettings``: what a step's pod looks like, per pipeline and per step.

Set in code (``@step(settings={"kubernetes": {...}})`` or ``KubernetesSettings(...)``),
in a YAML config template (``settings: kubernetes: ...``) or, for the few settings that
existed before, through ``DYNPIPE_K8S_*`` environment variables, which override both so
an operator can redirect a notebook's pipelines without editing it. Durations are seconds.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from ... import settings as env

SETTINGS_KEY = "kubernetes"


class KeyRef(BaseModel):
    """A key of a Secret or ConfigMap."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    name: str
    key: str
    optional: bool | None = None


class EnvSource(BaseModel):
    """An environment variable taken from a Secret or a ConfigMap instead of a literal."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    secret_key_ref: KeyRef | None = None
    config_map_key_ref: KeyRef | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> EnvSource:
        if (self.secret_key_ref is None) == (self.config_map_key_ref is None):
            raise ValueError("give exactly one of secret_key_ref or config_map_key_ref")
        return self


class KubernetesSettings(BaseModel):
    """The pod of a step attempt; every field is optional so pipeline and step layers merge."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    namespace: str = "default"
    image: str | None = None
    pvc: str | None = None
    service_account: str | None = None
    env: dict[str, str | EnvSource] = Field(default_factory=dict)
    image_pull_secrets: list[str] = Field(default_factory=list)
    node_selector: dict[str, str] = Field(default_factory=dict)
    tolerations: list[dict[str, Any]] = Field(default_factory=list)
    affinity: dict[str, Any] | None = None
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)
    pod_security_context: dict[str, Any] = Field(default_factory=dict)
    container_security_context: dict[str, Any] = Field(default_factory=dict)
    active_deadline_seconds: int | None = Field(default=None, ge=1)
    pending_timeout: float = Field(default=600.0, gt=0)
    ttl_seconds_after_finished: int = Field(default=3600, ge=0)
    resync_seconds: float = Field(default=300.0, gt=0)


def _layer(value: Any, where: str) -> dict[str, Any]:
    """The keys a layer sets. A value equal to the default sets nothing: a model that went
    through a config's ``model_dump`` arrives as a full dict and must not reset the pipeline's."""
    if value is None:
        return {}
    if isinstance(value, KubernetesSettings):
        return value.model_dump(exclude_unset=True)
    if isinstance(value, dict):
        fields = KubernetesSettings.model_fields
        defaults = {k: f.get_default(call_default_factory=True) for k, f in fields.items()}
        return {k: v for k, v in value.items() if k not in defaults or v != defaults[k]}
    raise TypeError(f"{where}: settings['kubernetes'] must be a dict or KubernetesSettings, got {type(value).__name__}")


def resolve_settings(layers: list[Any], where: str) -> KubernetesSettings:
    """Defaults <- each layer (pipeline, then step) <- ``DYNPIPE_K8S_*`` variables.

    ``where`` names the step in the error raised for an invalid value.
    """
    data: dict[str, Any] = {}
    for layer in layers:
        data.update(_layer(layer, where))
    overrides = {
        "namespace": env.text("DYNPIPE_K8S_NAMESPACE"),
        "image": env.k8s_image(),
        "pvc": env.k8s_pvc(),
        "service_account": env.k8s_service_account(),
        "pending_timeout": env.k8s_pending_timeout(),
    }
    data.update({k: v for k, v in overrides.items() if v is not None})
    try:
        return KubernetesSettings(**data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc'])}: "
            f"{'unknown key' if err['type'] == 'extra_forbidden' else err['msg']}"
            for err in exc.errors()
        )
        raise ValueError(f"{where}: invalid Kubernetes settings: {problems}") from None
