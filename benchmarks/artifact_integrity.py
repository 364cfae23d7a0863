"""What checking artifacts costs: load with and without the sha256 check, put (fsync included).

    python benchmarks/artifact_integrity.py            # 1 KB, 1 MB, 100 MB
    python benchmarks/artifact_integrity.py --sizes 1024 --repeats 3

Each figure is the median of ``--repeats`` calls on a warm page cache, in a fresh temporary
store; "read" is the bare file read the check is added to.
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from dynpipe.store.artifacts import ArtifactFiles


def _median_ms(fn: Callable[[], object], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def _put_new(files: ArtifactFiles, path: Path, data: bytes) -> None:
    path.unlink()
    files.put(data)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1 << 10, 1 << 20, 100 << 20])
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    columns = ("read", "read+size", "read+sha256", "put(new)", "put(same)")
    print(f"{'size':>10s} " + " ".join(f"{c:>11s}" for c in columns) + "  (ms)")
    with tempfile.TemporaryDirectory() as tmp:
        files = ArtifactFiles(Path(tmp))
        for size in args.sizes:
            data = os.urandom(size)
            uri, digest = files.put(data)
            path = Path(tmp) / uri
            files.hash_limit = -1
            read = _median_ms(path.read_bytes, args.repeats)
            sized = _median_ms(functools.partial(files.get, uri, expected_size=size), args.repeats)
            files.hash_limit = 1 << 62
            hashed = _median_ms(functools.partial(files.get, uri), args.repeats)
            put_new_ms = _median_ms(functools.partial(_put_new, files, path, data), args.repeats)
            put_same_ms = _median_ms(functools.partial(files.put, data), args.repeats)
            assert hashlib.sha256(path.read_bytes()).hexdigest() == digest
            label = f"{size / (1 << 20):.0f} MB" if size >= 1 << 20 else f"{size / 1024:.0f} KB"
            figures = (read, sized, hashed, put_new_ms, put_same_ms)
            print(f"{label:>10s} " + " ".join(f"{f:11.3f}" for f in figures))


if __name__ == "__main__":
    main()
