"""Step futures share their run's condition; step and artifact ids are cheap and unique."""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import re
import threading
import time

import pytest

from dynpipe.futures import SharedConditionFuture
from dynpipe.store.ids import IdMaker


def test_a_waiter_woken_for_another_future_keeps_waiting_for_its_own() -> None:
    cond = threading.Condition()
    mine, other = SharedConditionFuture(cond), SharedConditionFuture(cond)
    got: list[object] = []
    waiting = threading.Event()

    def wait_mine() -> None:
        waiting.set()
        got.append(mine.result(timeout=30))

    t = threading.Thread(target=wait_mine)
    t.start()
    assert waiting.wait(10)
    other.set_result("other")  # wakes the waiter, which must not return or time out
    assert other.result(0) == "other"
    mine.set_result("mine")
    t.join(30)
    assert got == ["mine"]


@pytest.mark.parametrize("fail", [False, True])
def test_a_thread_already_waiting_is_woken_when_the_future_finishes(fail: bool) -> None:
    # set_result/set_exception notify only when a thread waits: one surely does here.
    cond = threading.Condition()
    future = SharedConditionFuture(cond)
    got: list[object] = []
    t = threading.Thread(target=lambda: got.append(future.exception(timeout=30) if fail else future.result(30)))
    t.start()
    deadline = time.monotonic() + 10
    while True:  # until the thread waits on the condition (it registers under the lock)
        with cond:
            if cond._waiters:  # type: ignore[attr-defined]
                break
        assert time.monotonic() < deadline, "the thread never waited"
        time.sleep(0.001)
    error = ValueError("boom")
    future.set_exception(error) if fail else future.set_result("done")
    t.join(10)
    assert not t.is_alive(), "the waiting thread was not woken"
    assert got == [error if fail else "done"]


def test_timeouts_errors_and_cancellation_as_the_stock_future() -> None:
    cond = threading.Condition()
    f = SharedConditionFuture(cond)
    with pytest.raises(concurrent.futures.TimeoutError):
        f.result(timeout=0.01)
    with pytest.raises(concurrent.futures.TimeoutError):
        f.exception(timeout=0)
    failed = SharedConditionFuture(cond)
    failed.set_exception(ValueError("boom"))
    assert isinstance(failed.exception(), ValueError)
    with pytest.raises(ValueError, match="boom"):
        failed.result()
    assert f.cancel() and f.cancelled()
    with pytest.raises(concurrent.futures.CancelledError):
        f.result()


def test_stock_helpers_work_on_shared_condition_futures() -> None:
    cond = threading.Condition()
    futures = [SharedConditionFuture(cond) for _ in range(5)]
    seen: list[int] = []
    futures[0].add_done_callback(lambda f: seen.append(f.result()))
    for i, f in enumerate(futures):
        threading.Thread(target=f.set_result, args=(i,)).start()
    done, not_done = concurrent.futures.wait(futures, timeout=30)
    assert len(done) == 5 and not not_done
    assert sorted(f.result() for f in concurrent.futures.as_completed(futures, timeout=30)) == [0, 1, 2, 3, 4]
    assert seen == [0]
    assert not futures[0]._done_callbacks  # run once, not kept
    futures[0].add_done_callback(lambda f: seen.append(f.result()))  # added when done: runs at once
    assert seen == [0, 0]

    async def awaited() -> object:
        f = SharedConditionFuture(cond)
        asyncio.get_running_loop().call_soon(f.set_result, "async")
        return await asyncio.wrap_future(f)

    assert asyncio.run(awaited()) == "async"


def test_ids_are_32_hex_unique_in_time_order_and_differ_after_fork() -> None:
    ids = IdMaker()
    made = [ids.new() for _ in range(10_000)]
    assert all(re.fullmatch(r"[0-9a-f]{32}", i) for i in made)
    assert len(set(made)) == len(made)
    assert [m[:16] for m in made] == sorted(m[:16] for m in made)  # inserts land at the index's end
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child's ids must not repeat the parent's random part
        os.write(write, ids.new()[16:].encode())
        os._exit(0)
    os.waitpid(pid, 0)
    child_tail = os.read(read, 64).decode()
    os.close(read)
    os.close(write)
    assert len(child_tail) == 16 and child_tail != ids.new()[16:]


def test_finished_steps_drop_their_inputs_and_share_one_condition() -> None:
    from dynpipe import pipeline, step
    from dynpipe.engine.context import current_run
    from dynpipe.engine.invocation import NO_INPUTS

    @step
    def make(i: int) -> int:
        return i

    @step
    def add(a: int, b: int) -> int:
        return a + b

    seen: dict[str, object] = {}

    @pipeline(dynamic=True, enable_cache=False)
    def flow() -> None:
        a, b = make.submit(1), make.submit(2)
        c = add.submit(a, b)
        assert c.load(timeout=30) == 3
        ctx = current_run()
        assert ctx is not None
        seen["ctx"] = ctx

    flow()
    ctx = seen["ctx"]
    invocations = ctx.invocations  # type: ignore[attr-defined]
    assert len(invocations) == 3
    assert len({id(inv.future._condition) for inv in invocations}) == 1
    for inv in invocations:  # recorded and resolved: nothing of its inputs is kept
        assert inv.sources is NO_INPUTS and inv.input_refs is NO_INPUTS and inv.input_ids is NO_INPUTS
        assert not inv.deps
    adder = invocations[2]
    ids = [inv.future.result()["output"].id for inv in invocations[:2]]
    assert adder.upstream == ["make", "make_2"]
    assert adder.node.inputs == {"a": ids[0], "b": ids[1]}  # what the DAG view shows stays


def test_waiter_lists_are_made_only_for_futures_someone_waits_on() -> None:
    cond = threading.Condition()
    alone, done, failing = (SharedConditionFuture(cond) for _ in range(3))
    alone.set_result(1)
    assert alone._waiter_list is None  # nobody waited: no list was made
    done.set_result(2)
    started = threading.Event()
    outcome: list[object] = []

    def wait_first_exception() -> None:
        started.set()
        outcome.append(concurrent.futures.wait([done, failing], timeout=30, return_when="FIRST_EXCEPTION"))

    t = threading.Thread(target=wait_first_exception)
    t.start()
    assert started.wait(10)
    deadline = time.monotonic() + 30
    while failing._waiter_list is None and time.monotonic() < deadline:  # the waiter is in place
        time.sleep(0.001)
    failing.set_exception(ValueError("boom"))  # wakes the waiter through its list
    t.join(30)
    finished, pending = outcome[0]  # type: ignore[misc]
    assert finished == {done, failing} and not pending
    assert failing._waiter_list == [] and done._waiter_list == []  # removed again
