"""Project configuration: where the store lives when it is shared by a team or a cluster.

Two keys, each from the environment first, else from ``dynpipe.yaml`` in the working
folder, else from ``[tool.dynpipe]`` of its ``pyproject.toml``:

* ``artifact_store`` (``DYNPIPE_ARTIFACT_STORE``): a local path (default: the store's own
  ``artifacts/`` folder), ``file://...``, ``s3://bucket/prefix``, ``gs://...``, ``az://...``;
* ``store_url`` (``DYNPIPE_STORE_URL``): the metadata database.

Credentials never go here: the storage backends read their usual sources (AWS env vars and
profiles, ``AWS_ENDPOINT_URL``, gcloud, Azure env vars).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError, field_validator

from . import settings
from .errors import ConfigError

CONFIG_FILE = "dynpipe.yaml"
PYPROJECT = "pyproject.toml"


class ProjectConfig(BaseModel):
    """The validated project keys; unknown keys are refused so a typo is not silently ignored."""

    # built on first validation, not at import: most processes have no project config file
    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)

    artifact_store: str | None = None
    store_url: str | None = None

    @field_validator("artifact_store", "store_url")
    @classmethod
    def _not_blank(cls, value: str | None) -> str | None:
        if value is not None and not value.strip():
            raise ValueError("must not be blank")
        return value.strip() if value is not None else None


def _from_yaml(path: Path) -> dict[str, Any]:
    import yaml

    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"cannot read the dynpipe project config {path}: {exc}") from exc
    if doc is None:
        return {}
    if not isinstance(doc, dict):
        raise ConfigError(f"{path}: the dynpipe project config must be a mapping of keys to values")
    return doc


def _from_pyproject(path: Path) -> dict[str, Any]:
    try:
        import tomllib  # type: ignore[import-not-found,unused-ignore]
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib

    try:
        doc = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"cannot read {path}: {exc}") from exc
    section = doc.get("tool", {}).get("dynpipe", {})
    if not isinstance(section, dict):
        raise ConfigError(f"{path}: [tool.dynpipe] must be a table")
    return section


def load_project_config(folder: Path | None = None) -> ProjectConfig:
    """The keys found in ``folder`` (default: the working folder); a bad file names itself."""
    here = folder or Path.cwd()
    for name, reader in ((CONFIG_FILE, _from_yaml), (PYPROJECT, _from_pyproject)):
        path = here / name
        if not path.is_file():
            continue
        raw = {k.replace("-", "_"): v for k, v in reader(path).items()}
        try:
            return ProjectConfig.model_validate(raw)
        except ValidationError as exc:
            where = f"{path} [tool.dynpipe]" if name == PYPROJECT else str(path)
            problems = "; ".join(
                f"{'.'.join(str(p) for p in e['loc']) or 'config'}: {e['msg']}" for e in exc.errors()
            )
            raise ConfigError(f"invalid dynpipe project config in {where}: {problems}") from None
    return ProjectConfig.model_construct()  # no file: all defaults, nothing to validate


def artifact_store_url(folder: Path | None = None) -> str | None:
    """``DYNPIPE_ARTIFACT_STORE``, else the project config's ``artifact_store``, else None (local)."""
    return settings.artifact_store() or load_project_config(folder).artifact_store


def store_url(folder: Path | None = None) -> str | None:
    """``DYNPIPE_STORE_URL``, else the project config's ``store_url``, else None (embedded SQLite)."""
    return settings.store_url() or load_project_config(folder).store_url
