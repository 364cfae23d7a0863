"""The dynpipe JupyterLab extension in a real browser: JupyterLab + Debian's chromium.

A script fills the store before JupyterLab starts (two ``etl`` runs), another keeps a
``slow`` run going, held by a gate file the test creates. The runs panel, opened from the
command palette, must list all three newest first, show the slow run as running and then
as completed once released (it polls; nobody reloads). Opening an ``etl`` run shows its
DAG, and selecting a node shows that step's log and artifact preview. A saved notebook
whose output holds the DAG MIME payload renders it with no kernel. A notebook whose
``%%pipeline`` cells run in JupyterLab's own kernel, saved, kernel shut down, page
reloaded, draws every cell's DAG with the MIME renderer (never "Error displaying
widget"). The schedule dialog, opened from that notebook's toolbar, previews fire times,
refuses a bad cron, and creates a schedule that ``dynpipe schedule list`` shows.
Screenshots go to test-artifacts/ (and docs/screenshots/ with DYNPIPE_UPDATE_SCREENSHOTS=1: tests/screenshots.py).
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import textwrap
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import nbformat
import pytest
from helpers import wait_until
from lab_browser import BUILT, CHROMIUM, chromium_page, jupyterlab
from screenshots import ARTIFACTS, publish, shot

ROOT = Path(__file__).resolve().parent.parent

pytestmark = [
    pytest.mark.skipif(not os.path.exists(CHROMIUM), reason=f"{CHROMIUM} is not installed"),
    pytest.mark.skipif(
        not (BUILT / "package.json").exists(),
        reason="the JupyterLab extension is not built (dynpipe/labextension/): run ./dev build",
    ),
    pytest.mark.timeout(600),
]

RUNS = '''
import os, sys, time
from dynpipe import pipeline, step

@step(enable_cache=False)
def load(n: int) -> list:
    print(f"hello from load: {n} rows")
    return list(range(n))

@step(enable_cache=False)
def total(rows: list) -> dict:
    return {"total": sum(rows)}

@step(enable_cache=False)
def first() -> int:
    return 1

@step(enable_cache=False)
def held(x: int) -> int:
    gate = sys.argv[2]
    end = time.monotonic() + 240
    while not os.path.exists(gate):  # the test creates the gate file
        assert time.monotonic() < end, f"the test never created {gate}"
        time.sleep(0.05)
    return x + 1

@pipeline(dynamic=True, name="etl")
def etl() -> None:
    total(load(4))

@pipeline(dynamic=True, name="slow")
def slow() -> None:
    held(first())

@pipeline(dynamic=True, name="bulk")
def bulk() -> None:
    first()

if sys.argv[1] == "etl":
    etl(); etl()
elif sys.argv[1] == "bulk":
    for _ in range(int(sys.argv[2])):
        bulk()
else:
    slow()
'''


@pytest.fixture()
def lab(tmp_path: Path) -> Iterator[dict[str, Any]]:
    """JupyterLab with the built extension and the server extension (in its own dirs), over a
    store that two ``etl`` runs filled and a ``slow`` run, held by ``gate``, is writing to."""
    root = tmp_path / "root"
    root.mkdir()
    store = tmp_path / "store"
    path = os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])
    env = dict(os.environ, DYNPIPE_HOME=str(store), PYTHONPATH=path)
    script = tmp_path / "runs.py"
    script.write_text(RUNS)
    subprocess.run([sys.executable, str(script), "etl"], env=env, check=True, timeout=120, cwd=tmp_path)
    gate = tmp_path / "gate"
    slow = subprocess.Popen([sys.executable, str(script), "slow", str(gate)], env=env, cwd=tmp_path)
    try:
        # window.jupyterapp: commands without keyboard races
        with jupyterlab(tmp_path, root, dynpipe_extension=True, env=env,
                        lab_flags=["--LabApp.expose_app_in_browser=True"]) as server:
            yield {"base": server.base, "token": server.token, "root": root, "store": store, "gate": gate,
                   "slow": slow, "script": script, "env": server.env, "tmp": tmp_path}
    finally:
        gate.touch()
        try:
            slow.wait(60)
        except subprocess.TimeoutExpired:
            slow.kill()


def saved_notebook(root: Path, store: Path) -> None:
    """A notebook whose one output carries the DAG payload of a stored run, as saved."""
    code = textwrap.dedent(f"""
        import json, os
        os.environ["DYNPIPE_HOME"] = {str(store)!r}
        from dynpipe import Client
        from dynpipe.server import dag_payload
        print(json.dumps(dag_payload(Client().get_pipeline(\"etl\").last_run)))
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60,
                         env=dict(os.environ, PYTHONPATH=str(ROOT)))
    payload = json.loads(out.stdout)
    nb = nbformat.v4.new_notebook()
    cell = nbformat.v4.new_code_cell("%%pipeline etl\ntotal(load(4))", execution_count=1)
    cell.outputs = [nbformat.v4.new_output(
        "display_data", data={"application/vnd.dynpipe.dag+json": payload, "text/plain": "dynpipe run 'etl'"},
    )]
    nb.cells = [cell]
    nbformat.write(nb, root / "saved.ipynb")


DAG_MIME = "application/vnd.dynpipe.dag+json"
#: Generous: the machine is shared, a kernel start and a first run can take long under load.
SLOW = 180_000

PIPES_CELLS = [
    ("code", "%load_ext dynpipe\nfrom dynpipe import step\n\n@step(enable_cache=False)\n"
             "def load(n: int) -> list:\n    return list(range(n))\n\n@step(enable_cache=False)\n"
             "def total(rows: list) -> int:\n    return sum(rows)"),
    ("parameters", "rows = 3"),
    ("code", "%%pipeline pipes\ndata = load(rows)"),
    ("code", "%%pipeline pipes\nresult = total(data)"),
]


def pipes_notebook(root: Path) -> Path:
    """A notebook with two ``%%pipeline`` cells of one run and a ``parameters`` cell."""
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.cells = [
        nbformat.v4.new_code_cell(src, metadata={"tags": ["parameters"]} if kind == "parameters" else {})
        for kind, src in PIPES_CELLS
    ]
    path = root / "pipes.ipynb"
    nbformat.write(nb, path)
    return path


def dag_outputs(path: Path) -> list[dict[str, Any]]:
    """The DAG payloads in the saved notebook's outputs, in cell order."""
    nb = json.loads(path.read_text())
    return [o["data"][DAG_MIME] for c in nb["cells"] for o in c.get("outputs", []) if DAG_MIME in o.get("data", {})]


def api(lab: dict[str, Any], path: str, method: str = "GET") -> Any:
    req = urllib.request.Request(f"{lab['base']}{path}", method=method,
                                 headers={"Authorization": f"token {lab['token']}"})
    with urllib.request.urlopen(req, timeout=30) as r:
        body = r.read()
    return json.loads(body) if body else None


def run_command(page: Any, label: str, done: Any) -> None:
    """Run a command from the palette by keyboard until ``done()``. Keys can be lost while
    a loaded machine still settles the app, so it tries up to three times; the shortcut
    toggles the palette, so it is pressed only while the palette is closed."""
    palette = page.locator(".lm-CommandPalette-input")
    for attempt in range(3):
        try:
            if not palette.is_visible():
                page.locator("#jp-main-dock-panel").click(position={"x": 5, "y": 5})  # keys go to the app
                page.keyboard.press("Control+Shift+c")
            palette.wait_for(state="visible", timeout=20_000)
            palette.fill(label)
            page.locator(".lm-CommandPalette-item.lm-mod-active", has_text=label).wait_for(timeout=20_000)
            page.keyboard.press("Enter")
            wait_until(done, 30, what=f"the command {label!r} to take effect", interval=0.1)
            return
        except Exception:
            if attempt == 2:
                raise
            if palette.is_visible():
                page.keyboard.press("Escape")


def test_runs_panel_run_view_and_saved_dag(lab: dict[str, Any], tmp_path: Path) -> None:
    saved_notebook(lab["root"], lab["store"])
    url = f"{lab['base']}/lab/workspaces/dp-{secrets.token_hex(4)}?reset&token={lab['token']}"
    with chromium_page(tmp_path / "chromium-profile", "labext-failure.png") as page:
        page.goto(url)
        page.wait_for_selector("#jp-main-dock-panel", timeout=90_000)
        # "Show dynpipe runs" from the command palette, by keyboard.
        # The sidebar tab exists once the extension's plugin is activated.
        page.locator(".jp-SideBar li[data-id='dynpipe-runs']").wait_for(timeout=60_000)
        panel = page.locator("#dynpipe-runs")
        run_command(page, "Show dynpipe runs", lambda: panel.is_visible())
        page.wait_for_function(
            "() => document.querySelectorAll('#dynpipe-runs .jp-dynpipe-run').length === 3", timeout=60_000
        )
        pipelines = page.eval_on_selector_all(
            "#dynpipe-runs .jp-dynpipe-run .jp-dynpipe-run-pipeline", "els => els.map(e => e.textContent)"
        )
        assert pipelines == ["slow", "etl", "etl"]  # newest first
        slow_run = page.locator("#dynpipe-runs .jp-dynpipe-run").first
        page.wait_for_function(
            """() => { const b = document.querySelector('#dynpipe-runs .jp-dynpipe-run');
                       return b.dataset.status === 'running' && b.textContent.includes('1/2 done, 1 running'); }""",
            timeout=60_000,
        )
        page.screenshot(path=shot("runs-panel-running.png"))
        # The filter narrows the list on the server side.
        panel.locator("select.jp-dynpipe-filter-pipeline").select_option("etl")
        page.wait_for_function(
            "() => [...document.querySelectorAll('#dynpipe-runs .jp-dynpipe-run-pipeline')]"
            ".map(e => e.textContent).join() === 'etl,etl'", timeout=30_000,
        )
        panel.locator("select.jp-dynpipe-filter-pipeline").select_option("")
        page.wait_for_function(
            "() => document.querySelectorAll('#dynpipe-runs .jp-dynpipe-run').length === 3", timeout=30_000
        )
        # Release the held step: the panel shows the run completed without a reload.
        lab["gate"].touch()
        page.wait_for_function(
            """() => { const b = document.querySelector('#dynpipe-runs .jp-dynpipe-run');
                       return b.dataset.status === 'completed' && b.textContent.includes('2/2 done'); }""",
            timeout=60_000,
        )
        assert slow_run.get_attribute("data-status") == "completed"
        page.screenshot(path=shot("runs-panel.png"), clip={"x": 0, "y": 0, "width": 640, "height": 420})

        # Open the older etl run (keyboard: focus it, press Enter).
        etl_button = page.locator("#dynpipe-runs .jp-dynpipe-run").nth(2)
        etl_button.focus()
        page.keyboard.press("Enter")
        detail = page.locator(".jp-dynpipe-detail")
        detail.wait_for(timeout=30_000)
        page.wait_for_function(
            "() => document.querySelectorAll('.jp-dynpipe-detail .jp-dynpipe-node').length === 2", timeout=30_000
        )
        edges = page.eval_on_selector_all(
            ".jp-dynpipe-detail .jp-dynpipe-edge", "els => els.map(e => e.dataset.from + '>' + e.dataset.to)"
        )
        assert edges == ["load>total"]
        assert detail.locator("tr[data-step]").count() == 2
        detail.locator(".jp-dynpipe-node[data-id='load']").click()
        log = detail.locator(".jp-dynpipe-log")
        log.wait_for(timeout=30_000)
        assert "hello from load: 4 rows" in log.inner_text()
        snippet = detail.locator(".jp-dynpipe-snippet pre").first
        snippet.wait_for(timeout=30_000)
        assert "Client().get_artifact_version(" in snippet.inner_text()
        assert detail.locator(".jp-dynpipe-preview").first.inner_text() == "[0, 1, 2, 3]"
        page.screenshot(path=shot("run-detail.png"))

        # A saved notebook's DAG renders from its output alone (no kernel is started).
        page.goto(f"{lab['base']}/lab/workspaces/dp-{secrets.token_hex(4)}/tree/saved.ipynb"
                  f"?reset&token={lab['token']}")
        mime = page.locator(".jp-dynpipe-mime")
        no_kernel = page.locator(".jp-Dialog button", has_text="No Kernel")
        # The notebook names no kernel, so JupyterLab asks for one: decline, the DAG needs none.
        no_kernel.wait_for(timeout=60_000)
        no_kernel.click()
        mime.wait_for(timeout=60_000)
        page.wait_for_function(
            "() => document.querySelectorAll('.jp-dynpipe-mime .jp-dynpipe-node').length === 2", timeout=30_000
        )
        mime.locator(".jp-dynpipe-node[data-id='total']").click()
        details = mime.locator(".jp-dynpipe-dag-details")
        wait_until(lambda: "upstream" in details.inner_text() and "load" in details.inner_text(), 60,
                   what="the node details of the saved DAG", interval=0.1)
        before = mime.locator("svg g").first.get_attribute("transform")
        mime.locator("button[aria-label='Zoom in (+)']").click()
        assert mime.locator("svg g").first.get_attribute("transform") != before
        mime.screenshot(path=shot("saved-dag.png"))

        # "Export notebook to pipeline module" writes the module beside the notebook.
        module = lab["root"] / "saved_pipeline.py"
        # Done once the module is written whole (the file exists a moment before its text).
        run_command(page, "Export notebook to pipeline module",
                    lambda: module.exists() and "total(load(4))" in module.read_text())
        source = module.read_text()
        assert "@pipeline(dynamic=True, name='etl')" in source and "total(load(4))" in source
        check_pipes_notebook(page, lab)
        check_schedule_dialog(page, lab)
        check_older_pages(page, lab)
        for name in ("runs-panel.png", "run-detail.png", "saved-notebook-dag.png", "schedule-dialog.png"):
            publish(name, f"screenshots/{name}")


def check_pipes_notebook(page: Any, lab: dict[str, Any]) -> None:
    """Run %%pipeline cells in JupyterLab, save, shut the kernel down, reload: every DAG is
    drawn from the saved MIME payload and is clickable; no widget error anywhere."""
    path = pipes_notebook(lab["root"])
    page.goto(f"{lab['base']}/lab/workspaces/dp-{secrets.token_hex(4)}/tree/pipes.ipynb?reset&token={lab['token']}")
    page.wait_for_function(
        "() => window.jupyterapp && window.jupyterapp.shell.currentWidget"
        " && window.jupyterapp.shell.currentWidget.context"
        " && window.jupyterapp.shell.currentWidget.context.path === 'pipes.ipynb'"
        " && window.jupyterapp.shell.currentWidget.sessionContext.session"
        " && window.jupyterapp.shell.currentWidget.sessionContext.session.kernel", timeout=SLOW,
    )
    page.evaluate("() => window.jupyterapp.commands.execute('notebook:run-all-cells')")
    # Each finished cell's live widget is replaced by the payload: cell 3 shows load, cell 4 load+total.
    page.wait_for_function(
        """() => { const outs = [...document.querySelectorAll('.jp-Notebook .jp-dynpipe-mime')];
                   return outs.length === 2
                     && outs.map(o => o.querySelectorAll('.jp-dynpipe-node').length).join() === '1,2'; }""",
        timeout=SLOW,
    )
    page.evaluate("() => window.jupyterapp.commands.execute('docmanager:save')")
    wait_until(lambda: len(dag_outputs(path)) == 2, 120, what="the saved notebook to hold both DAG payloads",
               interval=0.1)
    saved = path.read_text()
    assert "application/vnd.jupyter.widget-view+json" not in saved
    payloads = dag_outputs(path)
    assert [[n["step"] for n in p["nodes"]] for p in payloads] == [["load"], ["load", "total"]]
    nodes = sum(len(p["nodes"]) for p in payloads)
    per_node = sum(len(json.dumps(p, indent=1)) for p in payloads) / nodes
    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / "saved-dag-bytes.txt").write_text(
        f"{nodes} nodes in {len(payloads)} outputs: {per_node:.0f} bytes per node (nbformat indent=1 JSON)\n"
    )
    # Shut the kernel down (its session too), then reload: nothing live is left.
    for session in api(lab, "/api/sessions"):
        if session["path"].endswith("pipes.ipynb"):
            api(lab, f"/api/sessions/{session['id']}", method="DELETE")
    wait_until(lambda: not api(lab, "/api/kernels"), 120, what="the kernel to shut down", interval=0.1)
    page.reload()
    page.wait_for_function(
        """() => { const outs = [...document.querySelectorAll('.jp-Notebook .jp-dynpipe-mime')];
                   return outs.length === 2 && outs.every(o => o.querySelector('.jp-dynpipe-node')); }""",
        timeout=SLOW,
    )
    text = page.locator(".jp-Notebook").inner_text()
    assert "Error displaying widget" not in text and "model not found" not in text
    assert page.locator(".jp-Notebook .jp-dynpipe-mime .jp-dynpipe-error:visible").count() == 0
    second = page.locator(".jp-Notebook .jp-dynpipe-mime").nth(1)
    second.locator(".jp-dynpipe-node[data-id='total']").click()
    details = second.locator(".jp-dynpipe-dag-details")
    wait_until(lambda: "upstream" in details.inner_text() and "load" in details.inner_text(), 60,
               what="the node details of the reloaded notebook's DAG", interval=0.1)
    second.screenshot(path=str(ARTIFACTS / "saved-notebook-dag.png"))


def check_schedule_dialog(page: Any, lab: dict[str, Any]) -> None:
    """The notebook toolbar's "Schedule…" opens the dialog; a bad cron is named in the
    preview; the schedule it creates is listed by ``dynpipe schedule list``."""
    page.locator(".jp-NotebookPanel-toolbar [data-jp-item-name='dynpipe-schedule'] button").click()
    form = page.locator(".jp-Dialog .jp-dynpipe-schedule-form")
    form.wait_for(timeout=60_000)
    preview = form.locator(".jp-dynpipe-schedule-preview")
    form.locator(".jp-dynpipe-schedule-cron").fill("0 3 * *")
    page.wait_for_function(
        """() => { const p = document.querySelector('.jp-dynpipe-schedule-preview');
                   return p.dataset.state === 'error' && p.textContent.includes('has 4 fields'); }""", timeout=60_000,
    )
    form.locator(".jp-dynpipe-schedule-timezone").fill("UTC")
    form.locator(".jp-dynpipe-schedule-cron").fill("30 2 * * *")
    page.wait_for_function(
        """() => { const p = document.querySelector('.jp-dynpipe-schedule-preview');
                   return p.dataset.state === 'ok' && p.querySelectorAll('li').length === 6; }""", timeout=60_000,
    )
    assert all(t.endswith("02:30 UTC") for t in preview.locator("li").all_inner_texts()[1:])
    rows = form.locator("input[data-param='rows']")
    assert rows.input_value() == "3"  # prefilled from the parameters cell
    rows.fill("5")
    form.locator(".jp-dynpipe-schedule-name").fill("pipes-nightly")
    form.screenshot(path=str(ARTIFACTS / "schedule-dialog.png"))
    page.locator(".jp-Dialog button.jp-mod-accept").click()
    module = lab["root"] / "pipes_pipeline.py"
    env = dict(os.environ, DYNPIPE_HOME=str(lab["store"]), PYTHONPATH=str(ROOT))

    def listed() -> str | None:
        if not module.exists():
            return None
        out = subprocess.run(
            [sys.executable, "-c", "from dynpipe.cli import main; raise SystemExit(main())", "schedule", "list"],
            capture_output=True, text=True, timeout=60, env=env, check=True,
        ).stdout
        return out if "pipes-nightly" in out else None

    out = wait_until(listed, 120, what="dynpipe schedule list to show the dialog's schedule", interval=0.1)
    assert "30 2 * * * (UTC)" in out and "pipes_pipeline.py" in out
    assert page.locator(".jp-Dialog .jp-dynpipe-schedule-form").count() == 0  # accepted: the dialog closed


def check_older_pages(page: Any, lab: dict[str, Any]) -> None:
    """More runs than a page: the panel shows the newest 50, "Show more runs" the rest,
    none twice, down to the oldest."""
    subprocess.run([sys.executable, str(lab["script"]), "bulk", "55"], env=lab["env"], check=True, timeout=300,
                   cwd=lab["tmp"])
    page.evaluate("() => window.jupyterapp.commands.execute('dynpipe:show-runs')")
    count = "() => document.querySelectorAll('#dynpipe-runs .jp-dynpipe-run').length"
    page.wait_for_function(f"() => ({count})() === 50", timeout=60_000)
    more = page.locator("#dynpipe-runs .jp-dynpipe-more")
    more.wait_for(state="visible", timeout=30_000)
    more.click()
    # Every run of the store, newest first: the 55 bulk runs above the earlier ones.
    expected = [r["id"] for r in api(lab, "/dynpipe/api/runs?per_page=200")["runs"]]
    assert 50 < len(expected) < 100
    page.wait_for_function(f"() => ({count})() === {len(expected)}", timeout=60_000)
    ids = page.eval_on_selector_all("#dynpipe-runs .jp-dynpipe-run", "els => els.map(e => e.dataset.runId)")
    assert ids == expected  # none twice, none skipped, down to the oldest
    pipelines = page.eval_on_selector_all(
        "#dynpipe-runs .jp-dynpipe-run-pipeline", "els => els.map(e => e.textContent)"
    )
    assert pipelines[:55] == ["bulk"] * 55 and pipelines[-3:] == ["slow", "etl", "etl"]
    assert more.is_hidden()
