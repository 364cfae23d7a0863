"""The live DAG in a real browser: JupyterLab + Debian's chromium driven by Playwright.

Runs a ``%%pipeline`` cell that submits slow steps, then watches the page: node statuses
must go from running to completed while nobody re-runs the cell (updates come from the
kernel's background threads). Screenshots go to test-artifacts/, and replace the README's
pictures in docs/ only with DYNPIPE_UPDATE_SCREENSHOTS=1 (tests/screenshots.py).

A cell's widget stays live while any of its steps runs, then becomes a static picture;
the cells here keep a ``hold`` step running (released through a flag file) while the
test clicks, expands and watches timers. The second test saves the notebook, restarts
the kernel, reloads the page and checks every cell still shows its DAG, with no widget
error.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import nbformat
import pytest
from lab_browser import CHROMIUM, chromium_page, jupyterlab
from screenshots import publish, shot

pytestmark = [
    pytest.mark.skipif(not os.path.exists(CHROMIUM), reason=f"{CHROMIUM} is not installed"),
    pytest.mark.timeout(240),
]

SETUP = '''import os, time
os.environ["DYNPIPE_HOME"] = {home!r}
%load_ext dynpipe
from dynpipe import step

@step(enable_cache=False)
def make_batches() -> list[str]:
    return [f"batch-{{i}}" for i in range(5)]

@step(enable_cache=False)
def train(batch: str) -> float:
    i = int(batch.split("-")[1])
    time.sleep(2.5 + 0.6 * i)
    return 1 - 1 / (i + 2)

@step(enable_cache=False)
def pick_best(scores: list[float]) -> float:
    return max(scores)

@step(enable_cache=False)
def tick(i: int) -> int:
    return i

@step(enable_cache=False)
def hold(flag: str) -> str:
    """Runs until the test creates ``flag`` (at most two minutes)."""
    deadline = time.monotonic() + 120
    while not os.path.exists(flag) and time.monotonic() < deadline:
        time.sleep(0.05)
    return flag'''

RUN = '''%%pipeline browser_demo
batches = make_batches().load()
scores = [train.submit(b) for b in batches]  # loaded values keep make_batches as upstream
best = pick_best.submit(scores)
held = hold.submit({flag!r})'''

FAN = '''%%pipeline browser_fan
ticks = [tick.submit(i) for i in range(20)]
held = hold.submit({flag!r})'''

TIMERS = (
    # The kernel stays busy for a while after submitting: timers must tick meanwhile too.
    '''%%pipeline timers
held = hold.submit({flag!r})
first = tick(1)
time.sleep(6)''',
    '''%%pipeline timers
held.wait()
second = tick(2)''',
)

WIDGET_MIME = "application/vnd.jupyter.widget-view+json"


@pytest.fixture()
def lab(tmp_path: Path) -> Iterator[tuple[str, str]]:
    """JupyterLab with dynpipe's own JupyterLab extension disabled, as in VS Code or a
    Notebook 7 without it: the widget and the static picture must do on their own
    (tests/test_labextension_browser.py covers the extension's renderer of saved DAGs)."""
    root = tmp_path / "root"
    root.mkdir()
    setup = SETUP.format(home=str(tmp_path / "store"))
    flags = tmp_path / "flags"
    flags.mkdir()
    for name, cells in (
        ("live.ipynb", [setup, RUN.format(flag=str(flags / "run")), FAN.format(flag=str(flags / "fan"))]),
        ("timers.ipynb", [setup, *(c.format(flag=str(flags / "timers")) for c in TIMERS)]),
    ):
        nb = nbformat.v4.new_notebook()
        nb.cells = [nbformat.v4.new_code_cell(c) for c in cells]
        nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
        nbformat.write(nb, root / name)
    with jupyterlab(tmp_path, root, dynpipe_extension=False) as server:
        yield server.base, server.token


def prompt(page: object, index: int) -> str:
    return page.evaluate(  # type: ignore[attr-defined, no-any-return]
        "i => document.querySelectorAll('.jp-Notebook .jp-CodeCell')[i]"
        ".querySelector('.jp-InputPrompt').textContent",
        index,
    )


def run_cell(page: object, index: int, done: str, wait: bool = True) -> None:
    """Select cell ``index`` and press Shift+Enter until the kernel has started it; then
    (``wait``) until its prompt shows ``done``."""
    for _ in range(4):
        page.locator(".jp-Notebook .jp-CodeCell").nth(index).locator(".jp-InputPrompt").click()  # type: ignore[attr-defined]
        page.keyboard.press("Shift+Enter")  # type: ignore[attr-defined]
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            text = prompt(page, index)
            if "*" in text or done in text:
                if "*" in text and wait:
                    page.wait_for_function(  # type: ignore[attr-defined]
                        "([i, d]) => document.querySelectorAll('.jp-Notebook .jp-CodeCell')[i]"
                        ".querySelector('.jp-InputPrompt').textContent.includes(d)",
                        arg=[index, done], timeout=60_000,
                    )
                return
            time.sleep(0.2)
    raise AssertionError(f"cell {index} never ran (prompt {prompt(page, index)!r})")


def test_live_dag_updates_in_jupyterlab(lab: tuple[str, str], tmp_path: Path) -> None:
    base, token = lab
    url = f"{base}/lab/workspaces/dp-{secrets.token_hex(4)}/tree/live.ipynb?reset&token={token}"
    with chromium_page(tmp_path / "chromium-profile", "browser-failure.png") as page:
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
        # Running steps appear in the live widget...
        page.wait_for_selector(".dynpipe-dag g.node[data-dp-status='running']", timeout=60_000)
        running_seen = page.eval_on_selector_all(
            ".dynpipe-dag g.node", "els => els.map(e => e.dataset.dpStatus)"
        )
        assert "running" in running_seen
        mid_run = False
        try:  # a picture of the DAG mid-run (some steps done, some running) for the README
            page.wait_for_function(
                """() => { const s = [...document.querySelectorAll('.dynpipe-dag g.node')]
                             .map(n => n.dataset.dpStatus);
                           return s.includes('running') && s.filter(x => x === 'completed').length >= 3; }""",
                timeout=20_000,
            )
            dag.first.screenshot(path=shot("live-dag.png"))
            mid_run = True
        except Exception:
            pass
        # ...and every node reaches 'completed' with no further cell execution.
        page.wait_for_function(
            """() => {
              const nodes = [...document.querySelectorAll('.dynpipe-dag g.node')]
                .filter(n => n.id !== 'dp-n-hold');
              return nodes.length === 7 && nodes.every(n => n.dataset.dpStatus === 'completed');
            }""",
            timeout=90_000,
        )
        prompts = page.eval_on_selector_all(
            ".jp-Notebook .jp-CodeCell .jp-InputPrompt", "els => els.map(e => e.textContent)"
        )
        assert any("[2]" in t for t in prompts) and not any("[3]" in t for t in prompts)
        # Connected: make_batches -> 5 train (lineage through .load()) -> pick_best.
        edges = page.locator(".jp-Notebook .jp-CodeCell").nth(1).locator(".dynpipe-dag g.edge").count()
        assert edges >= 10, edges
        # Clicking a node shows its details, handled in the browser from the widget state.
        page.locator(".dynpipe-dag g.node", has_text="pick_best").first.click()
        info = page.locator(".dynpipe-dag .dp-info")
        info.wait_for(timeout=10_000)
        text = info.inner_text()
        assert "pick_best" in text and "completed" in text and "train" in text
        dag.first.screenshot(path=shot("live-dag-final.png"))
        page.screenshot(path=shot("live-dag-page.png"))

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
                       return cells[2].querySelectorAll('.dynpipe-dag g.node').length === 21; }  // + hold""",
            timeout=30_000,
        )
        fan.locator(".dp-bar button", has_text="collapse tick").click()
        group.wait_for(timeout=30_000)
        assert fan.locator("g.node").count() == 2  # the group and hold
        # Released, the last steps finish and each cell's widget becomes its static picture.
        for flag in ("run", "fan"):
            (tmp_path / "flags" / flag).touch()
        page.wait_for_function(
            """() => { const cells = [...document.querySelectorAll('.jp-Notebook .jp-CodeCell')].slice(1, 3);
                       return !document.querySelector('.dynpipe-dag')
                         && cells.every(c => c.querySelector('.jp-OutputArea-output img')); }""",
            timeout=60_000,
        )
        publish("live-dag.png" if mid_run else "live-dag-final.png", "live-dag.png")  # the README's picture


