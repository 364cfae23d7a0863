"""``PipelineRun.steps`` reads what is asked: keys, one step, or all of them in one pass."""

from __future__ import annotations

from backends import Backend

from dynpipe import Client, pipeline, step
from dynpipe.store.models import StepRuns
from dynpipe.store.store import open_store


def test_steps_are_read_as_asked_and_match_the_bulk_read(backend: Backend) -> None:
    @step
    def double(i: int) -> int:
        return 2 * i

    @pipeline(dynamic=True, enable_cache=False)
    def lazy() -> None:
        for i in range(5):
            double(i)

    lazy()
    statements: list[str] = []
    if backend.name == "sqlite":
        open_store().metadata._conn.set_trace_callback(statements.append)  # type: ignore[attr-defined]
    steps = Client().get_pipeline("lazy").last_run.steps
    assert isinstance(steps, StepRuns)
    assert steps["double_3"].output.load() == 4  # the third call: i == 2
    assert "double_4" in steps and "nope" not in steps and steps.get("nope") is None
    assert list(steps) == ["double", "double_2", "double_3", "double_4", "double_5"] and len(steps) == 5
    if backend.name == "sqlite":
        whole = [s for s in statements if s.startswith("SELECT * FROM step_runs WHERE run_id") and "ORDER BY" in s]
        assert whole == []  # one step and the keys were asked for: the run's rows were not all read
    bulk = Client().get_pipeline("lazy").last_run.steps
    assert [s.output.load() for s in bulk.values()] == [0, 2, 4, 6, 8]
    assert {k: (s.id, s.status, s.start_time) for k, s in bulk.items()} == {
        k: (s.id, s.status, s.start_time) for k, s in steps.items()
    }
    assert steps["double_3"].id == bulk["double_3"].id and steps["double_3"].parameters == {"i": 2}
