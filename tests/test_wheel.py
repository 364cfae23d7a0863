"""The built wheel carries the prebuilt labextension and enables the server extension.

Builds the wheel (``python -m build --wheel``), installs it with ``--no-deps`` into a
fresh venv made with ``--system-site-packages`` (JupyterLab comes from the outer
environment, so this stays fast and offline apart from the build backend), and asks
that venv's ``jupyter labextension list`` and ``jupyter server extension list``.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
BUILT = ROOT / "dynpipe" / "labextension"

pytestmark = [
    pytest.mark.skipif(
        not (BUILT / "package.json").exists(),
        reason="the JupyterLab extension is not built (dynpipe/labextension/): run ./dev build",
    ),
    pytest.mark.timeout(600),
]


LABEXT_LIST = (
    "import sys; sys.argv = ['jupyter-labextension', 'list']; from jupyterlab.labextensions import main; main()"
)
SERVER_LIST = (
    "import sys; sys.argv = ['jupyter-server', 'extension', 'list']; from jupyter_server.serverapp import main; main()"
)


def run(cmd: list[str], **kwargs: object) -> str:
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=420, **kwargs)  # type: ignore[call-overload]
    assert out.returncode == 0, f"{cmd} failed:\n{out.stdout}\n{out.stderr}"
    return re.sub(r"\x1b\[[0-9;]*m", "", out.stdout + out.stderr)  # the apps colour their status words


def clean_env() -> dict[str, str]:
    """No PYTHONPATH (the venv must import its installed copy) and no user jupyter dirs."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "JUPYTER_PATH", "JUPYTER_CONFIG_DIR")}
    return env


def test_wheel_installs_the_labextension_and_enables_the_server_extension(tmp_path: Path) -> None:
    pytest.importorskip("build")
    dist = tmp_path / "dist"
    run([sys.executable, "-m", "build", "--wheel", "--outdir", str(dist), str(ROOT)], cwd=tmp_path)
    (wheel,) = dist.glob("dynpipe-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    data = "dynpipe-0.1.0.data/data/"
    assert f"{data}share/jupyter/labextensions/dynpipe/package.json" in names
    assert any(re.match(rf"{data}share/jupyter/labextensions/dynpipe/static/remoteEntry\.\w+\.js$", n) for n in names)
    assert f"{data}etc/jupyter/jupyter_server_config.d/dynpipe.json" in names
    server_modules = {"handlers.py", "dag_payload.py", "schedules_api.py"}
    assert {f"dynpipe/server/{name}" for name in server_modules} <= set(names)
    # The bundle stays small: every script of the prebuilt extension together, well under 1 MB.
    with zipfile.ZipFile(wheel) as zf:
        js = sum(i.file_size for i in zf.infolist() if re.search(r"/labextensions/dynpipe/static/.*\.js$", i.filename))
    assert 0 < js < 500_000, js

    venv = tmp_path / "venv"
    run([sys.executable, "-m", "venv", "--system-site-packages", str(venv)])
    py = venv / "bin" / "python"
    # --system-site-packages reaches the base interpreter's packages; when the tests run in
    # a venv, its packages (JupyterLab) are added after the new venv's own, which win.
    outer = run([sys.executable, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"]).strip()
    inner = run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"]).strip()
    if outer != inner:
        (Path(inner) / "outer-env.pth").write_text(outer + "\n")
    run([str(py), "-m", "pip", "install", "-q", "--no-deps", "--no-index", str(wheel)], env=clean_env())
    # The venv's own dynpipe (not the source tree) is what the servers will import.
    where = run([str(py), "-c", "import dynpipe.server, sys; print(dynpipe.server.__file__)"],
                env=clean_env(), cwd=tmp_path)
    assert str(venv) in where, where

    # The apps behind `jupyter labextension` / `jupyter server`, run by the venv's python
    # (the console scripts live in the outer environment and would use its prefix).
    labext = run([str(py), "-c", LABEXT_LIST], env=clean_env(), cwd=tmp_path)
    line = next((ln for ln in labext.splitlines() if re.match(r"\s*dynpipe v0\.1\.0", ln)), None)
    assert line is not None, labext
    assert "enabled" in line and "OK" in line, labext
    assert str(venv / "share" / "jupyter" / "labextensions") in labext.split(line.strip())[0], labext

    server = run([str(py), "-c", SERVER_LIST], env=clean_env(), cwd=tmp_path)
    assert re.search(r"dynpipe\.server\s+enabled", server), server
    assert re.search(r"dynpipe\.server\s+\S*\s*OK", server), server
    assert str(venv / "etc" / "jupyter") in server, server
