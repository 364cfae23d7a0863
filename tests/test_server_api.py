"""The REST API under /dynpipe/api/ on a real jupyter_server (pytest-jupyter's jp_fetch).

Runs are made by real pipelines into the test's own store (``DYNPIPE_HOME``, set by
conftest), then read back over HTTP: listing newest first with pages and filters, one
run with its steps and DAG payload, a step's log, capped artifact previews, the notebook
export, and the refusals: no token (403), a path outside the server root (403), bad
query parameters (400, naming the parameter).
"""

from __future__ import annotations

import itertools
import json
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import nbformat
import pytest

pytest.importorskip("jupyter_server")
pytest.importorskip("pytest_jupyter")
from tornado.httpclient import HTTPClientError

from dynpipe import Client, pipeline, step
from dynpipe.engine.dag import RunGraph
from dynpipe.server import (
    MIME_TYPE,
    dag_payload,
    nodes_payload,
    previews,
)

pytest_plugins = ["pytest_jupyter.jupyter_server"]


@pytest.fixture
def jp_server_config() -> dict[str, Any]:
    return {"ServerApp": {"jpserver_extensions": {"dynpipe.server": True}}}


@step(enable_cache=False)
def load(n: int) -> list[int]:
    print(f"loading {n} rows")
    return list(range(n))


@step(enable_cache=False)
def total(rows: list[int]) -> dict[str, int]:
    print("summing")
    return {"total": sum(rows), "count": len(rows)}


@step(enable_cache=False)
def big() -> str:
    return "x" * (previews.PREVIEW_CHARS * 3)


@step(enable_cache=False)
def boom() -> int:
    raise ValueError("bad batch 7")


@pipeline(dynamic=True, name="etl")
def etl() -> None:
    total(load(5))


@pipeline(dynamic=True, name="bigone")
def bigone() -> None:
    big()


async def get_json(jp_fetch: Any, *parts: str, **params: str) -> Any:
    response = await jp_fetch("dynpipe", "api", *parts, params=params)
    assert response.code == 200
    assert response.headers["Content-Type"] == "application/json"
    return json.loads(response.body)


async def test_runs_are_listed_newest_first_in_pages_with_filters(jp_fetch: Any) -> None:
    first, second = etl(), etl()
    other = bigone()
    data = await get_json(jp_fetch, "runs")
    assert [r["id"] for r in data["runs"]] == [other.id, second.id, first.id]
    assert data["pipelines"] == ["bigone", "etl"]
    assert data["store"] == str(Client().store.root)
    head = data["runs"][1]
    assert head["pipeline"] == "etl" and head["status"] == "completed" and head["active"] is False
    assert head["steps"] == 2 and head["step_counts"] == {"completed": 2}
    assert head["active_seconds"] >= 0
    assert "origin" in head  # None until the store records where a run came from

    page1 = await get_json(jp_fetch, "runs", per_page="2")
    page2 = await get_json(jp_fetch, "runs", per_page="2", page="2")
    assert [r["id"] for r in page1["runs"]] == [other.id, second.id] and page1["has_more"] is True
    assert [r["id"] for r in page2["runs"]] == [first.id] and page2["has_more"] is False

    only_etl = await get_json(jp_fetch, "runs", pipeline="etl")
    assert [r["id"] for r in only_etl["runs"]] == [second.id, first.id]
    assert (await get_json(jp_fetch, "runs", status="failed"))["runs"] == []


async def test_pages_follow_the_next_cursor_while_new_runs_arrive(jp_fetch: Any) -> None:
    old = [etl().id for _ in range(5)]
    first = await get_json(jp_fetch, "runs", per_page="2")
    assert [r["id"] for r in first["runs"]] == old[:2:-1] and first["has_more"] is True and first["next"]
    assert first["runs"][0]["step_counts"] == {"completed": 2} and first["runs"][0]["steps"] == 2
    newer = etl()  # arrives between pages: it shifts ``page=2`` but not the cursor's page
    second = await get_json(jp_fetch, "runs", per_page="2", after=first["next"])
    assert [r["id"] for r in second["runs"]] == old[2:0:-1] and second["has_more"] is True
    by_page = await get_json(jp_fetch, "runs", per_page="2", page="2")
    assert [r["id"] for r in by_page["runs"]] == [old[3], old[2]]
    last = await get_json(jp_fetch, "runs", per_page="2", after=second["next"])
    assert [r["id"] for r in last["runs"]] == [old[0]] and last["has_more"] is False and last["next"] is None
    head = await get_json(jp_fetch, "runs", per_page="2")
    assert head["runs"][0]["id"] == newer.id
    for params, words in [
        ({"after": "not-a-cursor"}, "'after'"),
        ({"after": first["next"], "page": "2"}, "'after' and 'page' exclude each other"),
    ]:
        with pytest.raises(HTTPClientError) as info:
            await jp_fetch("dynpipe", "api", "runs", params=params)
        assert info.value.code == 400 and words in str(info.value.message), params