def open_notebook(page: Any, url: str) -> None:
    """Load ``url`` and wait until the notebook is shown and its kernel is idle."""
    page.goto(url)
    page.wait_for_selector(".jp-Notebook .jp-Cell", timeout=60_000)
    page.wait_for_selector(".jp-Notebook-ExecutionIndicator[data-status='idle']", timeout=60_000)
    page.wait_for_function("() => document.body.innerText.includes('Python 3 (ipykernel) | Idle')", timeout=60_000)


def wait_for_tick(page: Any, before: str, selector_js: str) -> str:
    """Wait (deadline 6 s) until the text ``selector_js`` returns differs from ``before``."""
    page.wait_for_function(f"b => ({selector_js})() !== b", arg=before, timeout=6_000)
    return page.evaluate(f"({selector_js})()")  # type: ignore[no-any-return]


LABEL_JS = """() => { const g = [...document.querySelectorAll('.dynpipe-dag g.node')]
                        .find(n => n.id === 'dp-n-hold');
                      const t = g && [...g.querySelectorAll('text')].map(x => x.textContent)
                        .find(x => x.startsWith('running'));
                      return t || ''; }"""
HEAD_JS = "() => (document.querySelector('.dynpipe-dag .dp-head') || {}).textContent || ''"


def kernel_id(base: str, token: str, path: str) -> str:
    with urllib.request.urlopen(f"{base}/api/sessions?token={token}", timeout=10) as r:
        sessions = json.load(r)
    return next(s["kernel"]["id"] for s in sessions if s["path"].endswith(path))


