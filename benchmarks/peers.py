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
    # Workloads the peer has no counterpart for, with the reason shown in the table.
    not_applicable: dict[str, str] = field(default_factory=dict)
    # Environment of the workload script (e.g. which Dask scheduler), the venv's folder
    # name when peers share one, and the distribution whose version is reported.
    env: dict[str, str] = field(default_factory=dict)
    venv: str = ""
    dist: str = ""
    label: str = ""  # how the table names it (default: name)

    @property
    def title(self) -> str:
        return self.label or self.name

    @property
    def venv_name(self) -> str:
        return self.venv or self.name

    @property
    def dist_name(self) -> str:
        return self.dist or self.name


DASK_REQUIREMENTS = ("dask[distributed]==2026.8.0",)

PEERS: dict[str, Peer] = {
    "dask-threads": Peer(
        name="dask-threads",
        requirements=DASK_REQUIREMENTS,
        script="dask_wl.py",
        venv="dask",
        dist="dask",
        label="dask threads (no store)",
        env={"BENCH_DASK_MODE": "threads"},
        not_applicable={"cached": "no cache", "isolated": "threads only"},
        notes=(
            "Dask threads (no store): plain functions as `dask.delayed` on the threaded scheduler "
            "(`scheduler=\"threads\"`); sequential = one `.compute()` per task, each waiting for the "
            "previous; submitted = N delayed tasks computed as one graph (`dask.compute(*tasks)`); "
            "fan-out = one source task feeding N tasks and one combining task, one graph. No record, "
            "no cache, no lineage.",
        ),
    ),
    "dask-distributed": Peer(
        name="dask-distributed",
        requirements=DASK_REQUIREMENTS,
        script="dask_wl.py",
        venv="dask",
        dist="distributed",
        label="dask distributed (no store)",
        steps={"sequential": 200, "submitted": 500},
        env={"BENCH_DASK_MODE": "distributed"},
        not_applicable={"cached": "no cache"},
        notes=(
            "Dask distributed (no store): `Client.submit(f, i, pure=False)` on a "
            "`LocalCluster(n_workers=2, threads_per_worker=1, processes=True)` started before the "
            "timed runs; sequential = `submit(...).result()` one at a time; submitted = N submits, "
            "then `gather`; fan-out = a source future passed to N submits and the N futures "
            "to one combining submit; isolated = submitted (every task already runs in a worker "
            "process); cold start = import + `LocalCluster` start + one task.",
        ),
    ),
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
    """The python of a venv folder under ``.peers/`` (a peer's ``venv_name``)."""
    return PEERS_DIR / name / "venv" / "bin" / "python"


def installed_version(python: Path, dist: str) -> str | None:
    proc = subprocess.run(
        [str(python), "-c", f"import importlib.metadata as m; print(m.version({dist!r}))"],
        capture_output=True, text=True,
    )
    return proc.stdout.strip() if proc.returncode == 0 else None


def ensure_peer(peer: Peer, log=print) -> tuple[Path | None, str]:
    """Return (python of the peer's venv, version) or (None, reason it was skipped)."""
    root = PEERS_DIR / peer.venv_name
    marker = root / "installed.json"
    python = venv_python(peer.venv_name)
    wanted = list(peer.requirements)
    if marker.exists() and python.exists():
        try:
            if json.loads(marker.read_text()).get("requirements") == wanted:
                version = installed_version(python, peer.dist_name)
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
    version = installed_version(python, peer.dist_name)
    if version is None:
        return None, f"{peer.dist_name} not importable after install (see {root / 'install.log'})"
    marker.write_text(json.dumps({"requirements": wanted, "version": version}))
    return python, version
