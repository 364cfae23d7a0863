"""What an open run keeps per step: compact, yet every view still shows everything."""

from __future__ import annotations

import os
import random
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from dynpipe import pipeline, step
from dynpipe.config import PipelineConfig
from dynpipe.engine.context import RunContext, current_run
from dynpipe.engine.dag import NodeState
from dynpipe.outputs import OutputArtifact, StepOutputs
from dynpipe.store.store import open_store

REPO = Path(__file__).resolve().parents[1]


@step
def make(i: int) -> int:
    return i


@step
def pair(a: int, b: int) -> tuple[int, int]:
    return a, b


@step
def add(a: int, b: int) -> int:
    return a + b


def _open_run(body: Any) -> RunContext:
    """Run ``body`` inside a dynamic pipeline; the run's context, for looking at what it kept."""
    seen: list[RunContext] = []

    @pipeline(dynamic=True, enable_cache=False)
    def flow() -> None:
        body()
        ctx = current_run()
        assert ctx is not None
        seen.append(ctx)

    flow()
    return seen[0]


def test_a_finished_step_still_shows_its_parameters_inputs_outputs_and_artifacts() -> None:
    def body() -> None:
        x, y = pair.submit(1, 2)
        assert add.submit(x, y).load(timeout=30) == 3

    ctx = _open_run(body)
    pair_inv, add_inv = ctx.invocations
    outputs = pair_inv.future.result()
    assert isinstance(outputs, StepOutputs)
    assert list(outputs) == ["output_0", "output_1"] and len(outputs) == 2
    assert {k: a.load() for k, a in outputs.items()} == {"output_0": 1, "output_1": 2}
    with pytest.raises(KeyError):
        outputs["nope"]
    ids = {name: a.id for name, a in outputs.items()}

    node = pair_inv.node
    assert node.parameters == {"a": 1, "b": 2} and pair_inv.parameters == {"a": 1, "b": 2}
    assert node.outputs == ["output_0", "output_1"] and node.artifacts == ids
    assert node.as_dict()["parameters"] == {"a": "1", "b": "2"}
    assert node.upstream == () and pair_inv.record().upstream == []
    assert add_inv.node.inputs == {"a": ids["output_0"], "b": ids["output_1"]}
    assert add_inv.node.parameters == {} and add_inv.upstream == ["pair"]
    assert add_inv.record().parameters == {} and add_inv.record().inputs == {}  # inputs released

    art = outputs["output_0"]
    assert art.uri == "db:" + art.content_hash  # a small output: kept in the metadata database
    assert art.name == "flow::pair::output_0"
    assert art.metadata == {} and art.tags == []
    art.tags.append("mine")
    art.metadata["k"] = 1
    assert art.tags == ["mine"] and art.metadata == {"k": 1}  # changed in place, it sticks
    assert not ctx.outstanding


def test_output_artifact_keeps_an_explicit_uri_metadata_and_tags() -> None:
    art = OutputArtifact(
        None, "s", "run", id="a", name="n", uri="/files/x", content_hash="h", materializer="m", metadata={"m": 1},
        tags=["t"], output_name="output",
    )
    assert (art.uri, art.metadata, art.tags) == ("/files/x", {"m": 1}, ["t"])
    art.uri = "db:h"
    assert art.uri == "db:h"


def test_node_fields_set_through_the_graph_read_back_unchanged() -> None:
    node = NodeState("s", "s", ["up"], "inline", 0)
    node.parameters = {"a": [1, 2], "b": None}
    node.inputs = {"x": "id1", "y": ["id2", "id3"]}
    node.artifacts = {"output": "id4"}
    node.outputs = ["output"]
    assert node.parameters == {"a": [1, 2], "b": None}
    assert node.inputs == {"x": "id1", "y": ["id2", "id3"]}
    assert node.artifacts == {"output": "id4"} and node.outputs == ["output"]
    assert node.as_dict()["inputs"] == {"x": "id1", "y": ["id2", "id3"]}