def test_timers_tick_and_a_saved_notebook_reopens_after_a_restart(lab: tuple[str, str], tmp_path: Path) -> None:
    base, token = lab
    url = f"{base}/lab/workspaces/dp-{secrets.token_hex(4)}/tree/timers.ipynb?reset&token={token}"
    saved = tmp_path / "root" / "timers.ipynb"
    with chromium_page(tmp_path / "chromium-profile", "browser-failure-timers.png") as page:
        open_notebook(page, url)
        run_cell(page, 0, "[1]")
        run_cell(page, 1, "[2]", wait=False)  # returns while the cell still sleeps
        page.wait_for_selector(".dynpipe-dag g.node[data-dp-status='running']", timeout=60_000)
        page.wait_for_function(f"() => ({LABEL_JS})() !== ''", timeout=30_000)

        # 1. The kernel is busy (the cell sleeps): the running step's duration still ticks.
        first = page.evaluate(f"({LABEL_JS})()")
        second = wait_for_tick(page, first, LABEL_JS)
        assert "*" in prompt(page, 1), "the cell returned before the busy-kernel check"
        assert first.startswith("running · ") and second.startswith("running · ") and first != second

        # 2. The cell returned (kernel idle), the step still runs: node and header tick.
        page.wait_for_function(
            "() => document.querySelectorAll('.jp-Notebook .jp-CodeCell')[1]"
            ".querySelector('.jp-InputPrompt').textContent.includes('[2]')", timeout=60_000,
        )
        label, head = page.evaluate(f"({LABEL_JS})()"), page.evaluate(f"({HEAD_JS})()")
        assert "timers" in head and "running" in head and "elapsed" in head, head
        assert wait_for_tick(page, label, LABEL_JS) != label
        assert wait_for_tick(page, head, HEAD_JS) != head
        assert page.locator(".dynpipe-dag g.node[data-dp-status='running']").count() == 1
        page.locator(".dynpipe-dag").first.screenshot(path=shot("running-timers.png"))
        publish("running-timers.png", "screenshots/running-timers.png")

        # 3. Released, the cell's work is done: its widget becomes the static picture.
        (tmp_path / "flags" / "timers").touch()
        run_cell(page, 2, "[3]")
        page.wait_for_function(
            """() => { const cells = [...document.querySelectorAll('.jp-Notebook .jp-CodeCell')].slice(1, 3);
                       return !document.querySelector('.dynpipe-dag')
                         && cells.every(c => c.querySelector('.jp-OutputArea-output img')); }""",
            timeout=60_000,
        )

        # 4. Save; the saved file holds pictures and no widget view.
        page.locator(".jp-Notebook .jp-CodeCell").nth(2).locator(".jp-InputPrompt").click()
        page.keyboard.press("Control+s")
        deadline = time.monotonic() + 30
        while True:
            try:
                nb = nbformat.read(saved, as_version=4)
            except nbformat.reader.NotJSONError:  # read while JupyterLab was writing it
                assert time.monotonic() < deadline, "the saved notebook never became readable"
                time.sleep(0.3)
                continue
            outs = [
                o.get("data", {}) for c in nb.cells[1:] for o in c.outputs if o["output_type"] == "display_data"
            ]
            if len(outs) == 2 and all("image/svg+xml" in d for d in outs):
                break
            assert time.monotonic() < deadline, f"the saved notebook has no pictures: {outs}"
            time.sleep(0.3)
        assert not any(WIDGET_MIME in d for d in outs), outs

        # 5. Restart the kernel, reload the page: each cell shows its DAG, no widget error.
        req = urllib.request.Request(
            f"{base}/api/kernels/{kernel_id(base, token, 'timers.ipynb')}/restart",
            method="POST", headers={"Authorization": f"token {token}"},
        )
        urllib.request.urlopen(req, timeout=60).close()
        open_notebook(page, url.replace("?reset&", "?"))
        page.wait_for_function(
            """() => [...document.querySelectorAll('.jp-Notebook .jp-CodeCell')].slice(1, 3)
                       .every(c => c.querySelector('.jp-OutputArea-output img'))""",
            timeout=60_000,
        )
        page.wait_for_function("() => !document.body.innerText.includes('Loading widget')", timeout=30_000)
        text = page.locator(".jp-Notebook").inner_text()
        assert "model not found" not in text and "Error displaying widget" not in text
        sources = page.eval_on_selector_all(".jp-Notebook .jp-OutputArea-output img", "els => els.map(e => e.src)")
        assert len(sources) == 2 and all(s.startswith("data:image/svg+xml") for s in sources), sources
        page.locator(".jp-Notebook .jp-CodeCell").nth(2).scroll_into_view_if_needed()
        page.screenshot(path=shot("reopened-after-restart.png"))
        publish("reopened-after-restart.png", "screenshots/reopened-after-restart.png")


