"""A failing step's error, as a notebook user sees it in a real kernel (jupyter_client).

The cell that waits on a step skipped because an upstream step failed raises the upstream
step's own exception (type, message, the user's frames named ``Cell In[N]``), once, with a
note naming the step that raised it and what was skipped; retried failures list each
distinct error once with its attempt numbers.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
from test_notebook_kernel import Kernel, stdout

pytestmark = pytest.mark.timeout(180)

SETUP = '''
import os
os.environ["DYNPIPE_HOME"] = {home!r}
%load_ext dynpipe
from dynpipe import step, Client
from dynpipe.config import StepRetryConfig

@step(enable_cache=False)
def add(xs: list[int]) -> int:
    return sum(xs)

@step(enable_cache=False)
def boom() -> int:
    raise ValueError("boom in the user's step")

calls = []

@step(enable_cache=False, retry=StepRetryConfig(max_retries=2, delay=0))
def flaky() -> int:
    calls.append(1)
    if len(calls) < 3:
        raise KeyError("first kind")
    raise RuntimeError("second kind")
'''


@pytest.fixture(scope="module")
def kernel(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Kernel]:
    k = Kernel()
    home = tmp_path_factory.mktemp("kernel-errors")
    reply, _ = k.execute(SETUP.format(home=str(home)))
    assert reply["status"] == "ok", reply
    yield k
    k.close()


def shown_error(msgs: list[dict[str, Any]]) -> str:
    (error,) = [m["content"] for m in msgs if m["msg_type"] == "error"]
    return re.sub(r"\x1b\[[0-9;]*m", "", "\n".join(error["traceback"]))


def everything_shown(msgs: list[dict[str, Any]]) -> str:
    """All text the cell put on screen: error traceback, streams, displays."""
    parts = [stdout(msgs)]
    for m in msgs:
        if m["msg_type"] == "error":
            parts.append("\n".join(m["content"]["traceback"]))
        elif m["msg_type"] == "stream" and m["content"]["name"] == "stderr":
            parts.append(m["content"]["text"])
        elif m["msg_type"] in ("display_data", "execute_result"):
            parts.append(str(m["content"]["data"].get("text/plain", "")))
    return re.sub(r"\x1b\[[0-9;]*m", "", "\n".join(parts))


def test_a_step_skipped_after_a_failure_raises_the_original_error(kernel: Kernel) -> None:
    reply, msgs = kernel.execute("%%pipeline skipped --no-widget\na = boom.submit()\nb = add([a])")
    assert reply["status"] == "error", reply
    assert reply["ename"] == "ValueError" and reply["evalue"] == "boom in the user's step"
    shown = shown_error(msgs)
    assert f"Cell In[{reply['execution_count']}]" in shown
    assert "raise ValueError(\"boom in the user's step\")" in shown
    assert "dynpipe/" not in shown and "concurrent/futures" not in shown and "StepSkippedError" not in shown
    assert "raised by step 'boom'; skipped because of it: 'add'" in shown
    # Printed once: the traceback's raising line is on screen a single time.
    assert everything_shown(msgs).count("raise ValueError(") == 1
    # The node's details (the click panel) name the cell as the cell's error does.
    reply, msgs = kernel.execute(
        "print(get_ipython().dynpipe_extension.sessions.get('skipped').ctx.graph.nodes['boom'].traceback)"
    )
    panel = stdout(msgs)
    assert "Cell In[1]" in panel and "raise ValueError" in panel, panel
    assert "ipykernel_" not in panel and "dynpipe/" not in panel, panel
    # Waiting on the failed step's own future, twice: the same error, no frames of the first wait.
    for _ in range(2):
        reply, msgs = kernel.execute("%%pipeline skipped --no-widget\na.result()")
        assert reply["ename"] == "ValueError", reply
        shown = shown_error(msgs)
        # The magic line, the cell body, the cell defining the step: no frames of earlier waits.
        assert shown.count("Cell In[") == 3
        assert f"Cell In[{reply['execution_count'] - 1}]" not in shown
        assert "skipped because of it" not in shown  # this wait is on the step that raised
    kernel.execute("%pipeline end skipped")


def test_a_chain_of_skips_names_every_skipped_step(kernel: Kernel) -> None:
    reply, msgs = kernel.execute(
        "%%pipeline chain --no-widget --mode continue_on_failure\n"
        "a = boom.submit()\nb = add.submit([a])\nc = add([b])"
    )
    assert reply["ename"] == "ValueError", reply
    assert "raised by step 'boom'; skipped because of it: 'add', 'add_2'" in shown_error(msgs)
    kernel.execute("%pipeline end chain")


def test_retried_failure_lists_each_distinct_error_once_with_attempts(kernel: Kernel) -> None:
    reply, msgs = kernel.execute("%%pipeline retried --no-widget\nflaky()")
    assert reply["ename"] == "RuntimeError" and reply["evalue"] == "second kind", reply
    shown = shown_error(msgs)
    assert "step 'flaky' failed 3 attempts:" in shown
    assert "attempts 1, 2: KeyError: 'first kind'" in shown and "attempt 3: RuntimeError: second kind" in shown
    assert shown.count("KeyError: 'first kind'") == 1
    assert "dynpipe/" not in shown
    reply, msgs = kernel.execute(
        "s = Client().get_pipeline('retried').runs[0].steps['flaky']\nprint(s.status, s.attempts)"
    )
    assert stdout(msgs).split() == ["failed", "3"], stdout(msgs)
    # The node's details say the same: three attempts, each distinct error once.
    reply, msgs = kernel.execute(
        "node = get_ipython().dynpipe_extension.sessions.get('retried').ctx.graph.nodes['flaky']\n"
        "print(node.attempts)\nprint(node.traceback)"
    )
    attempts, panel = stdout(msgs).split("\n", 1)
    assert attempts == "3" and "attempts 1, 2: KeyError: 'first kind'" in panel, stdout(msgs)
    assert panel.count("KeyError: 'first kind'") == 1, panel
    kernel.execute("%pipeline end retried")
