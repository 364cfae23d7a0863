"""ZenML side of the benchmark workloads (local orchestrator, dynamic pipelines; see _common.py).

The config directory and the local SQLite store live in a temporary directory
(ZENML_CONFIG_PATH); analytics are off. Isolated steps use ``runtime="isolated"`` with the
local orchestrator, ZenML's own local equivalent.
"""

from __future__ import annotations

import os
import time

from _common import cold_start_via_children, emit, parse_args, timed

home = os.environ.get("BENCH_HOME")
if home:
    os.environ.setdefault("ZENML_CONFIG_PATH", os.path.join(home, "zenml"))
os.environ.setdefault("ZENML_ANALYTICS_OPT_IN", "false")
os.environ.setdefault("ZENML_LOGGING_VERBOSITY", "ERROR")
os.environ.setdefault("ZENML_ENABLE_REPO_INIT_WARNINGS", "false")
os.environ.setdefault("ZENML_DEBUG", "false")
os.environ.setdefault("AUTO_OPEN_DASHBOARD", "false")


def main() -> None:
    args = parse_args()
    n = args.steps
    if args.workload == "cold":
        if cold_start_via_children(__file__):
            return
        start = time.perf_counter()
        from zenml_defs import cold

        cold()
        emit("cold", 1, time.perf_counter() - start)
        return

    from zenml_defs import fanout, isolated, sequential, sequential_cached, submitted

    extra: dict[str, object] = {}
    warm = args.warmup
    if args.workload == "sequential":
        sequential(count=warm)
        total = timed(lambda: sequential(count=n))
    elif args.workload in ("submitted", "scale"):
        submitted(count=warm)
        total = timed(lambda: submitted(count=n))
    elif args.workload == "fanout":
        fanout(count=warm)
        total = timed(lambda: fanout(count=n))
        n += 2
    elif args.workload == "cached":
        sequential_cached(count=n)
        total = timed(lambda: sequential_cached(count=n))
    elif args.workload == "isolated":
        isolated(count=warm)
        total = timed(lambda: isolated(count=n))
        extra["note"] = 'runtime="isolated" on the local orchestrator'
    else:
        raise SystemExit(f"unknown workload {args.workload}")
    emit(args.workload, n, total, **extra)


if __name__ == "__main__":
    main()
