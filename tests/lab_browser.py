"""A real JupyterLab server and a real chromium page for the browser tests.

The server runs on 127.0.0.1 with a free port, a token, and config, runtime, IPython,
settings and workspace dirs of its own below the test's folder (the shared environment is
left untouched; JupyterLab's news and update checks are off). Its log is ``lab.log`` there,
shown when it does not start.
"""

from __future__ import annotations

import json
import os
import secrets
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from screenshots import shot

CHROMIUM = "/usr/bin/chromium"
#: dynpipe's built JupyterLab extension (``./dev build``).
BUILT = Path(__file__).resolve().parent.parent / "dynpipe" / "labextension"
BROWSER_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync"]
#: Seconds JupyterLab may take to answer (a loaded, shared machine).
START_DEADLINE = 60


@dataclass(frozen=True)
class Lab:
    """A running JupyterLab: its URL, token and the environment its kernels get."""

    base: str
    token: str
    env: dict[str, str]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def jupyterlab(
    home: Path,
    root: Path,
    *,
    dynpipe_extension: bool,
    env: Mapping[str, str] | None = None,
    lab_flags: Sequence[str] = (),
) -> Iterator[Lab]:
    """JupyterLab serving ``root``, its own dirs below ``home``, until the block ends.

    With ``dynpipe_extension`` the built extension is on its JUPYTER_PATH and the server
    extension enabled (it is ready once ``/dynpipe/api/runs`` answers); without, dynpipe's
    extension is disabled, as in VS Code or a Notebook 7 without it.
    """
    env = dict(os.environ if env is None else env)
    cfg = home / "cfg"
    cfg.mkdir()
    env.update(JUPYTER_CONFIG_DIR=str(cfg), JUPYTER_RUNTIME_DIR=str(home / "runtime"), IPYTHONDIR=str(home / "ipython"))
    if dynpipe_extension:
        jpath = home / "jupyter-data"
        (jpath / "labextensions").mkdir(parents=True)
        (jpath / "labextensions" / "dynpipe").symlink_to(BUILT)
        (cfg / "jupyter_server_config.json").write_text(
            json.dumps({"ServerApp": {"jpserver_extensions": {"dynpipe.server": True}}})
        )
        env["JUPYTER_PATH"] = str(jpath)
        ready = "/dynpipe/api/runs"
    else:
        (cfg / "labconfig").mkdir()
        (cfg / "labconfig" / "page_config.json").write_text('{"disabledExtensions": {"dynpipe": true}}')
        ready = "/api/status"
    news = home / "settings" / "@jupyterlab" / "apputils-extension"
    news.mkdir(parents=True)
    (news / "notification.jupyterlab-settings").write_text('{"fetchNews": "false", "checkForUpdates": false}')
    port, token = free_port(), secrets.token_hex(16)
    log_path = home / "lab.log"
    with log_path.open("w") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "jupyter", "lab", "--allow-root", "--no-browser",
             "--ServerApp.open_browser=False", "--ServerApp.ip=127.0.0.1", f"--ServerApp.port={port}",
             "--ServerApp.port_retries=0", f"--IdentityProvider.token={token}",
             f"--ServerApp.root_dir={root}", f"--LabApp.workspaces_dir={home / 'workspaces'}",
             f"--LabServerApp.user_settings_dir={home / 'settings'}", *lab_flags],
            stdout=log, stderr=subprocess.STDOUT, env=env, cwd=root,
        )
        base = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + START_DEADLINE
            while True:
                try:
                    with urllib.request.urlopen(f"{base}{ready}?token={token}", timeout=5) as r:
                        json.load(r)
                    break
                except OSError as exc:
                    if proc.poll() is not None or time.monotonic() > deadline:
                        raise RuntimeError("JupyterLab did not start:\n" + log_path.read_text()) from exc
                    time.sleep(0.3)
            yield Lab(base, token, env)
        finally:
            proc.terminate()
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()


@contextmanager
def chromium_page(profile: Path, failure_shot: str) -> Iterator[Any]:
    """A page of Debian's chromium (headless, 1280x900) in its own profile; if the block
    fails, the page as it was is saved as ``failure_shot`` in test-artifacts/."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        context = p.chromium.launch_persistent_context(
            str(profile), executable_path=CHROMIUM, headless=True, args=BROWSER_ARGS,
            viewport={"width": 1280, "height": 900},
        )
        page = context.pages[0] if context.pages else context.new_page()
        try:
            yield page
        except Exception:
            page.screenshot(path=shot(failure_shot))
            raise
        finally:
            context.close()