async def test_a_failed_run_is_found_by_status(jp_fetch: Any) -> None:
    @pipeline(dynamic=True, name="fails")
    def fails() -> None:
        boom()

    with pytest.raises(Exception, match="bad batch 7"):
        fails()
    etl()
    data = await get_json(jp_fetch, "runs", status="failed")
    assert [r["pipeline"] for r in data["runs"]] == ["fails"]
    detail = await get_json(jp_fetch, "runs", data["runs"][0]["id"])
    (step_row,) = detail["steps"]
    assert step_row["status"] == "failed" and "bad batch 7" in step_row["error"]
    assert "ValueError" in step_row["traceback"]
    assert detail["dag"]["nodes"][0]["error"] == step_row["error"]


async def test_a_run_has_its_steps_dag_logs_and_artifact_previews(jp_fetch: Any) -> None:
    run = etl()
    detail = await get_json(jp_fetch, "runs", run.name)  # by name or id, as the CLI
    assert detail["run"]["id"] == run.id
    steps = {s["id"]: s for s in detail["steps"]}
    assert set(steps) == {"load", "total"}
    assert steps["total"]["upstream"] == ["load"] and steps["total"]["cache"] == "computed"
    assert steps["load"]["attempts"] == 1 and steps["load"]["duration"] is not None
    assert detail["dag"] == dag_payload(Client().get_pipeline_run(run.id))
    assert [n["id"] for n in detail["dag"]["nodes"]] == ["load", "total"]

    log = await get_json(jp_fetch, "runs", run.id, "steps", "load", "logs")
    assert "loading 5 rows" in log["logs"] and log["truncated"] is False

    (out,) = steps["total"]["outputs"]
    preview = await get_json(jp_fetch, "artifacts", out["id"])
    assert json.loads(preview["json"]) == {"total": 10, "count": 5}
    assert preview["repr"] == repr({"total": 10, "count": 5})
    assert repr(out["id"]) in preview["snippet"] and "Client()" in preview["snippet"]
    namespace: dict[str, Any] = {}
    exec(preview["snippet"], namespace)  # the snippet the panel offers really loads the value
    assert namespace["value"] == {"total": 10, "count": 5}


async def test_previews_are_capped(jp_fetch: Any) -> None:
    run = bigone()
    art = Client().get_pipeline_run(run.id).steps["big"].output
    preview = await get_json(jp_fetch, "artifacts", art.id)
    assert preview["truncated"] is True
    assert len(preview["repr"]) == previews.PREVIEW_CHARS
    assert len(preview["json"]) == previews.PREVIEW_CHARS


async def test_a_dataframe_previews_as_a_small_table(jp_fetch: Any) -> None:
    pd = pytest.importorskip("pandas")

    @step(enable_cache=False)
    def frame() -> Any:
        return pd.DataFrame({"a": range(100), "b": [f"r{i}" for i in range(100)]})

    @pipeline(dynamic=True, name="frames")
    def frames() -> None:
        frame()

    run = frames()
    art = Client().get_pipeline_run(run.id).steps["frame"].output
    table = (await get_json(jp_fetch, "artifacts", art.id))["table"]
    assert table["columns"] == ["a", "b"] and table["shape"] == [100, 2]
    assert len(table["rows"]) == previews.TABLE_ROWS and table["rows"][3] == ["3", "'r3'"]


@pytest.mark.parametrize("parts", [
    ("runs",), ("runs", "x"), ("runs", "x", "steps", "y", "logs"), ("artifacts", "x"),
    ("schedules",), ("schedules", "preview"), ("notebook-parameters",),
])
async def test_requests_without_a_valid_token_get_403(jp_fetch: Any, parts: tuple[str, ...]) -> None:
    etl()
    with pytest.raises(HTTPClientError) as info:
        await jp_fetch("dynpipe", "api", *parts, headers={"Authorization": "token not-the-token"})
    assert info.value.code == 403


