"""Isolated steps on a real Dask cluster: two worker processes under nannies, as a LocalCluster
starts them, but unlike each other (5 threads and a 2 GB memory limit, 3 threads and 4 GB) so
that placement by ``nthreads`` and ``memory_limit`` has a choice to make.

The cluster is module-scoped (starting one costs seconds on a loaded 2-core machine); each
test hands its client over with ``use_dask`` and selects ``DYNPIPE_ISOLATED_BACKEND=dask``.
Steps defined at module level travel by import path (the spawned workers inherit sys.path);
concurrency is proven with file barriers, never with timing (eight steps inside a barrier
of eight need both workers' threads). The tests that kill a worker run last: the nanny
restarts it under a new address and without the resources earlier tests gave it.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import sys
import textwrap
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from helpers import DEADLINE, file_barrier, wait_until

distributed = pytest.importorskip("distributed")

from dynpipe import (  # noqa: E402 - after the skip: without distributed there is nothing to test
    Client,
    ConfigError,
    DaskSettings,
    ResourceSettings,
    StepRetryConfig,
    get_step_context,
    pipeline,
    step,
    use_dask,
)
from dynpipe.engine.context import current_run  # noqa: E402
from dynpipe.errors import SettingError, WorkerCrashedError  # noqa: E402
from dynpipe.runtimes import dask_placement, dask_runtime, get_runtime  # noqa: E402
from dynpipe.runtimes.dask_client import LOG_TOPIC  # noqa: E402
from dynpipe.runtimes.dask_runtime import DaskRuntime  # noqa: E402
from dynpipe.runtimes.dask_worker import can_read  # noqa: E402
from dynpipe.runtimes.local import shutdown_shared_runtime  # noqa: E402
from dynpipe.runtimes.shipping import func_ref  # noqa: E402

pytestmark = pytest.mark.timeout(180)


#: (nthreads, memory_limit) of the cluster's two workers.
WORKERS = ((5, 2_000_000_000), (3, 4_000_000_000))


@pytest.fixture(scope="module")
def dask_client() -> Iterator[Any]:
    # A LocalCluster's spec with one worker's options changed: LocalCluster gives all alike.
    def nanny(nthreads: int, memory_limit: int) -> dict[str, Any]:
        options = {"nthreads": nthreads, "memory_limit": memory_limit, "host": "127.0.0.1", "silence_logs": 50}
        return {"cls": distributed.Nanny, "options": {**options, "dashboard": False}}

    cluster = distributed.SpecCluster(
        scheduler={"cls": distributed.Scheduler, "options": {"host": "127.0.0.1", "dashboard": False}},
        workers={i: nanny(*w) for i, w in enumerate(WORKERS)},
        silence_logs=50,
    )
    client = distributed.Client(cluster, set_as_default=False)
    client.wait_for_workers(2, timeout=DEADLINE * 2)
    try:
        yield client
    finally:
        client.close()
        cluster.close()


@pytest.fixture(autouse=True)
def on_dask(dask_client: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    monkeypatch.setenv("DYNPIPE_ISOLATED_BACKEND", "dask")
    monkeypatch.setenv("DYNPIPE_ECHO_LOGS", "false")
    use_dask(dask_client)
    yield dask_client
    use_dask(None)


def _workers(client: Any) -> set[str]:
    return set(client.scheduler_info(n_workers=-1)["workers"])


def _worker_with(client: Any, field: str, value: int) -> str:
    [address] = [a for a, w in client.scheduler_info(n_workers=-1)["workers"].items() if w[field] == value]
    return str(address)


def _restrictions(dask_scheduler: Any) -> list[tuple[list[str], bool]]:
    """Each running dynpipe task's worker restriction and whether it is loose (on the scheduler)."""
    return sorted(
        (sorted(ts.worker_restrictions or ()), ts.loose_restrictions)
        for key, ts in dask_scheduler.tasks.items()
        if str(key).startswith("dynpipe-") and ts.state == "processing"
    )