VIEWS_SETUP = SETUP + '''

@step(enable_cache=False)
def crash(lines: int) -> int:
    for i in range(lines):
        print("log line", i)
    raise ValueError("the data had no rows")

@step(enable_cache=False)
def train_lr(lr: float) -> float:
    return lr * 2

from dynpipe import StepRetryConfig
flaky_calls = []

@step(enable_cache=False, retry=StepRetryConfig(max_retries=2, delay=0))
def flaky() -> int:
    flaky_calls.append(1)
    if len(flaky_calls) < 3:
        raise KeyError("first kind")
    raise RuntimeError("second kind")'''

BIG = '''%%pipeline big_fan
ticks = [tick.submit(i) for i in range(300)]
held = hold.submit({flag!r})'''

FAILING = '''%%pipeline failing --mode continue_on_failure
model = train_lr(0.03)
bad = crash.submit(60)
retried = flaky.submit()
held = hold.submit({flag!r})'''

VIEW_JS = """() => { const d = document.querySelector('.dynpipe-dag');
                     const s = d.querySelector('.dp-stage'), p = d.querySelector('.dp-pic');
                     const svg = s.querySelector('svg');
                     return {zoom: parseFloat(d.dataset.dpZoom), transform: s.style.transform,
                             boxW: p.clientWidth, boxH: p.clientHeight,
                             drawnW: svg.getBoundingClientRect().width}; }"""