@pytest.mark.parametrize("endpoint", ["export", "schedules"])
async def test_posts_without_a_valid_token_get_403(jp_fetch: Any, jp_root_dir: Path, endpoint: str) -> None:
    _notebook(jp_root_dir / "a.ipynb")
    body = {"path": "a.ipynb", "name": "nightly", "cron": "@daily"}
    with pytest.raises(HTTPClientError) as info:
        await jp_fetch("dynpipe", "api", endpoint, method="POST", body=json.dumps(body),
                       headers={"Authorization": "token not-the-token"})
    assert info.value.code == 403
    assert not (jp_root_dir / "a_pipeline.py").exists()


async def test_unknown_runs_steps_and_bad_parameters_are_named(jp_fetch: Any) -> None:
    run = etl()
    for parts, code, words in [
        (("runs", "nope"), 404, "no run 'nope'"),
        (("runs", run.id, "steps", "nope", "logs"), 404, "has no step 'nope'"),
        (("artifacts", "nope"), 404, "no artifact 'nope'"),
    ]:
        with pytest.raises(HTTPClientError) as info:
            await jp_fetch("dynpipe", "api", *parts)
        assert info.value.code == code and words in str(info.value.message)
    with pytest.raises(HTTPClientError) as info:
        await jp_fetch("dynpipe", "api", "runs", params={"per_page": "lots"})
    assert info.value.code == 400 and "'per_page'" in str(info.value.message)


def _notebook(path: Path, parameters: str = "") -> None:
    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_code_cell(
            "%load_ext dynpipe\nfrom dynpipe import step\n\n@step\ndef one() -> int:\n    return 1"
        ),
        nbformat.v4.new_code_cell("%%pipeline nbpipe\nx = one()"),
    ]
    if parameters:
        nb.cells.insert(1, nbformat.v4.new_code_cell(parameters, metadata={"tags": ["parameters"]}))
    nbformat.write(nb, path)


async def test_export_writes_the_pipeline_module_beside_the_notebook(jp_fetch: Any, jp_root_dir: Path) -> None:
    (jp_root_dir / "work").mkdir()
    _notebook(jp_root_dir / "work" / "flow.ipynb")
    response = await jp_fetch("dynpipe", "api", "export", method="POST", body=json.dumps({"path": "work/flow.ipynb"}))
    assert json.loads(response.body)["path"] == "work/flow_pipeline.py"
    source = (jp_root_dir / "work" / "flow_pipeline.py").read_text()
    assert "@pipeline(dynamic=True, name='nbpipe')" in source and "x = one()" in source
    compile(source, "flow_pipeline.py", "exec")


async def test_export_refuses_paths_outside_the_root_and_non_notebooks(
    jp_fetch: Any, jp_root_dir: Path, tmp_path: Path
) -> None:
    outside = tmp_path / "outside.ipynb"
    _notebook(outside)
    (jp_root_dir / "link.ipynb").symlink_to(outside)
    for body, code, words in [
        ({"path": "../outside.ipynb"}, 403, "outside the server root"),
        ({"path": "link.ipynb"}, 403, "outside the server root"),
        ({"path": "/etc/passwd"}, 400, "must name a .ipynb"),
        ({"path": "missing.ipynb"}, 404, "'missing.ipynb' does not exist"),
        ({}, 400, "'path' must name"),
    ]:
        with pytest.raises(HTTPClientError) as info:
            await jp_fetch("dynpipe", "api", "export", method="POST", body=json.dumps(body))
        assert info.value.code == code and words in str(info.value.message), (body, info.value)
    assert not (tmp_path / "outside_pipeline.py").exists()


def test_dag_payload_of_a_live_graph_has_the_documented_shape() -> None:
    graph = RunGraph("rid", "etl-1", "etl")
    a = graph.add_node("load", "load", [], "inline")
    b = graph.add_node("total", "total", ["load", "elsewhere"], "inline")
    graph.update(a, status="completed", start=10.0, end=12.5, attempts=1)
    graph.update(b, status="failed", error="ValueError: no", attempts=2)
    payload = dag_payload(graph)
    assert MIME_TYPE == "application/vnd.dynpipe.dag+json"
    assert payload["version"] == 1
    assert payload["run"] == {"id": "rid", "name": "etl-1", "pipeline": "etl", "status": "running"}
    assert payload["nodes"][0] == {
        "id": "load", "label": "load", "step": "load", "status": "completed", "duration": 2.5,
        "attempts": 1, "cached": False, "error": None, "upstream": [],
    }
    assert payload["nodes"][1]["upstream"] == ["load"]  # edges to nodes outside the payload are dropped
    assert payload["nodes"][1]["error"] == "ValueError: no"
    json.dumps(payload)
    assert [n["duration"] for n in dag_payload(graph, timings=False)["nodes"]] == [None, None]
    # One cell's part of the DAG: edges to nodes of other cells are dropped.
    part = nodes_payload([b], run_id="rid", run_name="etl-1", pipeline="etl", status="completed")
    assert part["run"]["status"] == "completed" and part["nodes"][0]["upstream"] == []
    with pytest.raises(TypeError, match="expected a PipelineRun or a RunGraph, got int"):
        dag_payload(3)  # type: ignore[arg-type]