def _task(**settings: Any) -> Any:
    """A step task as the engine makes it, for asking the runtime where it would go."""
    return dask_runtime.StepTask(run_id="r", run_name="r", pipeline_name="p", step_run_id="s", invocation_id="w",
                                 step_name="w", func=len, parameters={}, inputs={}, input_annotations={},
                                 outputs=[], materializers={}, store_root="", **settings)


# -- steps (module level: they travel by import path) -------------------------------------


@step(runtime="isolated", enable_cache=False)
def meet_and_say_where(directory: str, parties: int) -> str:
    file_barrier(directory, parties)  # returns only if `parties` steps run at the same time
    return f"{distributed.get_worker().address} {os.getpid()}"


@step(runtime="isolated", enable_cache=False)
def where() -> str:
    return distributed.get_worker().address


@step(runtime="isolated", enable_cache=False)
def tick_then_wait(release: str) -> str:
    print("tick", flush=True)
    wait_until(Path(release).exists, what="the test to create the release file")
    print("tock", flush=True)
    print("to stderr", file=sys.stderr, flush=True)
    logging.getLogger("dask-step").warning("a warning record")
    return "released"


@step(runtime="isolated", enable_cache=False)
def pid_then_wait(pid_file: str, release: str) -> int:
    """Writes its worker's pid, then waits (in Python, so a cancel can interrupt it)."""
    Path(pid_file).write_text(f"{os.getpid()} {distributed.get_worker().address}")
    wait_until(Path(release).exists, timeout=DEADLINE * 4, what="a release that never comes")
    return os.getpid()


@step(runtime="isolated", enable_cache=False)
def hold_until_released(started: str, release: str) -> str:
    """Marks that it started, then waits for the test's release file."""
    Path(started).mkdir(exist_ok=True)
    (Path(started) / uuid.uuid4().hex).touch()
    wait_until(Path(release).exists, what="the test to release the step")
    return distributed.get_worker().address


@step(runtime="isolated", enable_cache=False)
def my_pid() -> int:
    return os.getpid()


@step(runtime="isolated", enable_cache=False)
def fail_soon() -> int:
    raise ValueError("fail_soon broke")


@step(runtime="isolated", enable_cache=False, retry=StepRetryConfig(max_retries=1))
def dies_on_first_attempt(pid_file: str) -> str:
    if get_step_context().attempt == 1:
        Path(pid_file).write_text(f"{os.getpid()} {distributed.get_worker().address}")
        wait_until(lambda: False, timeout=DEADLINE * 4, what="the test to kill this worker")
    return "survived"


@step(runtime="isolated", enable_cache=True)
def cached_square(x: int, counter: str) -> int:
    with open(counter, "a", encoding="ascii") as fh:
        fh.write("ran\n")
    return x * x


# -- tests ----------------------------------------------------------------------------------


def test_backend_selection_and_missing_scheduler(monkeypatch: pytest.MonkeyPatch, dask_client: Any) -> None:
    assert isinstance(get_runtime("isolated"), DaskRuntime)
    use_dask(None)
    monkeypatch.delenv("DYNPIPE_DASK_SCHEDULER", raising=False)
    with pytest.raises(SettingError, match="DYNPIPE_DASK_SCHEDULER"):
        get_runtime("isolated")
    monkeypatch.delenv("DYNPIPE_ISOLATED_BACKEND")
    assert not isinstance(get_runtime("isolated"), DaskRuntime)  # the local pool again
    use_dask(dask_client)  # a handed-over client picks Dask when the variable is unset
    assert isinstance(get_runtime("isolated"), DaskRuntime)


