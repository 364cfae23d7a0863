"""The live DAG in a real browser: JupyterLab + Debian's chromium driven by Playwright.

Runs a ``%%pipeline`` cell that submits steps held until the test creates their gate
files, then watches the page: node statuses must go from running to completed while nobody
re-runs the cell (updates come from the kernel's background threads). The test releases
the steps itself, so what it sees does not depend on how fast the machine is. Saves a
screenshot of the DAG mid-run to test-artifacts/live-dag.png.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import nbformat
import pytest

CHROMIUM = "/usr/bin/chromium"
ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = ROOT / "test-artifacts"

pytestmark = [
    pytest.mark.skipif(not os.path.exists(CHROMIUM), reason=f"{CHROMIUM} is not installed"),
    pytest.mark.timeout(240),
]

SETUP = '''import os, time
os.environ["DYNPIPE_HOME"] = {home!r}
%load_ext dynpipe
from dynpipe import step

@step(enable_cache=False)
def make_batches() -> int:
    return 5

@step(enable_cache=False)
def train(i: int) -> float:
    gate = os.path.join({gates!r}, f"train-{{i}}")
    end = time.monotonic() + 200
    while not os.path.exists(gate):  # the test creates the gate file
        assert time.monotonic() < end, f"the test never created {{gate}}"
        time.sleep(0.05)
    return 1 - 1 / (i + 2)

@step(enable_cache=False)
def pick_best(scores: list[float]) -> float:
    return max(scores)

@step(enable_cache=False)
def tick(i: int) -> int:
    return i'''

RUN = '''%%pipeline browser_demo
n = make_batches().load()
scores = [train.submit(i) for i in range(n)]
best = pick_best.submit(scores)'''

FAN = '''%%pipeline browser_fan
ticks = [tick.submit(i) for i in range(20)]'''


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture()
def lab(tmp_path: Path) -> Iterator[tuple[str, str]]:
    """A JupyterLab server on 127.0.0.1 with its own config, runtime and workspace dirs."""
    root = tmp_path / "root"
    root.mkdir()
    nb = nbformat.v4.new_notebook()
    (tmp_path / "gates").mkdir()
    setup = SETUP.format(home=str(tmp_path / "store"), gates=str(tmp_path / "gates"))
    nb.cells = [nbformat.v4.new_code_cell(setup),
                nbformat.v4.new_code_cell(RUN), nbformat.v4.new_code_cell(FAN)]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, root / "live.ipynb")
    port, token = free_port(), secrets.token_hex(16)
    env = dict(os.environ)
    for var, sub in (("JUPYTER_CONFIG_DIR", "cfg"), ("JUPYTER_RUNTIME_DIR", "runtime"),
                     ("IPYTHONDIR", "ipython")):
        env[var] = str(tmp_path / sub)
    news = tmp_path / "settings" / "@jupyterlab" / "apputils-extension"
    news.mkdir(parents=True)
    (news / "notification.jupyterlab-settings").write_text('{"fetchNews": "false", "checkForUpdates": false}')
    log = (tmp_path / "lab.log").open("w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "jupyter", "lab", "--allow-root", "--no-browser",
         "--ServerApp.open_browser=False", "--ServerApp.ip=127.0.0.1", f"--ServerApp.port={port}",
         "--ServerApp.port_retries=0", f"--IdentityProvider.token={token}",
         f"--ServerApp.root_dir={root}", f"--LabApp.workspaces_dir={tmp_path / 'workspaces'}",
         f"--LabServerApp.user_settings_dir={tmp_path / 'settings'}"],
        stdout=log, stderr=subprocess.STDOUT, env=env, cwd=root,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"{base}/api/status?token={token}", timeout=2) as r:
                    json.load(r)
                break
            except OSError as exc:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("JupyterLab did not start:\n" + (tmp_path / "lab.log").read_text()) from exc
                time.sleep(0.3)
        yield base, token
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


def prompt(page: object, index: int) -> str:
    return page.evaluate(  # type: ignore[attr-defined, no-any-return]
        "i => document.querySelectorAll('.jp-Notebook .jp-CodeCell')[i]"
        ".querySelector('.jp-InputPrompt').textContent",
        index,
    )


def run_cell(page: object, index: int, done: str) -> None:
    """Select cell ``index`` and press Shift+Enter until the kernel has started it."""
    for _ in range(4):
        page.locator(".jp-Notebook .jp-CodeCell").nth(index).locator(".jp-InputPrompt").click()  # type: ignore[attr-defined]
        page.keyboard.press("Shift+Enter")  # type: ignore[attr-defined]
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            text = prompt(page, index)
            if "*" in text or done in text:
                if "*" in text:
                    page.wait_for_function(  # type: ignore[attr-defined]
                        "([i, d]) => document.querySelectorAll('.jp-Notebook .jp-CodeCell')[i]"
                        ".querySelector('.jp-InputPrompt').textContent.includes(d)",
                        arg=[index, done], timeout=60_000,
                    )
                return
            time.sleep(0.2)
    raise AssertionError(f"cell {index} never ran (prompt {prompt(page, index)!r})")


def test_live_dag_updates_in_jupyterlab(lab: tuple[str, str], tmp_path: Path) -> None:
    from playwright.sync_api import sync_playwright

    base, token = lab
    url = f"{base}/lab/workspaces/dp-{secrets.token_hex(4)}/tree/live.ipynb?reset&token={token}"
    with sync_playwright() as p:
        context = p.chromium.launch_persistent_context(
            str(tmp_path / "chromium-profile"),
            executable_path=CHROMIUM,
            headless=True,
            args=["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"],
            viewport={"width": 1280, "height": 900},
        )
        try:
            page = context.pages[0] if context.pages else context.new_page()
            page.goto(url)
            page.wait_for_selector(".jp-Notebook .jp-Cell", timeout=60_000)
            # Wait for the kernel to be idle before running cells.
            page.wait_for_selector(".jp-Notebook-ExecutionIndicator[data-status='idle']", timeout=60_000)
            page.wait_for_function(
                "() => document.body.innerText.includes('Python 3 (ipykernel) | Idle')", timeout=60_000
            )
            run_cell(page, 0, "[1]")  # the setup cell
            run_cell(page, 1, "[2]")  # the %%pipeline cell, once

            dag = page.locator(".dynpipe-dag")
            dag.first.wait_for(timeout=60_000)
            # Running steps appear in the live widget: the five held train steps...
            page.wait_for_function(
                """() => [...document.querySelectorAll('.dynpipe-dag g.node')]
                         .filter(n => n.dataset.dpStatus === 'running').length === 5""",
                timeout=60_000,
            )
            # ...three of them released complete while the others still run...
            for i in range(3):
                (tmp_path / "gates" / f"train-{i}").touch()
            page.wait_for_function(
                """() => { const s = [...document.querySelectorAll('.dynpipe-dag g.node')]
                             .map(n => n.dataset.dpStatus);
                           return s.filter(x => x === 'running').length === 2
                                  && s.filter(x => x === 'completed').length === 4; }""",
                timeout=60_000,
            )
            ARTIFACTS.mkdir(exist_ok=True)
            dag.first.screenshot(path=str(ARTIFACTS / "live-dag.png"))  # for the README
            for i in range(3, 5):
                (tmp_path / "gates" / f"train-{i}").touch()
            # ...and every node reaches 'completed' with no further cell execution.
            page.wait_for_function(
                """() => {
                  const nodes = [...document.querySelectorAll('.dynpipe-dag g.node')];
                  return nodes.length === 7 && nodes.every(n => n.dataset.dpStatus === 'completed');
                }""",
                timeout=90_000,
            )
            prompts = page.eval_on_selector_all(
                ".jp-Notebook .jp-CodeCell .jp-InputPrompt", "els => els.map(e => e.textContent)"
            )
            assert any("[2]" in t for t in prompts) and not any("[3]" in t for t in prompts)
            # Clicking a node shows its details, handled in the browser from the widget state.
            page.locator(".dynpipe-dag g.node", has_text="pick_best").first.click()
            info = page.locator(".dynpipe-dag .dp-info")
            info.wait_for(timeout=10_000)
            text = info.inner_text()
            assert "pick_best" in text and "completed" in text and "train" in text
            dag.first.screenshot(path=str(ARTIFACTS / "live-dag-final.png"))
            page.screenshot(path=str(ARTIFACTS / "live-dag-page.png"))

            # A fan-out past the group threshold is one group node; expand and collapse it.
            run_cell(page, 2, "[3]")
            fan = page.locator(".jp-Notebook .jp-CodeCell").nth(2).locator(".dynpipe-dag")
            group = fan.locator("g.node", has_text="tick ×20")
            group.wait_for(timeout=60_000)
            page.wait_for_function(
                """() => [...document.querySelectorAll('.dynpipe-dag g.node')]
                         .some(n => n.textContent.includes('tick ×20') && n.textContent.includes('20/20'))""",
                timeout=60_000,
            )
            group.click()
            fan.locator(".dp-info button", has_text="expand").click()
            page.wait_for_function(
                """() => { const cells = document.querySelectorAll('.jp-Notebook .jp-CodeCell');
                           return cells[2].querySelectorAll('.dynpipe-dag g.node').length === 20; }""",
                timeout=30_000,
            )
            fan.locator(".dp-bar button", has_text="collapse tick").click()
            group.wait_for(timeout=30_000)
            assert fan.locator("g.node").count() == 1
            if os.environ.get("DYNPIPE_UPDATE_DOCS_SCREENSHOT"):  # refresh the README's picture
                (ROOT / "docs").mkdir(exist_ok=True)
                picture = ARTIFACTS / "live-dag.png"
                if not picture.exists():
                    picture = ARTIFACTS / "live-dag-final.png"
                shutil.copyfile(picture, ROOT / "docs" / "live-dag.png")
        except Exception:
            ARTIFACTS.mkdir(exist_ok=True)
            page.screenshot(path=str(ARTIFACTS / "browser-failure.png"))
            raise
        finally:
            context.close()