async def test_schedule_preview_lists_next_fire_times_or_says_what_is_wrong(jp_fetch: Any) -> None:
    data = await get_json(jp_fetch, "schedules", "preview", cron="@daily", timezone="Europe/Berlin", count="3")
    assert data["cron"] == "0 0 * * *" and data["timezone"] == "Europe/Berlin"
    times = [datetime.fromisoformat(f["utc"]) for f in data["next"]]
    assert len(times) == 3 and times[0] > datetime.now(timezone.utc)
    assert all(timedelta(hours=23) <= b - a <= timedelta(hours=25) for a, b in itertools.pairwise(times))  # DST
    assert all(f["local"].endswith((" 00:00 CET", " 00:00 CEST")) for f in data["next"])
    for params, words in [
        ({"cron": "0 3 * *"}, "has 4 fields; give five"),
        ({"cron": "61 * * * *"}, "is not valid"),
        ({"cron": "@daily", "timezone": "Mars/Olympus"}, "unknown time zone 'Mars/Olympus'"),
        ({"cron": "@daily", "count": "500"}, "'count' must be in 1..20"),
    ]:
        with pytest.raises(HTTPClientError) as info:
            await jp_fetch("dynpipe", "api", "schedules", "preview", params=params)
        assert info.value.code == 400 and words in str(info.value.message), (params, info.value)


async def test_a_notebook_is_scheduled_with_its_parameters_and_listed(jp_fetch: Any, jp_root_dir: Path) -> None:
    from dynpipe.store.schedules import ScheduleStore

    (jp_root_dir / "work").mkdir()
    _notebook(jp_root_dir / "work" / "flow.ipynb", parameters="rows = 5\nlabel = 'demo'")
    got = await get_json(jp_fetch, "notebook-parameters", path="work/flow.ipynb")
    assert [(p["name"], p["value"]) for p in got["parameters"]] == [("rows", "5"), ("label", "demo")]

    body = {"path": "work/flow.ipynb", "name": "nightly-flow", "cron": "30 2 * * *", "timezone": "Europe/Berlin",
            "params": {"rows": "7"}, "target": "local"}
    response = await jp_fetch("dynpipe", "api", "schedules", method="POST", body=json.dumps(body))
    created = json.loads(response.body)
    assert created["module"] == "work/flow_pipeline.py" and created["params"] == {"rows": "7"}
    assert created["next"].endswith((" 02:30 CET", " 02:30 CEST"))
    assert "x = one()" in (jp_root_dir / "work" / "flow_pipeline.py").read_text()
    store = ScheduleStore(Client().store.root)
    try:
        record = store.get("nightly-flow")
    finally:
        store.close()
    assert (record.cron, record.timezone, record.module) == (
        "30 2 * * *", "Europe/Berlin", str((jp_root_dir / "work" / "flow_pipeline.py").resolve())
    )
    listed = (await get_json(jp_fetch, "schedules"))["schedules"]
    assert [(s["name"], s["state"], s["params"]) for s in listed] == [("nightly-flow", "active", {"rows": "7"})]
    assert listed[0]["next"] == created["next"]

    for change, code, words in [
        ({}, 409, "a schedule named 'nightly-flow' already exists"),
        ({"name": "other", "cron": "0 3 * *"}, 400, "has 4 fields"),
        ({"name": "other", "params": {"nope": "1"}}, 400, "nope"),
        ({"name": "other", "target": "kubernetes"}, 400, "target 'kubernetes' is not supported"),
        ({"name": "../x"}, 400, "schedule name '../x'"),
        ({"path": "../flow.ipynb"}, 403, "outside the server root"),
    ]:
        with pytest.raises(HTTPClientError) as info:
            await jp_fetch("dynpipe", "api", "schedules", method="POST", body=json.dumps({**body, **change}))
        assert info.value.code == code and words in str(info.value.message), (change, info.value)
    assert [s["name"] for s in (await get_json(jp_fetch, "schedules"))["schedules"]] == ["nightly-flow"]
