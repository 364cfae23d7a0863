"""``%pipeline schedule`` in a real kernel: the saved notebook is exported and the schedule created,
locally (stored for ``dynpipe scheduler``) or as a CronJob, with ``schedule create``'s options."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest
import yaml
from nbclient import NotebookClient

from dynpipe.store.schedules import ScheduleStore

SAVED = [
    ("%load_ext dynpipe", []),
    ("from dynpipe import step\n\n@step\ndef double(n: int) -> int:\n    return 2 * n", []),
    ("n = 1", ["parameters"]),
    ("%%pipeline nightly_run\nresult = double(n)", []),
]


@pytest.mark.timeout(180)
def test_pipeline_schedule_magic_exports_and_creates(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("JPY_SESSION_NAME", raising=False)
    saved = nbformat.v4.new_notebook()
    saved.cells = [nbformat.v4.new_code_cell(src, metadata={"tags": tags} if tags else {}) for src, tags in SAVED]
    notebook = tmp_path / "train.ipynb"
    nbformat.write(saved, notebook)
    k8s_module, cron_file = tmp_path / "k8s_module.py", tmp_path / "cron.yaml"
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(src) for src in (
        "%load_ext dynpipe",
        f'%pipeline schedule nightly --cron "0 3 * * *" --timezone Europe/Berlin -p n=4 --notebook {notebook}',
        f"%pipeline schedule nightly-k8s --cron @daily --notebook {notebook} --module {k8s_module}"
        f" --target kubernetes --image example/app:1 --allow-local-store -o {cron_file}",
        f'%pipeline schedule bad --cron "99 * * * *" --notebook {notebook}',
        f"%pipeline schedule other --cron @daily --notebook {notebook} -p epochs=3",
    )]
    for cell in nb.cells[3:]:
        cell.metadata["tags"] = ["raises-exception"]
    NotebookClient(nb, timeout=120, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()

    said = "".join(o.get("text", "") for o in nb.cells[1].outputs)
    module = tmp_path / "nightly_run_pipeline.py"
    assert f"exported train.ipynb to {module}; schedule nightly created" in said
    assert "List schedules with: dynpipe schedule list" in said and "next run" in said
    store = ScheduleStore(tmp_path / "store")
    record = store.get("nightly")
    assert (record.module, record.pipeline, record.params) == (str(module), "nightly_run", {"n": "4"})
    assert (record.cron, record.timezone, record.target) == ("0 3 * * *", "Europe/Berlin", "local")
    assert "def nightly_run(n=1) -> None:" in module.read_text() or "def nightly_run(n: int = 1)" in module.read_text()

    said = "".join(o.get("text", "") for o in nb.cells[2].outputs)
    assert f"wrote ConfigMap/nightly-k8s-module, CronJob/nightly-k8s to {cron_file}" in said
    configmap, cronjob = yaml.safe_load_all(cron_file.read_text())
    assert configmap["data"] == {"k8s_module.py": k8s_module.read_text()}
    command = cronjob["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]["command"]
    assert command[4:] == ["/dynpipe/module/k8s_module.py:nightly_run", "--run-name", "nightly-k8s-{date}-{time}"]

    bad, unknown = nb.cells[3].outputs[-1], nb.cells[4].outputs[-1]
    assert bad["output_type"] == "error" and "99" in bad["evalue"]
    assert unknown["output_type"] == "error"
    assert "parameter 'epochs' is not a parameter of pipeline 'nightly_run'" in unknown["evalue"]
    assert [s.name for s in store.schedules()] == ["nightly"]
