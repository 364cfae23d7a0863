"""What a saved notebook keeps: every %%pipeline cell ends as a static picture, sent where
each frontend applies it (a real kernel, its iopub messages read directly).

JupyterLab applies ``update_display_data`` only in the output area of the request the
message answers; nbclient reads only the messages of the request it runs. A widget view
left in a saved output shows "Error displaying widget: model not found" once the kernel
is gone, so the newest cell of an open run is frozen too once its work is done.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from test_notebook_kernel import SETUP, WIDGET_MIME, Kernel, displays, widget_of

from dynpipe.server.dag_payload import MIME_TYPE as DAG_MIME

pytestmark = pytest.mark.timeout(180)


@pytest.fixture()
def kernel(tmp_path: Path) -> Iterator[Kernel]:
    k = Kernel()
    try:
        reply, _ = k.execute(SETUP.format(home=str(tmp_path / "store"), sleep=0.5))
        assert reply["status"] == "ok", reply
        yield k
    finally:
        k.close()


def updates_of(msgs: list[dict[str, Any]], display_id: str) -> list[dict[str, Any]]:
    return [
        m for m in msgs
        if m["msg_type"] == "update_display_data" and m["content"]["transient"]["display_id"] == display_id
    ]


def test_newest_cell_of_an_open_run_becomes_a_picture_answering_its_own_request(kernel: Kernel) -> None:
    first_id = kernel.kc.execute("%%pipeline saved_open\nf = slow.submit(1)")
    # The cell returns at once; its step finishes in the background, then the widget goes.
    seen = kernel.drain(lambda m: m["msg_type"] == "update_display_data", timeout=30)
    display_id = widget_of(seen)[1]
    (frozen,) = updates_of(seen, display_id)
    assert frozen["parent_header"]["msg_id"] == first_id
    assert WIDGET_MIME not in frozen["content"]["data"] and "image/svg+xml" in frozen["content"]["data"]
    assert frozen["content"]["data"]["text/plain"].startswith("dynpipe run 'saved_open' (open): 1 step")
    # Beside the SVG: the DAG payload the JupyterLab extension draws interactively.
    payload = frozen["content"]["data"][DAG_MIME]
    assert payload["run"]["pipeline"] == "saved_open" and payload["run"]["status"] == "open"
    assert [(n["step"], n["status"], n["upstream"]) for n in payload["nodes"]] == [("slow", "completed", [])]
    assert payload["nodes"][0]["duration"] is not None

    # A newer cell takes over the whole run: the first keeps its own part, re-sent both as a
    # reply to its own request (JupyterLab) and to the running one (nbclient).
    reply, msgs = kernel.execute("%%pipeline saved_open\ng = add([f])\nprint(g.load())")
    assert reply["status"] == "ok", reply
    second_id = next(m["parent_header"]["msg_id"] for m in msgs if m["msg_type"] == "execute_input")
    restamped = updates_of(msgs, display_id)
    assert {m["parent_header"]["msg_id"] for m in restamped} == {first_id, second_id}
    second_display = next(
        c["transient"]["display_id"] for c in displays(msgs) if WIDGET_MIME in c["data"]
    )
    newest = updates_of(msgs, second_display)
    assert newest and WIDGET_MIME not in newest[-1]["content"]["data"]
    assert newest[-1]["content"]["data"]["text/plain"].startswith("dynpipe run 'saved_open' (open): 2 steps")

    # Ending the run stamps its last picture with how it ended; the first keeps "open".
    reply, msgs = kernel.execute("%pipeline end saved_open")
    final = updates_of(msgs, second_display)
    assert final and final[-1]["content"]["data"]["text/plain"].startswith(
        "dynpipe run 'saved_open' (completed): 2 steps"
    )
    last = final[-1]["content"]["data"][DAG_MIME]
    assert last["run"]["status"] == "completed"
    assert [(n["step"], n["upstream"]) for n in last["nodes"]] == [("slow", []), ("add", [payload["nodes"][0]["id"]])]
    assert not updates_of(msgs, display_id)
