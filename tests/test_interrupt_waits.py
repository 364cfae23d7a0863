"""Pressing Stop while a cell waits for steps stops the run (a real kernel via jupyter_client).

Every wait is covered by a deadline: the interrupted cell must answer with KeyboardInterrupt
while its steps are still blocked, so a wait that swallowed the interrupt would never answer.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from test_notebook_kernel import SETUP, Kernel

from dynpipe import Client

pytestmark = pytest.mark.timeout(240)

BLOCKING = (
    "@step(enable_cache=False)\n"
    "def blocked(i: int) -> int:\n"
    "    print('started', i, flush=True)\n"
    "    time.sleep(600)\n"
    "    return i\n"
    "@step(enable_cache=False)\n"
    "def combine(xs: list[int]) -> int:\n"
    "    return sum(xs)\n"
)


def _interrupt_cell(k: Kernel, cell: str) -> dict:
    msg_id = k.kc.execute(cell)
    k.drain(lambda m: m["msg_type"] == "stream" and "started" in m["content"].get("text", ""), timeout=120)
    k.km.interrupt_kernel()
    return k.reply_to(msg_id, timeout=120)["content"]  # deadline: a swallowed interrupt never replies


@pytest.mark.parametrize(
    ("name", "cell"),
    [
        ("fanin", "fut = [blocked.submit(i) for i in range(200)]\ncombine(fut)"),
        ("direct", "combine([blocked.submit(1), blocked.submit(2)])"),
        ("result", "f = blocked.submit(1)\nf.result()"),
        ("load", "blocked.submit(1).load()"),
        ("mapped", "blocked.map(range(50)).wait()"),
    ],
)
def test_stop_while_a_cell_waits_for_steps_stops_the_run(tmp_path: Path, name: str, cell: str) -> None:
    home = tmp_path / "store"
    k = Kernel()
    try:
        reply, _ = k.execute(SETUP.format(home=str(home), sleep=0.1))
        assert reply["status"] == "ok", reply
        reply, _ = k.execute(BLOCKING)
        assert reply["status"] == "ok", reply
        content = _interrupt_cell(k, f"%%pipeline {name} --no-widget\n{cell}")
        assert content["status"] == "error" and content["ename"] == "KeyboardInterrupt", content
        run = Client(home).get_pipeline(name).last_run
        assert run.status.value == "stopped"
        statuses = {s.invocation_id: s.status.value for s in run.steps.values()}
        assert statuses and set(statuses.values()) <= {"stopped", "skipped"}, statuses
        assert statuses.get("combine", "stopped") in ("stopped", "skipped")
        # The kernel is free again: the next cell of that name starts a new run that works.
        reply, _ = k.execute(f"%%pipeline {name} --no-widget\nprint(slow(2).load())")
        assert reply["status"] == "ok", reply
    finally:
        k.close()