def test_eight_steps_run_at_once_in_both_worker_processes_and_the_dag_names_them(
    tmp_path: Path, dask_client: Any
) -> None:
    barrier = tmp_path / "barrier"
    where_while_running: dict[str, str | None] = {}

    @pipeline(dynamic=True)
    def fan_out() -> None:
        futures = [meet_and_say_where.submit(str(barrier), 8) for _ in range(8)]
        # Each step sits in the barrier until all 8 are in it: all are running now, and the
        # live DAG already says where (from the workers' start notices).
        wait_until(lambda: len(list(barrier.glob("*"))) == 8, what="8 steps inside the barrier")
        ctx = current_run()
        assert ctx is not None
        nodes = {n.invocation_id: n for n in ctx.graph.snapshot()}
        wait_until(lambda: all(n.where for n in nodes.values()), what="every running node to know its worker")
        where_while_running.update({i: n.where for i, n in nodes.items()})
        for fut in futures:
            fut.wait()

    run = fan_out()
    assert run.status == "completed"
    ran = {sid: sr.output.load().split() for sid, sr in run.steps.items()}
    # No step leaves the barrier before the eighth is in it: peak concurrency 8, which the
    # workers (5 and 3 threads) reach only together, in the workers' own processes.
    assert len(ran) == 8
    pids = dask_client.run(os.getpid)
    assert {address for address, _ in ran.values()} == set(pids) == _workers(dask_client)
    assert all(str(pids[address]) == pid for address, pid in ran.values())
    host = socket.gethostname()
    assert where_while_running == {sid: f"dask {a} (host {host}, pid {p})" for sid, (a, p) in ran.items()}


def test_notebook_style_step_travels_by_value() -> None:
    namespace: dict[str, Any] = {"__name__": "__main__"}
    exec(
        textwrap.dedent(
            """
            from dynpipe import step, pipeline

            OFFSET = 41

            @step(runtime="isolated", enable_cache=False)
            def add_offset(x: int) -> int:
                import distributed
                return x + OFFSET if distributed.get_worker() else -1

            @pipeline(dynamic=True)
            def by_value() -> None:
                add_offset(1)
            """
        ),
        namespace,
    )
    assert func_ref(namespace["add_offset"].entrypoint) is None  # no import path: by value
    run = namespace["by_value"]()
    assert run.steps["add_offset"].output.load() == 42


def test_log_lines_stream_while_the_step_runs(tmp_path: Path) -> None:
    seen_while_running: list[str] = []
    release = tmp_path / "release"

    def tail() -> list[str]:
        ctx = current_run()
        assert ctx is not None
        node = ctx.graph.nodes.get("tick_then_wait")
        return list(node.log_tail) if node is not None and "tick" in node.log_tail else []

    @pipeline(dynamic=True)
    def live() -> None:
        fut = tick_then_wait.submit(str(release))
        # The step cannot end before `release` exists, so this line arrived while it ran.
        seen_while_running.extend(wait_until(tail, what="the step's first line in the live graph"))
        assert not fut.done()
        release.touch()
        fut.wait()

    run = live()
    assert seen_while_running == ["tick"]
    assert run.steps["tick_then_wait"].logs == (
        "tick\ntock\nto stderr\nWARNING dask-step: a warning record\n"
    )


def test_resources_place_the_step_on_the_gpu_worker(dask_client: Any) -> None:
    gpu_worker = sorted(_workers(dask_client))[0]

    async def offer_gpu(dask_worker: Any) -> None:
        await dask_worker.set_resources(GPU=1)

    dask_client.run(offer_gpu, workers=[gpu_worker])
    wait_until(
        lambda: dask_client.scheduler_info(n_workers=-1)["workers"][gpu_worker]["resources"].get("GPU") == 1,
        what="the scheduler to know the GPU worker",
    )

    @pipeline(dynamic=True)
    def placed() -> None:
        for i in range(3):
            where.with_options(settings={"dask": DaskSettings(resources={"GPU": 1})}, name=f"by_dask_{i}")()
            where.with_options(settings={"resources": ResourceSettings(gpu_count=1)}, name=f"by_gpu_count_{i}")()

    run = placed()
    assert {sr.output.load() for sr in run.steps.values()} == {gpu_worker}

    @pipeline(dynamic=True)
    def too_big() -> None:
        where.with_options(settings={"dask": {"resources": {"GPU": 4}}})()

    with pytest.raises(Exception, match=r"no Dask worker can take it: it asks for resources \{'GPU': 4.0\}"):
        too_big()