def test_big_expanded_group_fits_zooms_and_pans_and_failed_details_are_themed(
    lab: tuple[str, str], tmp_path: Path,
) -> None:
    base, token = lab
    root = tmp_path / "root"
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(c) for c in (
        VIEWS_SETUP.format(home=str(tmp_path / "store")),
        BIG.format(flag=str(tmp_path / "flags" / "big")),
        FAILING.format(flag=str(tmp_path / "flags" / "failing")),
    )]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, root / "views.ipynb")
    url = f"{base}/lab/workspaces/dp-{secrets.token_hex(4)}/tree/views.ipynb?reset&token={token}"
    try:
        with chromium_page(tmp_path / "chromium-profile", "browser-failure-views.png") as page:
            open_notebook(page, url)
            run_cell(page, 0, "[1]")
            run_cell(page, 1, "[2]")
            big = page.locator(".jp-Notebook .jp-CodeCell").nth(1).locator(".dynpipe-dag")
            group = big.locator("g.node", has_text="tick ×300")
            group.wait_for(timeout=60_000)
            page.wait_for_function(
                "() => document.querySelector('.dynpipe-dag').textContent.includes('300/300')", timeout=120_000
            )
            group.click()
            big.locator(".dp-info button.jp-Button", has_text="expand").click()
            page.wait_for_function(
                "() => document.querySelectorAll('.dynpipe-dag g.node').length === 301", timeout=60_000
            )
            # 1. Fit to width: the whole 300-member grid is drawn within the box, scaled down,
            #    and the box is short (not a 21,000 px column behind a scrollbar).
            fitted = page.evaluate(VIEW_JS)
            assert fitted["zoom"] < 1 and fitted["drawnW"] <= fitted["boxW"] + 1, fitted
            assert fitted["boxH"] <= 600, fitted
            page.locator(".dynpipe-dag").first.screenshot(path=shot("zoomed-out-300.png"))
            publish("zoomed-out-300.png", "screenshots/zoomed-out-300.png")
            # 2. Zoom in with the button and with the wheel (after focusing the picture).
            big.locator(".dp-tools button", has_text="+").click()
            zoomed = page.evaluate(VIEW_JS)
            assert zoomed["zoom"] > fitted["zoom"] * 1.2, (fitted, zoomed)
            box = big.locator(".dp-pic").bounding_box()
            assert box is not None
            page.mouse.click(box["x"] + 5, box["y"] + 5)
            page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
            page.mouse.wheel(0, -300)
            page.wait_for_function(f"z => ({VIEW_JS})().zoom > z", arg=zoomed["zoom"], timeout=5_000)
            # 3. Drag pans the picture; a new frame keeps the reader's view.
            before = page.evaluate(VIEW_JS)
            page.mouse.move(box["x"] + 200, box["y"] + 100)
            page.mouse.down()
            page.mouse.move(box["x"] + 120, box["y"] + 60, steps=5)
            page.mouse.up()
            panned = page.evaluate(VIEW_JS)
            assert panned["transform"] != before["transform"] and panned["zoom"] == before["zoom"], panned
            # 4. "fit" resets zoom and pan.
            big.locator(".dp-tools button", has_text="fit").click()
            reset = page.evaluate(VIEW_JS)
            assert reset["zoom"] == fitted["zoom"] and reset["transform"] == fitted["transform"], (reset, fitted)

            # 5. A failed step's details: themed panel, runtime, whole log, traceback;
            #    a completed step's artifact id with a Client snippet; parameters in the label.
            run_cell(page, 2, "[3]")
            failing = page.locator(".jp-Notebook .jp-CodeCell").nth(2).locator(".dynpipe-dag")
            crashed = failing.locator("g.node[data-dp-status='failed']", has_text="crash")
            crashed.wait_for(timeout=60_000)
            assert failing.locator("g.node", has_text="train_lr lr=0.03").count() == 1
            failing.locator("g.node", has_text="train_lr").click()
            info = failing.locator(".dp-info")
            page.wait_for_function(
                "() => [...document.querySelectorAll('.dp-info code')]"
                ".some(c => c.textContent.startsWith('Client().get_artifact_version(\"'))", timeout=10_000,
            )
            assert "inline (in the kernel's process)" in info.inner_text()
            crashed.click()
            page.wait_for_function(
                "() => [...document.querySelectorAll('.dp-info pre.dp-log')]"
                ".some(p => p.textContent.includes('log line 59'))",
                timeout=10_000,
            )
            text = info.inner_text()
            assert "log line 0\n" in text and "log line 59" in text  # the whole log, not a tail
            assert "ValueError: the data had no rows" in text and "failed" in text
            style = page.evaluate(
                """() => { const i = [...document.querySelectorAll('.dp-info')].find(e => !e.hidden);
                           const css = getComputedStyle(document.body);
                           const probe = document.createElement('div');
                           probe.style.background = css.getPropertyValue('--jp-layout-color1');
                           document.body.append(probe);
                           const want = getComputedStyle(probe).backgroundColor; probe.remove();
                           return {bg: getComputedStyle(i).backgroundColor, want,
                                   themed: css.getPropertyValue('--jp-layout-color1') !== ''}; }"""
            )
            assert style["themed"] and style["bg"] == style["want"], style
            assert failing.locator(".dp-tools button.jp-Button.jp-mod-styled").count() == 3
            failing.locator(".dp-info").scroll_into_view_if_needed()
            failing.screenshot(path=shot("failed-step-details.png"))
            publish("failed-step-details.png", "screenshots/failed-step-details.png")

            # 6. A step that failed on 3 attempts: its badge and the panel count alike, and each
            #    distinct error is shown once with the attempts that raised it.
            flaky = failing.locator("g.node[data-dp-status='failed']", has_text="flaky")
            flaky.wait_for(timeout=60_000)
            badge = flaky.locator("text").all_text_contents()[-1]
            assert badge.startswith("failed · ") and badge.endswith(" · ⟳2"), badge  # 2 retries
            flaky.click()
            page.wait_for_function(
                "() => [...document.querySelectorAll('.dp-info')].some(i => !i.hidden"
                " && i.textContent.includes(\"step 'flaky' failed 3 attempts\"))", timeout=10_000,
            )
            text = info.inner_text()
            assert re.search(r"attempts\s+3 \(⟳2 retries\)", text), text  # 3 attempts = the badge's ⟳2 + 1
            assert "attempts 1, 2: KeyError: 'first kind'" in text and "attempt 3: RuntimeError: second kind" in text
            assert text.count("KeyError: 'first kind'") == 1 and text.count("attempt 3:") == 1, text
    finally:
        for flag in ("big", "failing"):
            (tmp_path / "flags" / flag).touch()