class _IdsBySet:
    """The former allocation, which kept every id in a set: the reference for ``allocate_id``."""

    def __init__(self) -> None:
        self.counters: dict[str, int] = {}
        self.used: set[str] = set()

    def allocate(self, step_name: str, custom: str | None) -> str:
        if custom is not None:
            if custom in self.used:
                raise ValueError(custom)
            self.used.add(custom)
            return custom
        n = self.counters.get(step_name, 0)
        while True:
            n += 1
            candidate = step_name if n == 1 else f"{step_name}_{n}"
            if candidate not in self.used:
                break
        self.counters[step_name] = n
        self.used.add(candidate)
        return candidate


def test_invocation_ids_match_a_set_of_every_id_given() -> None:
    """Steps named like another's numbered ids, custom ids taking them, odd digits."""
    names = ["a", "a_2", "a_2_2", "b", "a_1", "x_0", "a_02", "_", "a_", "7"]
    customs = names + ["a_3", "a_03", "a_٣", "a_²", "b_2", "a_2_3", "a_10"]
    store = open_store()
    for seed in range(300):
        rnd = random.Random(seed)
        ctx = RunContext(pipeline_name="p", config=PipelineConfig(dynamic=True), store=store)
        model = _IdsBySet()
        for _ in range(40):
            name = rnd.choice(names)
            custom = rnd.choice(customs) if rnd.random() < 0.3 else None
            try:
                expected = model.allocate(name, custom)
            except ValueError:
                with pytest.raises(ValueError, match="is already used"):
                    ctx.allocate_id(name, custom)
                continue
            assert ctx.allocate_id(name, custom) == expected, (seed, name, custom)


_HELD_PER_STEP = """
import gc, sys, tracemalloc
from dynpipe import pipeline, step
from dynpipe.engine.context import current_run

@step
def make(i: int) -> int:
    return i

held = []

@pipeline(dynamic=True, enable_cache=False)
def flow(steps: int) -> None:
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    futures = [make.submit(i + 1000) for i in range(steps)]
    for f in futures:
        f.wait(timeout=60)
    del futures
    ctx = current_run()
    ctx.store.metadata.flush()  # records queued for group commit are the store's, not the run's
    gc.collect()
    held.append(tracemalloc.get_traced_memory()[0] - before)
    tracemalloc.stop()

flow(int(sys.argv[1]))
print(held[0] / int(sys.argv[1]))
"""


def test_an_open_run_holds_little_per_finished_step(tmp_path: Path) -> None:
    """A budget, not a timing: Python memory an open run holds per finished submitted step.

    About 1.45 KB on CPython 3.11 (node, invocation, future, output artifact, ids, hash,
    preview); the bound leaves room for other versions. Measured in a fresh interpreter:
    threads other tests leave behind (watch streams, pools) allocate while it measures.
    """
    env = {**os.environ, "DYNPIPE_HOME": str(tmp_path), "PYTHONPATH": str(REPO)}
    proc = subprocess.run(
        [sys.executable, "-c", _HELD_PER_STEP, "600"], env=env, cwd=tmp_path,
        capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    per_step = float(proc.stdout.strip().splitlines()[-1])
    assert 0 < per_step < 1600, f"{per_step:.0f} B per step"


def test_output_artifact_content_hash_reads_back_as_given() -> None:
    digest = "ab" * 32
    for given in (digest, "AB" * 32, "sha256:xyz", "", None):
        art = OutputArtifact(
            None, "s", "run", id="a", name="n", uri="/files/x", materializer="m", content_hash=given,
            output_name="output",
        )
        assert art.content_hash == given
    art = OutputArtifact(None, "s", "run", id="a", name="n", uri=f"db:{digest}", materializer="m", content_hash=digest)
    assert art.uri == f"db:{digest}" and art.content_hash == digest
