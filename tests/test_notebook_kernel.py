"""The %%pipeline magics and the live widget in a real IPython kernel (jupyter_client/nbclient).

We read the kernel's iopub messages ourselves: that is where widget state updates (comm
messages) and display updates travel, including those sent from background threads after
a cell has returned.
"""

from __future__ import annotations

import queue
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import nbformat
import pytest
from jupyter_client.manager import start_new_kernel

pytestmark = pytest.mark.timeout(180)

WIDGET_MIME = "application/vnd.jupyter.widget-view+json"

SETUP = '''
import os, threading, time
os.environ["DYNPIPE_HOME"] = {home!r}
%load_ext dynpipe
from dynpipe import step, Client

release = threading.Event()

@step(enable_cache=False)
def slow(i: int) -> int:
    time.sleep({sleep})
    return i * 10

@step(enable_cache=False)
def held(i: int) -> int:
    """Runs until a later cell sets `release`: what a test sees before that, it saw running."""
    assert release.wait(120), "the test never set release"
    return i * 10

@step(enable_cache=False)
def add(xs: list[int]) -> int:
    return sum(xs)

@step(enable_cache=False)
def boom() -> int:
    raise ValueError("boom")
'''


class Kernel:
    """A real kernel plus a log of every iopub message we have read."""

    def __init__(self) -> None:
        self.km, self.kc = start_new_kernel(kernel_name="python3")
        self.log: list[dict[str, Any]] = []

    def execute(self, code: str, timeout: float = 60) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        """Run a cell; return its execute_reply content and the iopub messages until idle."""
        msg_id = self.kc.execute(code)
        msgs: list[dict[str, Any]] = []
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                msg = self.kc.get_iopub_msg(timeout=1)
            except queue.Empty:
                continue
            self.log.append(msg)
            mine = msg["parent_header"].get("msg_id") == msg_id
            if mine and msg["msg_type"] == "status" and msg["content"]["execution_state"] == "idle":
                break
            msgs.append(msg)
        else:
            raise TimeoutError(f"cell did not finish: {code[:80]!r}")
        return self.reply_to(msg_id)["content"], msgs

    def reply_to(self, msg_id: str, timeout: float = 60) -> dict[str, Any]:
        """The shell reply to ``msg_id``. Replies to other requests are skipped: on a loaded
        machine ``wait_for_ready`` may have sent a second kernel_info request whose reply
        would otherwise be taken for the next cell's."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                reply = self.kc.get_shell_msg(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                raise TimeoutError(f"no shell reply to {msg_id} within {timeout}s") from None
            if reply["parent_header"].get("msg_id") == msg_id:
                return reply

    def drain(self, until: Any, timeout: float = 30) -> list[dict[str, Any]]:
        """Read iopub without running anything until ``until(msg)`` is true."""
        seen: list[dict[str, Any]] = []
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                msg = self.kc.get_iopub_msg(timeout=0.5)
            except queue.Empty:
                continue
            self.log.append(msg)
            seen.append(msg)
            if until(msg):
                return seen
        raise TimeoutError(f"condition not met in {timeout}s; saw {[m['msg_type'] for m in seen]}")

    def close(self) -> None:
        self.kc.stop_channels()
        self.km.shutdown_kernel(now=True)


@pytest.fixture(scope="module")
def kernel(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Kernel]:
    k = Kernel()
    home = tmp_path_factory.mktemp("kernel-store")
    reply, _ = k.execute(SETUP.format(home=str(home), sleep=1.0))
    assert reply["status"] == "ok", reply
    yield k
    k.close()


def stdout(msgs: list[dict[str, Any]]) -> str:
    return "".join(
        m["content"]["text"] for m in msgs if m["msg_type"] == "stream" and m["content"]["name"] == "stdout"
    )


def displays(msgs: list[dict[str, Any]], kind: str = "display_data") -> list[dict[str, Any]]:
    return [m["content"] for m in msgs if m["msg_type"] == kind]


def widget_of(msgs: list[dict[str, Any]]) -> tuple[str, str]:
    """(model id, display id) of the live widget a cell displayed."""
    for content in displays(msgs):
        if WIDGET_MIME in content["data"]:
            return content["data"][WIDGET_MIME]["model_id"], content["transient"]["display_id"]
    raise AssertionError("the cell displayed no live widget")


def statuses_in(msg: dict[str, Any], model_id: str) -> dict[str, str]:
    if msg["msg_type"] != "comm_msg" or msg["content"]["comm_id"] != model_id:
        return {}
    details = msg["content"]["data"].get("state", {}).get("details") or {}
    return {d["id"]: d["status"] for d in details.values() if d.get("kind") == "node"}


def test_two_cells_form_one_run_and_a_future_crosses_cells(kernel: Kernel) -> None:
    reply, msgs = kernel.execute("%%pipeline two_cells\nfirst = slow.submit(1)\nsecond = slow.submit(2)")
    assert reply["status"] == "ok", reply
    widget_of(msgs)
    reply, msgs = kernel.execute(
        "%%pipeline two_cells\ntotal = add([first, second])\nprint('total', total.load())"
    )
    assert reply["status"] == "ok", reply
    assert "total 30" in stdout(msgs)
    reply, msgs = kernel.execute("%pipeline status")
    assert "two_cells" in stdout(msgs) and "3/3 steps done" in stdout(msgs)
    reply, msgs = kernel.execute("%pipeline end two_cells")
    assert "completed; 3 completed" in stdout(msgs)
    reply, msgs = kernel.execute(
        "runs = Client().get_pipeline('two_cells').runs\n"
        "print(len(runs), runs[0].status, sorted(runs[0].steps))"
    )
    assert "1 completed ['add', 'slow', 'slow_2']" in stdout(msgs)
    # a kernel that was not told its notebook (not started by jupyter_server) says "notebook"
    reply, msgs = kernel.execute("print('origin', Client().get_pipeline('two_cells').last_run.origin)")
    assert "origin notebook\n" in stdout(msgs)


def test_widget_gets_updates_from_background_threads_after_the_cell_returned(kernel: Kernel) -> None:
    kernel.execute("release.clear()")
    reply, msgs = kernel.execute("%%pipeline live\nfs = [held.submit(i) for i in range(3)]")
    assert reply["status"] == "ok"
    model_id, display_id = widget_of(msgs)
    during = [statuses_in(m, model_id) for m in msgs]
    assert not any(s and all(v == "completed" for v in s.values()) for s in during), \
        "held steps cannot have completed before the cell returned"

    # The cell is done (kernel idle); once released, the engine finishes the steps in
    # background threads and the widget's model must still receive the new statuses.
    reply, _ = kernel.execute("release.set()")
    assert reply["status"] == "ok", reply
    def all_completed(msg: dict[str, Any]) -> bool:
        s = statuses_in(msg, model_id)
        return len(s) == 3 and all(v == "completed" for v in s.values())

    after = kernel.drain(all_completed, timeout=30)
    assert any(statuses_in(m, model_id) for m in after)
    # The newest cell of an open run keeps its live view: no snapshot yet.
    assert not [c for c in displays(after, "update_display_data") if c["transient"]["display_id"] == display_id]

    # Ending the run replaces the live widget with the static snapshot bundle.
    reply, msgs = kernel.execute("%pipeline end live")
    updates = [c for c in displays(msgs, "update_display_data") if c["transient"]["display_id"] == display_id]
    assert updates, "the live widget was not replaced by a snapshot"
    data = updates[-1]["data"]
    assert WIDGET_MIME not in data
    assert data["image/svg+xml"].startswith("<svg") and "held" in data["image/svg+xml"]
    assert "image/png" not in data  # the SVG is enough, and a PNG per cell weighs most of a notebook
    assert data["text/plain"] == "dynpipe run 'live' (completed): 3 steps — 3 completed\n  held ×3    3 completed"
    assert any(m["msg_type"] == "comm_close" and m["content"]["comm_id"] == model_id for m in msgs)


def test_older_cell_is_frozen_when_a_newer_cell_of_the_run_runs(kernel: Kernel) -> None:
    reply, msgs = kernel.execute("%%pipeline freeze\nx = add([1, 2])")
    _, first_display = widget_of(msgs)
    reply, msgs = kernel.execute("%%pipeline freeze\ny = add([x.load(), 3])\nprint(y.load())")
    assert "6" in stdout(msgs)
    _, second_display = widget_of(msgs)
    frozen = [c for c in displays(msgs, "update_display_data") if c["transient"]["display_id"] == first_display]
    assert frozen and "image/svg+xml" in frozen[0]["data"]
    assert frozen[0]["data"]["text/plain"].startswith("dynpipe run 'freeze' (open): 1 step")
    # ...and the newest cell too once its steps are done, though its run is still open: a
    # widget view left in the output would say "model not found" in a notebook reopened
    # without its kernel (JupyterLab does not fall back to the SVG beside it).
    newest = [c for c in displays(msgs, "update_display_data") if c["transient"]["display_id"] == second_display]
    assert newest and WIDGET_MIME not in newest[-1]["data"]
    assert "image/svg+xml" in newest[-1]["data"]
    # y got x's value, not x: the first cell's step is unrelated and not drawn again.
    assert newest[-1]["data"]["text/plain"] == (
        "dynpipe run 'freeze' (open): 1 step — 1 completed\n  add       completed"
    )
    assert 'id="dp-n-add_2"' in newest[-1]["data"]["image/svg+xml"].replace("&#45;", "-")
    kernel.execute("%pipeline end freeze")


def test_step_failure_shows_as_an_error_and_the_run_stays_usable(kernel: Kernel) -> None:
    reply, msgs = kernel.execute("%%pipeline errs --mode continue_on_failure\nboom()")
    assert reply["status"] == "error" and reply["ename"] == "ValueError"
    (error,) = [m["content"] for m in msgs if m["msg_type"] == "error"]
    shown = re.sub(r"\x1b\[[0-9;]*m", "", "\n".join(error["traceback"]))  # no colours
    # The traceback leads from the cell (numbered like its prompt) to the raising line.
    assert f"In[{reply['execution_count']}]" in shown and 'raise ValueError("boom")' in shown
    assert "dynpipe/engine/" not in shown and "dynpipe/futures.py" not in shown and "concurrent/futures" not in shown
    reply, msgs = kernel.execute("%%pipeline errs\nprint(add([4, 5]).load())")
    assert reply["status"] == "ok" and "9" in stdout(msgs)
    reply, msgs = kernel.execute("%pipeline end errs")
    assert "failed; 1 completed, 1 failed" in stdout(msgs)


def test_top_level_await_last_expression_and_no_widget(kernel: Kernel) -> None:
    reply, msgs = kernel.execute(
        "%%pipeline awaiting --no-widget\nf = slow.submit(7)\nr = await f\nr.load() + 1"
    )
    assert reply["status"] == "ok", reply
    assert not any(WIDGET_MIME in c["data"] for c in displays(msgs))
    results = [m["content"]["data"]["text/plain"] for m in msgs if m["msg_type"] == "execute_result"]
    assert results == ["71"]
    reply, msgs = kernel.execute("r2 = await f\nprint(r2.load())")  # outside the magic too
    assert "70" in stdout(msgs)
    kernel.execute("%pipeline end awaiting")


def test_new_finishes_the_open_run_and_bad_input_is_named(kernel: Kernel) -> None:
    kernel.execute("%%pipeline again --no-widget\na = add([1])")
    reply, msgs = kernel.execute("%%pipeline again --new --no-widget\nb = add([2])")
    assert "completed; 1 completed" in stdout(msgs)
    kernel.execute("%pipeline end again")
    reply, msgs = kernel.execute("print(len(Client().get_pipeline('again').runs))")
    assert stdout(msgs).strip() == "2"
    reply, _ = kernel.execute("%%pipeline badmode --mode sometimes\npass")
    assert reply["status"] == "error" and "sometimes" in reply["evalue"]
    reply, _ = kernel.execute("%pipeline end nosuchrun")
    assert reply["status"] == "error" and "nosuchrun" in reply["evalue"]


def test_nbclient_saves_snapshots_not_widgets(tmp_path: Path) -> None:
    """A notebook executed headless (nbclient, as nbconvert does) keeps the final DAG; its run
    records the notebook it came from, which ``runs list`` shows."""
    import os
    import subprocess
    import sys

    import nbclient

    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_code_cell(SETUP.format(home=str(tmp_path / "store"), sleep=0.2)),
        nbformat.v4.new_code_cell("%%pipeline saved\nfs = [slow.submit(i) for i in range(15)]"),
        nbformat.v4.new_code_cell("%%pipeline saved\nprint(add(fs).load())"),
        nbformat.v4.new_code_cell("%pipeline end saved"),
    ]
    path = tmp_path / "notebooks" / "saved_analysis.ipynb"
    path.parent.mkdir()
    nbformat.write(nb, path)
    nb = nbformat.read(path, as_version=4)
    # jupyter_server tells a kernel its notebook this way; ipykernel makes it `__session__`
    env = {**os.environ, "JPY_SESSION_NAME": str(path)}
    nbclient.NotebookClient(nb, timeout=120, kernel_name="python3").execute(env=env)
    listed = subprocess.run(
        [sys.executable, "-m", "dynpipe.cli", "runs", "list", "--pipeline", "saved"],
        capture_output=True, text=True, timeout=60, check=True,
    ).stdout
    header, row = listed.strip().splitlines()
    assert header.split()[-1] == "ORIGIN" and row.endswith("  …/saved_analysis.ipynb"), listed
    bundles = [o["data"] for c in nb.cells[1:3] for o in c.outputs if o["output_type"] == "display_data"]
    assert len(bundles) == 2
    for data in bundles:
        assert WIDGET_MIME not in data and "image/svg+xml" in data and "image/png" not in data
    assert bundles[-1]["text/plain"] == (
        "dynpipe run 'saved' (completed): 16 steps — 16 completed\n"
        "  slow ×15   15 completed\n"
        "  add        completed"
    )
    # 15 siblings are over the group threshold: one group node in the picture.
    assert "slow ×15" in bundles[-1]["image/svg+xml"]


def test_open_runs_are_finished_when_the_kernel_shuts_down(tmp_path: Path) -> None:
    from dynpipe import Client

    home = tmp_path / "store"
    k = Kernel()
    try:
        reply, _ = k.execute(SETUP.format(home=str(home), sleep=0.1))
        assert reply["status"] == "ok"
        k.execute("%%pipeline left_open --no-widget\ndone = slow(1)")
        k.execute("%%pipeline still_running --no-widget\nf = held.submit(0)")
        assert Client(home).get_pipeline("left_open").last_run.status == "running"
        k.kc.stop_channels()
        # A polite shutdown: the kernel runs its exit hooks. `held` never returns, so had
        # they waited for it, jupyter_client would have killed the kernel before they
        # recorded the runs (checked below).
        k.km.shutdown_kernel(now=False)
    finally:
        if k.km.is_alive():
            k.km.shutdown_kernel(now=True)
    assert Client(home).get_pipeline("left_open").last_run.status == "completed"
    # A step still running is not waited for: the run is recorded as stopped.
    stopped = Client(home).get_pipeline("still_running").last_run
    assert stopped.status == "stopped"
    assert stopped.steps["held"].status != "running"


def test_config_and_mode_options_build_the_run_config(tmp_path: Path) -> None:
    from dynpipe import ConfigError, ExecutionMode
    from dynpipe.notebook.magics import _config_for

    cfg = tmp_path / "run.yaml"
    cfg.write_text("enable_cache: false\nexecution_mode: continue_on_failure\n")
    config = _config_for("nb", None, str(cfg))
    assert config.dynamic and not config.enable_cache and config.mode is ExecutionMode.CONTINUE_ON_FAILURE
    assert _config_for("nb", "fail_fast", str(cfg)).mode is ExecutionMode.FAIL_FAST
    with pytest.raises(ConfigError, match="missing.yaml"):
        _config_for("nb", None, str(tmp_path / "missing.yaml"))


def test_interrupting_a_pipeline_cell_stops_its_steps_and_the_run(tmp_path: Path) -> None:
    from dynpipe import Client

    home = tmp_path / "store"
    k = Kernel()
    try:
        reply, _ = k.execute(SETUP.format(home=str(home), sleep=0.1))
        assert reply["status"] == "ok", reply
        k.execute(
            "@step(runtime='isolated', enable_cache=False)\n"
            "def sleepy(i: int) -> int:\n    print('started', i, flush=True)\n    time.sleep(600)\n    return i\n"
            "@step(enable_cache=False)\n"
            "def sleepy_inline(i: int) -> int:\n    print('started', i, flush=True)\n    time.sleep(600)\n    return i"
        )
        msg_id = k.kc.execute(
            "%%pipeline interrupted --no-widget\n"
            "fs = [sleepy.submit(i) for i in range(2)] + [sleepy_inline.submit(9)]\n"
            "[f.wait() for f in fs]"
        )
        printed: list[str] = []

        def all_started(m: dict[str, Any]) -> bool:
            if m["msg_type"] == "stream":
                printed.append(m["content"]["text"])
            return "".join(printed).count("started") >= 3

        k.drain(all_started, timeout=60)  # the three steps are running
        k.km.interrupt_kernel()
        # The steps sleep 600 s: the reply comes before this deadline only if the
        # interrupt stopped them instead of waiting for them.
        reply = k.reply_to(msg_id, timeout=60)
        assert reply["content"]["status"] == "error" and reply["content"]["ename"] == "KeyboardInterrupt"
        run = Client(home).get_pipeline("interrupted").last_run
        assert run.status.value == "stopped"
        assert {s.status.value for s in run.steps.values()} == {"stopped"}
        # The next cell with that name starts a new run, which works.
        reply, _ = k.execute("%%pipeline interrupted --no-widget\nprint(slow(2).load())")
        assert reply["status"] == "ok", reply
        runs = Client(home).get_pipeline("interrupted").runs
        assert len(runs) == 2 and runs[0].id != run.id
        assert runs[0].steps["slow"].output.load() == 20
    finally:
        k.close()


def test_saved_notebook_size_grows_linearly_with_cells(tmp_path: Path) -> None:
    """Each older cell's picture holds only its own steps (and what fed them), and closed
    widgets leave no picture in the saved widget state."""
    import json

    import nbclient

    nb = nbformat.v4.new_notebook()
    cells = [nbformat.v4.new_code_cell(SETUP.format(home=str(tmp_path / "store"), sleep=0.01))]
    cells.append(nbformat.v4.new_code_cell("%%pipeline grow\nprev = slow(0)"))
    for i in range(1, 13):
        cells.append(nbformat.v4.new_code_cell(f"%%pipeline grow\nprev = add([prev, {i}])"))
    cells.append(nbformat.v4.new_code_cell("%pipeline end grow"))
    nb.cells = cells
    nbclient.NotebookClient(nb, timeout=120, kernel_name="python3").execute()
    svgs = [
        o["data"]["image/svg+xml"]
        for c in nb.cells[2:-2]
        for o in c.outputs
        if o["output_type"] == "display_data"
    ]
    assert len(svgs) == 11
    assert max(map(len, svgs)) < 1.5 * min(map(len, svgs)), [len(s) for s in svgs]
    # The last cell shows the whole run.
    last = [o["data"] for o in nb.cells[-2].outputs if o["output_type"] == "display_data"][0]
    assert last["text/plain"].startswith("dynpipe run 'grow' (completed): 13 steps")
    state = json.dumps(nb.metadata.get("widgets", {}))
    assert "<svg" not in state


def test_output_of_a_background_step_goes_to_the_cell_that_submitted_it(tmp_path: Path) -> None:
    k = Kernel()
    try:
        reply, _ = k.execute(SETUP.format(home=str(tmp_path / "store"), sleep=0.1))
        assert reply["status"] == "ok", reply
        gate = tmp_path / "print-now"
        # Both steps print only once a later cell created `gate`.
        k.execute(
            "def wait_for(path: str) -> None:\n"
            "    import os, time\n"
            "    end = time.monotonic() + 120\n"
            "    while not os.path.exists(path):\n"
            "        assert time.monotonic() < end, f'nobody created {path}'\n"
            "        time.sleep(0.01)\n"
            "@step(enable_cache=False)\n"
            "def late(tag: str, gate: str) -> str:\n    wait_for(gate)\n"
            "    print('late output', tag, flush=True)\n    return tag\n"
            "@step(runtime='isolated', enable_cache=False)\n"
            "def late_isolated(tag: str, gate: str) -> str:\n    wait_for(gate)\n"
            "    print('late output', tag, flush=True)\n    return tag"
        )
        first = k.kc.execute(
            f"%%pipeline routed --no-widget\nf = late.submit('inline', {str(gate)!r})\n"
            f"g = late_isolated.submit('isolated', {str(gate)!r})"
        )
        k.execute("%%pipeline routed --no-widget\npass")
        reply, _ = k.execute(f"y = 2\nopen({str(gate)!r}, 'w').close()\nf.wait()\ng.wait()")
        assert reply["status"] == "ok", reply

        def late_lines() -> list[dict[str, Any]]:
            return [m for m in k.log if m["msg_type"] == "stream" and "late output" in m["content"]["text"]]

        if len(late_lines()) < 2:
            k.drain(lambda _: len(late_lines()) >= 2, timeout=30)
        lines = late_lines()
        assert {("inline" in m["content"]["text"], "isolated" in m["content"]["text"]) for m in lines} >= {
            (True, False), (False, True),
        }
        # Both were printed while a later cell ran, and both belong to the submitting cell.
        assert all(m["parent_header"].get("msg_id") == first for m in lines), [
            (m["content"]["text"], m["parent_header"].get("msg_id") == first) for m in lines
        ]
    finally:
        k.close()


def test_after_a_failure_under_stop_on_failure_the_next_cell_starts_a_new_run(kernel: Kernel) -> None:

    reply, _ = kernel.execute("%%pipeline stops --no-widget\nboom()")
    assert reply["status"] == "error" and reply["ename"] == "ValueError"
    reply, msgs = kernel.execute("%pipeline status")
    assert "step 'boom' failed (stop_on_failure); the next %%pipeline stops cell starts a new run" in stdout(msgs)
    reply, msgs = kernel.execute("%%pipeline stops --no-widget\nprint(add([1, 1]).load())")
    assert reply["status"] == "ok", reply
    out = stdout(msgs)
    assert "(stops): failed; 1 failed" in out
    assert "this cell starts a new run 'stops'" in out and "2" in out
    reply, msgs = kernel.execute("%pipeline end stops\nprint(len(Client().get_pipeline('stops').runs))")
    assert reply["status"] == "ok", reply
    assert stdout(msgs).strip().endswith("2")


def test_repeating_the_same_mode_on_an_open_run_does_not_warn(kernel: Kernel) -> None:
    kernel.execute("%%pipeline same --mode continue_on_failure --no-widget\npass")
    _, msgs = kernel.execute("%%pipeline same --mode continue_on_failure --no-widget\npass")
    assert "already open" not in stdout(msgs)
    _, msgs = kernel.execute("%%pipeline same --mode fail_fast --no-widget\npass")
    assert "run 'same' is already open; --config/--mode apply when a run starts" in stdout(msgs)
    kernel.execute("%pipeline end same")
