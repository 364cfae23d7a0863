"""ZenML side of the benchmark workloads (local orchestrator, dynamic pipelines; see _common.py).

The config directory and the local SQLite store live in a temporary directory
(ZENML_CONFIG_PATH); analytics are off. Steps and pipelines are in zenml_defs.py because
ZenML resolves dynamic pipelines by module path. Isolated steps use ``runtime="isolated"``
with the local orchestrator, ZenML's own local equivalent.
"""

from __future__ import annotations

import os

from _common import cold_start, parse_args, run_plan

home = os.environ.get("BENCH_HOME")
if home:
    os.environ.setdefault("ZENML_CONFIG_PATH", os.path.join(home, "zenml"))
os.environ.setdefault("ZENML_ANALYTICS_OPT_IN", "false")
os.environ.setdefault("ZENML_LOGGING_VERBOSITY", "ERROR")
os.environ.setdefault("ZENML_ENABLE_REPO_INIT_WARNINGS", "false")
os.environ.setdefault("ZENML_DEBUG", "false")
os.environ.setdefault("AUTO_OPEN_DASHBOARD", "false")


def cold_run() -> None:
    from zenml_defs import cold

    cold()


def main() -> None:
    args = parse_args()
    if args.workload == "cold":
        cold_start(__file__, args, cold_run)
        return

    from zenml_defs import fanout, isolated, sequential, sequential_cached, submitted

    wl = args.workload
    if wl == "sequential":
        run_plan(args, lambda c, o: sequential(count=c, offset=o))
    elif wl in ("submitted", "scale"):
        run_plan(args, lambda c, o: submitted(count=c, offset=o))
    elif wl == "fanout":
        run_plan(args, lambda c, o: fanout(count=c, offset=o), steps_counted=args.steps + 2)
    elif wl == "cached":
        run_plan(args, lambda c, o: sequential_cached(count=c, offset=o), cached=True)
    elif wl == "isolated":
        run_plan(args, lambda c, o: isolated(count=c, offset=o), note='runtime="isolated", local orchestrator')
    else:
        raise SystemExit(f"unknown workload {wl}")


if __name__ == "__main__":
    main()
