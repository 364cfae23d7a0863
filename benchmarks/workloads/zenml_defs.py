"""ZenML steps and pipelines for zenml_wl.py: ZenML needs them at module top level."""

from __future__ import annotations

from zenml import pipeline, step


@step
def noop(i: int) -> int:
    return i


@step(runtime="isolated")
def noop_isolated(i: int) -> int:
    return i


@step
def source(offset: int) -> int:
    return offset


@step
def work(i: int, x: int) -> int:
    return i + x


@step
def combine(values: list[int]) -> int:
    return sum(values)


@pipeline(dynamic=True, enable_cache=False)
def sequential(count: int, offset: int) -> None:
    for i in range(count):
        noop(offset + i)


@pipeline(dynamic=True, enable_cache=True)
def sequential_cached(count: int, offset: int) -> None:
    for i in range(count):
        noop(offset + i)


@pipeline(dynamic=True, enable_cache=False)
def submitted(count: int, offset: int) -> None:
    futures = [noop.submit(offset + i) for i in range(count)]
    for f in futures:
        f.wait()


@pipeline(dynamic=True, enable_cache=False)
def fanout(count: int, offset: int) -> None:
    x = source(offset)
    futures = [work.submit(i, x) for i in range(count)]
    combine(futures)


@pipeline(dynamic=True, enable_cache=False)
def isolated(count: int, offset: int) -> None:
    futures = [noop_isolated.submit(offset + i) for i in range(count)]
    for f in futures:
        f.wait()


@step
def one() -> int:
    return 1


@pipeline(dynamic=True, enable_cache=False)
def cold() -> None:
    one()
