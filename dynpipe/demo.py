"""``dynpipe demo``: a small hyper-parameter search, run twice to show caching.

Written like user code: steps, a dynamic pipeline with a runtime-sized fan-out, a fan-in,
an isolated step, then the second run hitting the cache.
"""

from __future__ import annotations

import os
import random
import shlex
import shutil
import sys
import time
from pathlib import Path
from typing import Annotated

from .display import (
    count_statuses,
    escape_control,
    format_duration,
    format_status_counts,
)
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
        if node.status in ("queued", "initializing"):
            return
        mark = {"completed": "✓", "cached": "⚡", "failed": "✗", "running": "…", "skipped": "-"}.get(node.status, "·")
        sys.stdout.write(f"  {mark} {escape_control(node.invocation_id):<12} {node.status}\n")

    return on_change, last


def cli_command() -> str:
    """How to type the ``dynpipe`` command in this shell, for the closing hint.

    ``DYNPIPE_CLI`` (``./dev demo`` sets it to ``./dev dynpipe``) wins; else plain ``dynpipe``
    when it is on PATH; else the console script next to this interpreter (a venv that is not
    activated); else ``python -m dynpipe.cli``.
    """
    given = os.environ.get("DYNPIPE_CLI", "").strip()
    if given:
        return given
    script = Path(sys.executable).parent / "dynpipe"
    on_path = shutil.which("dynpipe")
    if on_path and (not script.exists() or Path(on_path).resolve() == script.resolve()):
        return "dynpipe"
    if script.exists():
        try:
            shown = str(script.relative_to(Path.cwd()))
        except ValueError:
            shown = str(script)
        return shlex.quote(shown)
    return f"{shlex.quote(sys.executable)} -m dynpipe.cli"


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
        counts = format_status_counts(count_statuses(s.status for s in run.steps.values()))
        print(f"run {run.name}: {run.status.value} in {format_duration(elapsed)} ({counts}); best {best}")
        print(run.steps["report"].output.load())
    cli = cli_command()
    train = "train" if workers < 2 else f"train_{min(3, workers)}"
    print(f"\nstore: {Client().store.root}")
    print(f"inspect it with:  {cli} runs list   |   {cli} runs show latest   |   {cli} runs logs latest {train}")
    return 0