def test_workers_restriction(dask_client: Any) -> None:
    target = sorted(_workers(dask_client))[1]

    @pipeline(dynamic=True, settings={"dask": {"workers": [target]}})
    def pinned() -> None:
        for i in range(3):
            where.with_options(name=f"w{i}")()

    run = pinned()
    assert {sr.output.load() for sr in run.steps.values()} == {target}


def test_memory_and_cpu_count_restrict_the_step_to_workers_whose_limits_fit(
    tmp_path: Path, dask_client: Any
) -> None:
    big = _worker_with(dask_client, "memory_limit", 4_000_000_000)
    many = _worker_with(dask_client, "nthreads", 5)
    assert big != many
    release = tmp_path / "release"
    held: list[list[tuple[list[str], bool]]] = []
    needs_memory = hold_until_released.with_options(settings={"resources": ResourceSettings(memory="3GB")})
    needs_threads = hold_until_released.with_options(settings={"resources": ResourceSettings(cpu_count=4)})

    @pipeline(dynamic=True)
    def ported_from_zenml() -> None:
        futures = [
            needs_memory.submit(str(tmp_path / "memory"), str(release)),
            needs_threads.submit(str(tmp_path / "threads"), str(release)),
        ]
        wait_until(lambda: all((tmp_path / d).is_dir() for d in ("memory", "threads")), what="both steps to start")
        held.append(dask_client.run_on_scheduler(_restrictions))  # while both run
        release.touch()
        for fut in futures:
            fut.wait()

    run = ported_from_zenml()
    # Dask held each to the one worker that fits, strictly (no allow_other_workers), and ran it there.
    assert held == [sorted([([big], False), ([many], False)])]
    assert {sid: sr.output.load() for sid, sr in run.steps.items()} == {
        "hold_until_released": big, "hold_until_released_2": many
    }
    starts_before = len(dask_client.get_events(LOG_TOPIC))
    for resources, message in [
        (ResourceSettings(memory="8GB"), r"memory=8e\+09 bytes: the most a worker offers is 4e\+09 \(memory_limit\)"),
        (ResourceSettings(cpu_count=6), r"cpu_count=6: the most a worker offers is 5 \(nthreads\)"),
        (ResourceSettings(cpu_count=4, memory="3GB"), "no single worker offers all of them"),
    ]:

        @pipeline(dynamic=True)
        def too_much() -> None:
            where.with_options(settings={"resources": resources})()  # noqa: B023 - called at once

        with pytest.raises(RuntimeError, match=f"step 'where': no Dask worker can take it.*{message}"):
            too_much()
    assert len(dask_client.get_events(LOG_TOPIC)) == starts_before  # none was launched

    # DaskSettings.workers narrows the choice (by address or name); allow_other_workers stays the user's.
    runtime = DaskRuntime(dask_client)
    three_gb = ResourceSettings(memory="3GB")
    assert runtime.cluster.submit_options(_task(resources=three_gb)) == {
        "retries": 0, "pure": False, "priority": 0, "workers": [big], "allow_other_workers": False
    }
    loose = runtime.cluster.submit_options(_task(resources=three_gb, dask=DaskSettings(allow_other_workers=True)))
    assert (loose["workers"], loose["allow_other_workers"]) == ([big], True)
    by_name = _task(resources=ResourceSettings(memory="1GB"), dask=DaskSettings(workers=("1",)))  # WORKERS[1]
    assert runtime.cluster.submit_options(by_name)["workers"] == [big]
    with pytest.raises(dask_placement.Unplaceable, match=rf"workers \['{many}'\].*most a worker offers is 2e\+09"):
        runtime.cluster.submit_options(_task(resources=three_gb, dask=DaskSettings(workers=(many,))))


