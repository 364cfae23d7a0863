"""A fresh process's first run pays for every import and every pydantic model it builds:
``import dynpipe`` loads nothing, a one-step run loads only what running a step needs and
builds only the validators of the configs it was given (see dynpipe/__init__.py, config.py).

Each check runs in a fresh interpreter (modules already imported by the test session would
hide a regression) and fails naming the module or model that came back.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import dynpipe

pytestmark = pytest.mark.timeout(120)

REPO = Path(__file__).resolve().parent.parent

# Never on the path of ``import dynpipe`` nor of a one-step run (the house rule, and costly).
HEAVY = ("distributed", "dask", "kubernetes", "psycopg", "fsspec", "yaml", "graphviz", "IPython", "pandas", "numpy")
# Loaded on first use only: the Client, settings for other runtimes, YAML templates, the CLI.
NOT_FOR_A_RUN = (
    "dynpipe.store.client", "dynpipe.store.run_pages", "dynpipe.runtimes.dask_client", "dynpipe.runtimes.k8s",
    "dynpipe.runtimes.k8s.config", "dynpipe.runtimes.local", "dynpipe.runtimes.pool", "dynpipe.config_yaml",
    "dynpipe.cli", "dynpipe.notebook", "dynpipe.store.postgres", "dynpipe.store.artifact_store",
    "dynpipe.store.summary_records", "dynpipe.store.liveness", "html",
)
# Config models a run that sets none of them must not build (a validator each, at import before).
UNBUILT_MODELS = (
    "dynpipe.config:StepConfig", "dynpipe.config:StepRetryConfig", "dynpipe.config:CachePolicy",
    "dynpipe.config:ResourceSettings", "dynpipe.config:DaskSettings", "dynpipe.config:ArtifactConfig",
    "dynpipe.config:Model",
    "dynpipe.project_config:ProjectConfig",
)


def _fresh(code: str, home: Path, *args: str) -> dict[str, list[str]]:
    """Run ``code`` in a new interpreter (``args`` in its ``sys.argv``); it prints one JSON line, returned decoded."""
    env = {"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin", "DYNPIPE_HOME": str(home)}
    if "SYSTEMROOT" in os.environ:  # pragma: no cover - Windows
        env["SYSTEMROOT"] = os.environ["SYSTEMROOT"]
    proc = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code), *args], cwd=home.parent, capture_output=True, text=True,
        timeout=60, env=env,
    )
    assert proc.returncode == 0, proc.stderr
    result: dict[str, list[str]] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


def _loaded(modules: list[str], names: tuple[str, ...]) -> list[str]:
    return sorted(m for m in modules if any(m == n or m.startswith(n + ".") for n in names))


def test_import_dynpipe_loads_no_submodule_and_not_pydantic(store_home: Path) -> None:
    out = _fresh(
        """
        import json, sys
        import dynpipe
        print(json.dumps({"modules": sorted(sys.modules)}))
        """,
        store_home,
    )
    assert _loaded(out["modules"], ("dynpipe",)) == ["dynpipe"]
    assert _loaded(out["modules"], ("pydantic", "sqlite3") + HEAVY) == []


def test_a_one_step_run_loads_and_builds_only_what_it_needs(store_home: Path) -> None:
    code = """
        import json, sys
        from dynpipe import pipeline, step

        @step
        def one() -> int:
            return 1

        @pipeline(dynamic=True, enable_cache=False)
        def cold() -> None:
            one()

        cold()
        built = []
        for spec in sys.argv[1:]:
            module, name = spec.split(":")
            if module in sys.modules and getattr(sys.modules[module], name).__pydantic_complete__:
                built.append(spec)
        print(json.dumps({"modules": sorted(sys.modules), "built": built}))
    """
    _fresh(code, store_home, *UNBUILT_MODELS)  # creates the store: the measured run opens an existing one
    out = _fresh(code, store_home, *UNBUILT_MODELS)
    assert _loaded(out["modules"], HEAVY + NOT_FOR_A_RUN) == []
    assert out["built"] == []


def test_every_public_name_resolves_lazily_and_is_listed() -> None:
    for name in dynpipe.__all__:
        value = getattr(dynpipe, name)
        assert getattr(value, "__name__", name) == name, name
        assert name in dir(dynpipe)
    assert "__version__" in dir(dynpipe)
    with pytest.raises(AttributeError, match="no_such_name"):
        dynpipe.no_such_name  # noqa: B018 - the attribute access is the test
    namespace: dict[str, object] = {}
    exec("from dynpipe import *", namespace)
    assert set(dynpipe.__all__) <= set(namespace)
