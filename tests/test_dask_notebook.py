"""A ``%%pipeline`` cell in a real kernel (nbclient) whose isolated steps run on a Dask
LocalCluster the notebook itself created and handed over with ``dynpipe.use_dask(client)``:
what a saved notebook keeps says the steps completed and on which worker, and the widget's
state carries the cluster's dashboard link for its header.
"""

from __future__ import annotations

import html
import json
import re
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("distributed")
nbclient = pytest.importorskip("nbclient")
nbformat = pytest.importorskip("nbformat")

pytestmark = pytest.mark.timeout(180)

SETUP = """
import os
os.environ["DYNPIPE_HOME"] = {home!r}
os.environ.pop("DYNPIPE_ISOLATED_BACKEND", None)  # the handed-over client picks Dask
%load_ext dynpipe
import distributed
import dynpipe
from dynpipe import step

cluster = distributed.LocalCluster(
    n_workers=1, threads_per_worker=2, processes=True, dashboard_address="127.0.0.1:0", silence_logs=50
)
client = distributed.Client(cluster, set_as_default=False)
client.wait_for_workers(1, timeout=60)
dynpipe.use_dask(client)
print("dashboard", client.dashboard_link)
print("pids", *client.run(os.getpid).values())

@step(runtime="isolated", enable_cache=False)
def square(x: int) -> int:
    import time

    import distributed  # runs on the Dask worker: defined in the notebook, it travels by value
    assert distributed.get_worker() is not None
    time.sleep(1.5)  # the live widget draws frames (with the dashboard link) while steps run
    return x * x
"""

CELL = "%%pipeline on_dask\nfs = [square.submit(i) for i in range(3)]\nprint(sum(f.load() for f in fs))"


def _stdout(cell: Any) -> str:
    return "".join(o.get("text", "") for o in cell.outputs if o["output_type"] == "stream" and o["name"] == "stdout")


def test_pipeline_cell_runs_its_isolated_steps_on_the_notebooks_dask_cluster(tmp_path: Path) -> None:
    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_code_cell(SETUP.format(home=str(tmp_path / "store"))),
        nbformat.v4.new_code_cell(CELL),
        nbformat.v4.new_code_cell("%pipeline end on_dask"),
        nbformat.v4.new_code_cell("dynpipe.use_dask(None)\nclient.close()\ncluster.close()"),
    ]
    nbclient.NotebookClient(nb, timeout=120, kernel_name="python3").execute()

    setup = _stdout(nb.cells[0])
    dashboard = re.search(r"^dashboard (\S+)$", setup, re.M)
    pids = re.search(r"^pids (.+)$", setup, re.M)
    assert dashboard and dashboard.group(1).startswith("http://127.0.0.1:"), setup
    assert pids, setup
    assert _stdout(nb.cells[1]) == "5\n"  # 0 + 1 + 4, loaded back from the workers' outputs

    bundles = [o["data"] for o in nb.cells[1].outputs if o["output_type"] == "display_data"]
    assert len(bundles) == 1
    assert bundles[0]["text/plain"] == (
        "dynpipe run 'on_dask' (completed): 3 steps — 3 completed\n  square ×3    3 completed"
    )
    # The picture's hover details name the Dask worker that ran each step (its pid too).
    svg = html.unescape(bundles[0]["image/svg+xml"])
    ran_on = re.findall(r"ran on: dask (tcp://127\.0\.0\.1:\d+) \(host [^,]+, pid (\d+)\)", svg)
    assert len(ran_on) == 3, svg
    assert {pid for _, pid in ran_on} == set(pids.group(1).split())

    # The widget's last state (nbclient saves it) carries the dashboard link for its header.
    state = nb.metadata.get("widgets", {}).get("application/vnd.jupyter.widget-state+json", {}).get("state", {})
    links = {m["state"].get("dashboard") for m in state.values() if "dashboard" in m.get("state", {})}
    assert links == {dashboard.group(1)}, json.dumps(state)[:2000]