def test_cpu_and_memory_as_dask_resources_on_request_and_a_step_waiting_for_them_stays_queued(
    tmp_path: Path, dask_client: Any
) -> None:
    small = sorted(_workers(dask_client))[1]

    async def offer(dask_worker: Any) -> None:
        await dask_worker.set_resources(CPU=1, MEMORY=2e9)

    dask_client.run(offer, workers=[small])
    wait_until(
        lambda: dask_client.scheduler_info(n_workers=-1)["workers"][small]["resources"].get("MEMORY") == 2e9,
        what="the scheduler to know the worker's CPU and MEMORY",
    )
    as_resources = DaskSettings(cpu_resource="CPU", memory_resource="MEMORY")
    started, release = tmp_path / "started", tmp_path / "release"
    limited = hold_until_released.with_options(
        settings={"resources": ResourceSettings(cpu_count=1, memory="1GB"), "dask": as_resources}
    )
    statuses: list[str] = []

    @pipeline(dynamic=True)
    def one_cpu() -> None:
        futures = [limited.submit(str(started), str(release)) for _ in range(2)]
        ctx = current_run()
        assert ctx is not None
        nodes = ctx.graph.snapshot()
        # One CPU on one worker: one step runs there, the other waits in Dask, still queued
        # (a step counts as running only once a worker has started it).
        statuses.extend(
            wait_until(
                lambda: (s := sorted(str(n.status) for n in nodes)) == ["queued", "running"] and s,
                what="one step running and one queued",
            )
        )
        # The start notice may come before the step's first line ran: wait for its marker.
        wait_until(lambda: started.is_dir() and any(started.iterdir()), what="the running step's marker")
        assert len(list(started.iterdir())) == 1
        release.touch()
        for fut in futures:
            fut.wait()

    run = one_cpu()
    assert statuses == ["queued", "running"]
    assert {sr.output.load() for sr in run.steps.values()} == {small}  # the only worker offering CPU

    @pipeline(dynamic=True)
    def too_much() -> None:
        where.with_options(settings={"resources": ResourceSettings(cpu_count=1, memory="4GB"), "dask": as_resources})()

    with pytest.raises(RuntimeError, match=r"step 'where'.*MEMORY=4e\+09: the most a worker offers is 2e\+09"):
        too_much()

    @pipeline(dynamic=True)
    def unknown() -> None:
        where.with_options(settings={"dask": {"resources": {"TPU": 1}}})()

    with pytest.raises(RuntimeError, match="TPU=1: no worker advertises TPU"):
        unknown()

    @pipeline(dynamic=True)
    def mapping_off() -> None:
        where.with_options(
            settings={"resources": ResourceSettings(gpu_count=1), "dask": DaskSettings(gpu_resource=None)}
        )()

    assert mapping_off().status == "completed"


