"""A cache hit reads its step run and artifact rows in one query, and no blob."""

from __future__ import annotations

from dynpipe import pipeline, step
from dynpipe.engine.context import current_run
from dynpipe.store.metadata import MetadataStore


@step
def double(x: int) -> int:
    return 2 * x


def test_a_cache_hit_makes_one_read() -> None:
    statements: list[str] = []

    @pipeline(dynamic=True, enable_cache=True)
    def flow(trace: bool) -> None:
        ctx = current_run()
        assert ctx is not None and isinstance(ctx.store.metadata, MetadataStore)
        conn = ctx.store.metadata._conn
        if trace:
            conn.set_trace_callback(statements.append)
        try:
            assert double(21).load() == 42
        finally:
            conn.set_trace_callback(None)

    flow(False)
    run = flow(True)
    assert run.steps["double"].status == "cached"
    reads = [s for s in statements if s.lstrip().upper().startswith("SELECT")]
    assert len(reads) == 2, reads  # the cache lookup with its artifact rows, then load() reading the blob
    assert "json_each" in reads[0] and "FROM blobs" in reads[1]
