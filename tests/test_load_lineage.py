"""Lineage survives ``.load()``: a value loaded from a step and passed to later steps keeps
that step as their upstream ("loaded" edge in the DAG, upstream in the store), in a script
run and in a real kernel (jupyter_client)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from test_notebook_kernel import Kernel, stdout

from dynpipe import Client, pipeline, step
from dynpipe.engine.context import current_run
from dynpipe.engine.lineage import LoadedValues

pytestmark = pytest.mark.timeout(180)


@step(enable_cache=False)
def fetch() -> list[str]:
    return ["alpha,1", "beta,2", "gamma,3"]


@step(enable_cache=False)
def parse(line: str) -> int:
    return int(line.split(",")[1]) * 1000  # not a small int: those are shared, no lineage


@step(enable_cache=False)
def total(values: list[int]) -> int:
    return sum(values)


@step(enable_cache=False)
def count(n: int) -> int:
    return n


def test_loaded_elements_and_whole_values_keep_their_producer() -> None:
    seen: dict[str, object] = {}

    @pipeline(dynamic=True)
    def p() -> None:
        ctx = current_run()
        assert ctx is not None
        lines = fetch().load()
        parsed = [parse.submit(x) for x in lines]
        numbers = [f.load() for f in parsed]
        total(numbers)  # a new list of loaded values: each element's producer
        count(7)  # a plain literal: no producer
        seen["nodes"] = {k: (list(n.upstream), list(n.loaded_from)) for k, n in ctx.graph.nodes.items()}

    run = p()
    nodes = seen["nodes"]
    assert nodes["parse"] == (["fetch"], ["fetch"]) and nodes["parse_3"] == (["fetch"], ["fetch"])
    assert nodes["total"] == (["parse", "parse_2", "parse_3"], ["parse", "parse_2", "parse_3"])
    assert nodes["count"] == ([], [])
    stored = Client().get_pipeline_run(run.id).steps
    assert stored["parse_2"].upstream == ["fetch"]
    assert stored["total"].upstream == ["parse", "parse_2", "parse_3"]


def test_shared_objects_carry_no_lineage_and_lookups_are_by_identity() -> None:
    loaded = LoadedValues()
    value = [1, 300 + int("1"), "x", "word" * 2, None]
    loaded.remember(value, "fetch")
    assert loaded.producer_of(value) == "fetch"
    assert loaded.producer_of(value[1]) == "fetch" and loaded.producer_of(value[3]) == "fetch"
    # Small ints, one-character strings and None are shared by all code: never a producer.
    assert loaded.producer_of(1) is None and loaded.producer_of("x") is None and loaded.producer_of(None) is None
    assert loaded.producer_of(list(value)) is None  # equal but not the loaded object
    loaded.close()
    assert loaded.producer_of(value) is None
    loaded.remember(value, "fetch")  # the run is over: nothing more is kept
    assert loaded.producer_of(value) is None


SETUP = '''
import os
os.environ["DYNPIPE_HOME"] = {home!r}
%load_ext dynpipe
from dynpipe import step, Client

@step(enable_cache=False)
def fetch() -> list[str]:
    return ["alpha,1", "beta,2"]

@step(enable_cache=False)
def parse(line: str) -> int:
    return int(line.split(",")[1])
'''


@pytest.fixture(scope="module")
def kernel(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Kernel]:
    k = Kernel()
    reply, _ = k.execute(SETUP.format(home=str(tmp_path_factory.mktemp("kernel-lineage"))))
    assert reply["status"] == "ok", reply
    yield k
    k.close()


def test_lineage_across_cells_in_a_kernel(kernel: Kernel) -> None:
    reply, _ = kernel.execute("%%pipeline lineage --no-widget\nxs = fetch().load()")
    assert reply["status"] == "ok", reply
    reply, _ = kernel.execute("%%pipeline lineage --no-widget\nparsed = [parse.submit(x) for x in xs]")
    assert reply["status"] == "ok", reply
    reply, msgs = kernel.execute(
        "ext = get_ipython().dynpipe_extension\n"
        "nodes = ext.sessions.get('lineage').ctx.graph.nodes\n"
        "print(sorted((k, n.as_dict()['upstream'], n.as_dict()['loaded_from']) for k, n in nodes.items()))\n"
        "%pipeline end lineage\n"
        "run = Client().get_pipeline('lineage').runs[0]\n"
        "print(sorted((k, s.upstream) for k, s in run.steps.items()))"
    )
    assert reply["status"] == "ok", reply
    graph_line, store_line = stdout(msgs).strip().splitlines()[0], stdout(msgs).strip().splitlines()[-1]
    assert graph_line == (
        "[('fetch', [], []), ('parse', ['fetch'], ['fetch']), ('parse_2', ['fetch'], ['fetch'])]"
    )
    assert store_line == "[('fetch', []), ('parse', ['fetch']), ('parse_2', ['fetch'])]"