def test_a_fan_out_asks_the_scheduler_for_the_workers_once(
    dask_client: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = sorted(_workers(dask_client))[0]

    async def offer(dask_worker: Any) -> None:
        await dask_worker.set_resources(SLOTS=100)

    dask_client.run(offer, workers=[target])
    wait_until(
        lambda: dask_client.scheduler_info(n_workers=-1)["workers"][target]["resources"].get("SLOTS") == 100,
        what="the scheduler to know the worker's SLOTS",
    )
    asked: list[int] = []
    real = dask_client.scheduler_info
    monkeypatch.setattr(dask_client, "scheduler_info", lambda *a, **k: asked.append(1) or real(*a, **k))
    monkeypatch.setattr(dask_placement, "RESOURCES_TTL", 3600.0)  # this run's view never ages: calls are counted
    slot = where.with_options(
        settings={"dask": {"resources": {"SLOTS": 1}}, "resources": ResourceSettings(memory="1GB")}
    )

    @pipeline(dynamic=True)
    def fan_out() -> None:
        for fut in [slot.submit() for _ in range(12)]:
            fut.wait()

    run = fan_out()
    assert {sr.output.load() for sr in run.steps.values()} == {target}
    assert len(asked) == 1  # 12 launches, one scheduler round trip
    # 1,000 placements from 8 threads on one runtime: still one query; a step the kept view
    # cannot place asks once more (a bigger worker may have joined), then fails naming why.
    runtime = DaskRuntime(dask_client)
    task = _task(resources=ResourceSettings(memory="1GB"))
    asked.clear()
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda _: runtime.cluster.submit_options(task), range(1000)))
    assert len(asked) == 1
    huge = _task(resources=ResourceSettings(memory="500GB"))
    with pytest.raises(dask_placement.Unplaceable, match=r"memory=5e\+11 bytes: the most a worker offers is 4e\+09"):
        runtime.cluster.submit_options(huge)
    assert len(asked) == 2


