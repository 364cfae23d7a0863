"""Steps the Kubernetes object-store tests run in pods: a light module (dynpipe only), so a
pod's import of it stays cheap (the test module itself imports moto, kmock and boto3)."""

from __future__ import annotations

import os

from dynpipe import step


@step(runtime="isolated", enable_cache=False)
def make_numbers(n: int) -> list[int]:
    print(f"making {n} numbers")
    return list(range(n))


@step(runtime="isolated", enable_cache=False)
def total_in_pod(numbers: list[int], note: str = "") -> dict[str, object]:
    print("adding in the pod")
    return {"total": sum(numbers), "pid": os.getpid(), "cwd": os.getcwd(), "note_len": len(note)}
