"""dynpipe side of the benchmark workloads (run as a script; see _common.py)."""

from __future__ import annotations

import time

from _common import cold_start, parse_args, run_plan


def cold_run() -> None:
    from dynpipe import pipeline, step

    @step
    def one() -> int:
        return 1

    @pipeline(dynamic=True, enable_cache=False)
    def cold() -> None:
        one()

    cold()


def main() -> None:
    args = parse_args()
    if args.workload == "cold":
        cold_start(__file__, args, cold_run)
        return

    from dynpipe import pipeline, step

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

    widget_info: dict[str, object] = {}

    @pipeline(dynamic=True, enable_cache=False)
    def submitted_with_widget(count: int, offset: int) -> None:
        """The live DAG widget's kernel side attached: feed thread, layout, state sync."""
        from dynpipe.engine.context import current_run
        from dynpipe.notebook.widget import DagWidget, LiveFeed

        ctx = current_run()
        assert ctx is not None
        feed = LiveFeed("scale", ctx.graph)
        widget = DagWidget()
        feed.attach(widget)
        futures = [noop.submit(offset + i) for i in range(count)]
        for f in futures:
            f.wait()
        start = time.perf_counter()
        feed.refresh(force=True)
        widget_info["last_frame_s"] = time.perf_counter() - start
        feed.stop()
        widget_info["frames"] = feed.frames

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

    wl = args.workload
    if wl == "sequential":
        run_plan(args, lambda c, o: sequential(c, o))
    elif wl in ("submitted", "scale"):
        run_plan(args, lambda c, o: submitted(c, o))
    elif wl == "scale_widget":
        run_plan(args, lambda c, o: submitted_with_widget(c, o), widget=widget_info)
    elif wl == "fanout":
        run_plan(args, lambda c, o: fanout(c, o), steps_counted=args.steps + 2)
    elif wl == "cached":
        from dynpipe import Client

        run_plan(args, lambda c, o: sequential_cached(c, o), cached=True)
        steps = Client().get_pipeline("sequential_cached").last_run.steps
        hits = sum(1 for s in steps.values() if getattr(s.status, "value", s.status) == "cached")
        if hits != args.steps:
            raise SystemExit(f"cached re-run hit the cache for {hits} of {args.steps} steps")
    elif wl == "isolated":
        run_plan(args, lambda c, o: isolated(c, o), note='runtime="isolated": warm local worker pool')
    else:
        raise SystemExit(f"unknown workload {wl}")


if __name__ == "__main__":
    main()