def test_the_local_pool_names_its_worker_process_in_the_dag(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DYNPIPE_ISOLATED_BACKEND", "local")
    monkeypatch.setenv("DYNPIPE_WORKERS", "1")
    seen: list[str | None] = []

    @pipeline(dynamic=True)
    def on_the_pool() -> None:
        my_pid()
        ctx = current_run()
        assert ctx is not None
        seen.append(ctx.graph.nodes["my_pid"].where)

    try:
        run = on_the_pool()
    finally:
        shutdown_shared_runtime()
    assert seen == [f"pid {run.steps['my_pid'].output.load()}"]


def test_yaml_dask_settings_place_the_step_and_bad_ones_name_the_key(tmp_path: Path, dask_client: Any) -> None:
    target = sorted(_workers(dask_client))[0]

    @pipeline(dynamic=True, depends_on=[where])
    def from_yaml() -> None:
        for _ in range(3):
            where()

    config = tmp_path / "config.yaml"
    config.write_text(f"steps:\n  where:\n    settings:\n      dask:\n        workers: ['{target}']\n")
    run = from_yaml.with_options(config_path=str(config))()
    assert {sr.output.load() for sr in run.steps.values()} == {target}

    config.write_text("steps:\n  where:\n    settings:\n      dask:\n        resources: {GPU: -1}\n")
    with pytest.raises(ConfigError, match=r"(?s)dask.*resources.*GPU.*positive"):
        from_yaml.with_options(config_path=str(config))()
    with pytest.raises(ConfigError, match="settings.dask: priority"):
        where.with_options(settings={"dask": {"priority": "high"}})


def test_a_worker_that_cannot_see_the_store_fails_the_step_before_launch(
    monkeypatch: pytest.MonkeyPatch, dask_client: Any, store_home: Path
) -> None:
    blind = sorted(_workers(dask_client))[1]

    def other_host_for_one(path: str, token: str, dask_worker: Any = None) -> bool:
        # The real probe on every worker, except that `blind` answers as a worker on another
        # host would (the file is not on its disk).
        return dask_worker.address != blind and can_read(path, token)

    monkeypatch.setattr(dask_runtime, "can_read", other_host_for_one)
    starts_before = len(dask_client.get_events(LOG_TOPIC))

    @pipeline(dynamic=True)
    def unshared() -> None:
        where()

    with pytest.raises(RuntimeError, match=f"Dask worker.*{blind} cannot read the artifact store at {store_home}"):
        unshared()
    assert len(dask_client.get_events(LOG_TOPIC)) == starts_before  # nothing was launched
    assert not list(store_home.glob(".dask-probe-*"))  # the probe file is gone


def test_fail_fast_cancels_the_dask_task_and_frees_its_worker(tmp_path: Path) -> None:
    pid_file = tmp_path / "long.pid"
    never = tmp_path / "never"

    @pipeline(dynamic=True, execution_mode="fail_fast")
    def fast() -> None:
        long = pid_then_wait.submit(str(pid_file), str(never))
        wait_until(pid_file.exists, what="the Dask step to start")
        fail_soon.submit()
        long.wait()

    with pytest.raises(ValueError, match="fail_soon broke"):
        fast()
    run = Client().get_pipeline("fast").last_run
    assert run.steps["pid_then_wait"].status == "stopped"
    assert run.steps["fail_soon"].status == "failed"
    # The cancelled step's thread was interrupted: all 8 worker threads take a step at once.
    barrier = tmp_path / "barrier"

    @pipeline(dynamic=True)
    def both_free() -> None:
        for fut in [meet_and_say_where.submit(str(barrier), 8) for _ in range(8)]:
            fut.wait()

    assert both_free().status == "completed"


def test_cache_hits_skip_dask(tmp_path: Path, dask_client: Any) -> None:
    counter = tmp_path / "counter"

    @pipeline(dynamic=True)
    def cached() -> None:
        cached_square(7, str(counter))

    first = cached()
    starts_before = len(dask_client.get_events(LOG_TOPIC))
    second = cached()
    assert first.steps["cached_square"].status == "completed"
    assert second.steps["cached_square"].status == "cached"
    assert second.steps["cached_square"].output.load() == 49
    assert counter.read_text() == "ran\n"
    assert len(dask_client.get_events(LOG_TOPIC)) == starts_before  # nothing reached the cluster


def test_killed_worker_fails_the_attempt_naming_it_and_the_retry_succeeds(
    tmp_path: Path, dask_client: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    pid_file = tmp_path / "victim"
    killed: list[str] = []
    big = _worker_with(dask_client, "memory_limit", 4_000_000_000)
    # Only the 4 GB worker fits: the retry must wait for its nanny to restart it under a new
    # address and go there, although the kept view of the workers would never age.
    monkeypatch.setattr(dask_placement, "RESOURCES_TTL", 3600.0)
    needs_memory = dies_on_first_attempt.with_options(settings={"resources": ResourceSettings(memory="3GB")})

    @pipeline(dynamic=True)
    def survive() -> None:
        fut = needs_memory.submit(str(pid_file))
        text = wait_until(lambda: pid_file.exists() and pid_file.read_text(), what="the first attempt to start")
        pid, address = text.split()
        os.kill(int(pid), signal.SIGKILL)
        killed.append(address)
        fut.wait()

    run = survive()
    sr = run.steps["dies_on_first_attempt"]
    assert sr.status == "completed"
    assert sr.attempts == 2
    assert sr.output.load() == "survived"
    assert f"the Dask worker {killed[0]} running it died" in sr.logs
    assert killed == [big]
    dask_client.wait_for_workers(2, timeout=DEADLINE * 2)  # the nanny restarts it for later tests


def test_killed_worker_without_retries_fails_the_step_clearly(tmp_path: Path, dask_client: Any) -> None:
    pid_file = tmp_path / "victim"
    killed: list[str] = []
    no_retry = dies_on_first_attempt.with_options(retry=StepRetryConfig(max_retries=0))

    @pipeline(dynamic=True)
    def dies() -> None:
        fut = no_retry.submit(str(pid_file))
        text = wait_until(lambda: pid_file.exists() and pid_file.read_text(), what="the attempt to start")
        pid, address = text.split()
        os.kill(int(pid), signal.SIGKILL)
        killed.append(address)
        fut.wait()

    with pytest.raises(WorkerCrashedError, match=r"the Dask worker tcp://\S+ running it died") as info:
        dies()
    assert killed[0] in str(info.value)
    sr = Client().get_pipeline("dies").last_run.steps["dies_on_first_attempt"]
    assert sr.status == "failed"
    assert f"the Dask worker {killed[0]} running it died" in sr.logs
    dask_client.wait_for_workers(2, timeout=DEADLINE * 2)
