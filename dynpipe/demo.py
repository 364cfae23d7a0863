"""``dynpipe demo``: a small hyper-parameter search, run twice to show caching.

Written like user code: steps, a dynamic pipeline with a runtime-sized fan-out, a fan-in,
an isolated step, then the second run hitting the cache.
"""

from __future__ import annotations

import random
import sys
import time
from typing import Annotated

from .engine.dag import NodeState, RunGraph
from .futures import StepRunFuture
from .pipelines import pipeline
from .steps import step


@step
def load_data(n: int) -> list[float]:
    rng = random.Random(42)
    return [rng.gauss(0, 1) for _ in range(n)]


@step
def make_grid(width: int) -> list[float]:
    return [round(0.1 * (i + 1), 2) for i in range(width)]


@step
def train(data: list[float], lr: float) -> Annotated[float, "score"]:
    """Pretend to train: a little work, a deterministic score."""
    time.sleep(0.3)
    score = 1.0 - abs(lr - 0.5) - 0.01 * abs(sum(data)) / len(data)
    print(f"lr={lr} score={score:.3f}")
    return round(score, 4)


@step
def pick_best(scores: list[float], grid: list[float]) -> Annotated[dict[str, float], "best"]:
    best = max(range(len(scores)), key=scores.__getitem__)
    return {"lr": grid[best], "score": scores[best]}


@step(runtime="isolated")
def report(best: dict[str, float]) -> str:
    import os

    return f"best lr {best['lr']} (score {best['score']}) computed in worker pid {os.getpid()}"


@pipeline(dynamic=True)
def demo_search(n: int = 200, width: int = 8) -> None:
    data = load_data(n)
    grid = make_grid(width).load()  # runs now: the fan-out width is known at runtime
    scores: list[StepRunFuture] = [train.submit(data, lr) for lr in grid]
    best = pick_best(scores, make_grid(width))
    report(best)


def _printer() -> tuple[object, object]:
    last: dict[str, str] = {}

    def on_change(graph: RunGraph, node: NodeState | None) -> None:
        if node is None or last.get(node.invocation_id) == node.status:
            return
        last[node.invocation_id] = node.status
        if node.status in ("initializing",):
            return
        mark = {"completed": "✓", "cached": "⚡", "failed": "✗", "running": "…", "skipped": "-"}.get(node.status, "·")
        sys.stdout.write(f"  {mark} {node.invocation_id:<12} {node.status}\n")

    return on_change, last


def run_demo(workers: int = 8) -> int:
    from .store.client import Client

    for attempt in (1, 2):
        print(f"\n== demo run {attempt}{' (everything cached)' if attempt == 2 else ''} ==")
        started = time.perf_counter()
        listener, _ = _printer()
        future = demo_search.submit(width=workers)
        future.graph.subscribe(listener)
        run = future.result()
        elapsed = time.perf_counter() - started
        best = run.steps["pick_best"].output.load()
        print(f"run {run.name}: {run.status.value} in {elapsed:.2f}s; best {best}")
        print(run.steps["report"].output.load())
    print(f"\nstore: {Client().store.root}")
    print("inspect it with:  dynpipe runs list   |   dynpipe runs show <run>   |   dynpipe runs logs <run> train_3")
    return 0
