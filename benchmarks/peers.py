"""Peer frameworks, each installed from PyPI into its own virtual environment.

The environments live under ``benchmarks/.peers/<name>/venv`` (gitignored) and are reused
while their requirements stay the same. A peer that cannot be installed is reported as
skipped with the reason, never replaced by made-up figures.
"""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
PEERS_DIR = HERE / ".peers"


@dataclass(frozen=True)
class Peer:
    name: str
    requirements: tuple[str, ...]
    script: str
    # Steps per workload for this peer: slow peers run fewer steps (reported per step).
    steps: dict[str, int] = field(default_factory=dict)
    notes: tuple[str, ...] = ()


PEERS: dict[str, Peer] = {
    "zenml": Peer(
        name="zenml",
        requirements=("zenml[local]==0.98.0",),
        script="zenml_wl.py",
        steps={"sequential": 30, "submitted": 30, "fanout": 30, "cached": 30, "isolated": 10},
        notes=(
            "ZenML 0.98.0: local orchestrator, `@pipeline(dynamic=True)`, analytics off, config and "
            "SQLite store in a temporary ZENML_CONFIG_PATH; isolated = `runtime=\"isolated\"` on the "
            "local orchestrator. Fewer steps per run (~0.1 s per step), reported per step.",
        ),
    ),
    "prefect": Peer(
        name="prefect",
        requirements=("prefect>=3.8,<3.9", "fastapi<0.150"),
        script="prefect_wl.py",
        steps={"sequential": 200, "submitted": 200, "fanout": 100, "cached": 200, "isolated": 20},
        notes=(
            "Prefect 3.8: ephemeral local server (in the flow's process, so its peak RSS includes "
            "the server), tasks with `cache_policy=NO_CACHE` (cached workload: `INPUTS` with "
            "persisted results), default ThreadPoolTaskRunner for `.submit`; isolated = "
            "`ProcessPoolTaskRunner(max_workers=2)`, whose pool starts inside each flow run. "
            "fastapi is pinned below 0.150: newer releases reject `Body(min_items=...)` in "
            "Prefect 3.8's server.",
        ),
    ),
}


def venv_python(name: str) -> Path:
    return PEERS_DIR / name / "venv" / "bin" / "python"


def installed_version(python: Path, dist: str) -> str | None:
    proc = subprocess.run(
        [str(python), "-c", f"import importlib.metadata as m; print(m.version({dist!r}))"],
        capture_output=True, text=True,
    )
    return proc.stdout.strip() if proc.returncode == 0 else None


def ensure_peer(peer: Peer, log=print) -> tuple[Path | None, str]:
    """Return (python of the peer's venv, version) or (None, reason it was skipped)."""
    root = PEERS_DIR / peer.name
    marker = root / "installed.json"
    python = venv_python(peer.name)
    wanted = list(peer.requirements)
    if marker.exists() and python.exists():
        try:
            if json.loads(marker.read_text()).get("requirements") == wanted:
                version = installed_version(python, peer.name)
                if version:
                    return python, version
        except (OSError, ValueError):
            pass
    root.mkdir(parents=True, exist_ok=True)
    log(f"installing {peer.name} ({' '.join(wanted)}) into {root / 'venv'} ...")
    try:
        if not python.exists():
            subprocess.run([sys.executable, "-m", "venv", str(root / "venv")], check=True,
                           capture_output=True, text=True, timeout=300)
        proc = subprocess.run(
            [str(python), "-m", "pip", "install", "-q", *wanted],
            capture_output=True, text=True, timeout=1800,
        )
    except (subprocess.SubprocessError, OSError) as exc:
        return None, f"could not create its virtual environment: {exc}"
    (root / "install.log").write_text(proc.stdout + proc.stderr)
    if proc.returncode != 0:
        errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("ERROR")]
        return None, f"pip install failed: {(errors or ['see ' + str(root / 'install.log')])[0]}"
    version = installed_version(python, peer.name)
    if version is None:
        return None, f"{peer.name} not importable after install (see {root / 'install.log'})"
    marker.write_text(json.dumps({"requirements": wanted, "version": version}))
    return python, version
