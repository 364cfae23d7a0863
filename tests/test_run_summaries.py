"""Pages of the runs list (``Client.list_run_summaries``) on SQLite and PostgreSQL.

Keyset pages cover every run once, newest first, even while runs are added between pages;
step counts and active time computed by the store match what ``PipelineRun`` computes from
its step rows; a page reads step rows by narrow columns only; filters and bad cursors.
"""

from __future__ import annotations

import uuid

import pytest
from backends import Backend

from dynpipe import Client, pipeline, step
from dynpipe.status import ExecutionStatus
from dynpipe.store.records import NewStepRun, StepOutcome
from dynpipe.store.run_pages import RunSummary
from dynpipe.store.store import open_store


def new_run(pipeline_name: str = "p", unlisted: bool = False) -> str:
    run_id = uuid.uuid4().hex
    open_store().metadata.create_run(run_id, f"{pipeline_name}-{run_id[:8]}", pipeline_name, {}, unlisted=unlisted)
    return run_id


def add_step(run_id: str, name: str, start: float | None, end: float | None, status: str = "completed") -> None:
    """A step row with exactly these times (``end`` None: still running)."""
    md = open_store().metadata
    new = NewStepRun(uuid.uuid4().hex, run_id, name, name, 0, "inline", [], {})
    if end is None:
        assert start is not None
        md.record_step_started(new, start)
    else:
        md.finish_step_run(new, StepOutcome(ExecutionStatus(status), end, 1, start=start))


def all_pages(client: Client, limit: int, **filters: object) -> list[RunSummary]:
    found: list[RunSummary] = []
    after = None
    for _ in range(100):  # a deadline on pages: a cursor that never ends fails the test
        page = client.list_run_summaries(limit=limit, after=after, **filters)  # type: ignore[arg-type]
        assert len(page.runs) <= limit
        found += page.runs
        after = page.next
        if after is None:
            return found
    raise AssertionError("pages never ended")


def test_keyset_pages_list_every_run_once_newest_first_while_runs_are_added(backend: Backend) -> None:
    old = [new_run() for _ in range(7)]
    client = Client()
    first = client.list_run_summaries(limit=3)
    assert [r.id for r in first.runs] == old[::-1][:3] and first.next is not None
    added = [new_run(), new_run()]  # newer than every run listed so far
    second = client.list_run_summaries(limit=3, after=first.next)
    added.append(new_run())
    third = client.list_run_summaries(limit=3, after=second.next)
    assert third.next is None
    listed = [r.id for page in (first, second, third) for r in page.runs]
    assert listed == old[::-1]  # each old run exactly once, in order; the new ones wait on top
    assert [r.id for r in client.list_run_summaries(limit=3).runs] == added[::-1]
    by_offset = client.list_run_summaries(limit=3, offset=3)  # ``page=2``: shifted by the new runs
    assert [r.id for r in by_offset.runs] == old[::-1][:3]
    assert [r.id for r in all_pages(client, 4)] == (old + added)[::-1]
    starts = [r.start_time for r in all_pages(client, 10)]
    assert starts == sorted(starts, reverse=True)


def test_active_time_is_the_union_of_step_intervals_as_the_run_computes_it(backend: Backend) -> None:
    busy = new_run()
    for name, start, end in [("a", 100.0, 110.0), ("b", 105.0, 107.0), ("c", 110.0, 112.0),  # nested, touching
                             ("d", 120.0, 125.0), ("e", 124.0, 130.0), ("f", 200.0, 200.5)]:  # overlap, apart
        add_step(busy, name, start, end)
    add_step(busy, "g", 300.0, None)  # still running: no end, not counted
    add_step(busy, "h", None, 140.0, "skipped")  # never started
    add_step(busy, "i", 90.0, 95.0, "failed")
    idle = new_run()  # no step yet, still open
    done = new_run()
    open_store().metadata.finish_run(done, ExecutionStatus.COMPLETED)  # ended without a step
    client = Client()
    summaries = {r.id: r for r in client.list_run_summaries(limit=10, active_time=True).runs}
    assert all(r.active_duration is None for r in client.list_run_summaries(limit=10).runs)  # not asked for
    assert summaries[busy].active_duration == pytest.approx(5 + 12 + 10 + 0.5)
    assert summaries[busy].step_counts == {"completed": 6, "running": 1, "skipped": 1, "failed": 1}
    assert summaries[busy].steps == 9
    assert summaries[idle].active_duration is None and summaries[idle].step_counts == {}
    assert summaries[done].active_duration == 0.0 and summaries[done].duration is not None
    for run in client.list_pipeline_runs(pipeline_name="p"):
        assert summaries[run.id].active_duration == pytest.approx(run.active_duration, abs=1e-5)


def test_counts_match_the_runs_steps_and_filters_narrow_the_pages(backend: Backend) -> None:
    @step(enable_cache=False)
    def part(i: int) -> int:
        if i == 2:
            raise ValueError("part 2 fails")
        return i

    @pipeline(dynamic=True, name="mixed")
    def mixed(n: int) -> None:
        for i in range(n):
            part(i)

    @pipeline(dynamic=True, name="clean")
    def clean() -> None:
        part(0)

    mixed(2)
    with pytest.raises(Exception, match="part 2 fails"):
        mixed(4)
    clean()
    part(5)  # a one-step run: unlisted unless asked for
    client = Client()
    summaries = all_pages(client, 2, active_time=True)
    assert [r.pipeline_name for r in summaries] == ["clean", "mixed", "mixed"]
    for summary in summaries:
        run = client.get_pipeline_run(summary.id)
        counts: dict[str, int] = {}
        for s in run.steps.values():
            counts[s.status.value] = counts.get(s.status.value, 0) + 1
        assert summary.step_counts == counts and summary.status == run.status and summary.name == run.name
        assert summary.active_duration == pytest.approx(run.active_duration, abs=1e-5)
    assert summaries[1].step_counts == {"completed": 2, "failed": 1}  # the failure ended the loop
    assert [r.pipeline_name for r in all_pages(client, 2, include_unlisted=True)][0] == "part"
    assert [r.id for r in all_pages(client, 1, pipeline_name="mixed")] == [r.id for r in summaries[1:]]
    assert [r.id for r in all_pages(client, 1, status="failed")] == [summaries[1].id]
    named = all_pages(client, 1, run_names={summaries[0].name, summaries[2].name, "no-such-run"})
    assert [r.id for r in named] == [summaries[0].id, summaries[2].id]
    assert client.list_run_summaries(run_names=set()).runs == []


def test_a_page_reads_step_rows_by_narrow_columns_only() -> None:
    run_ids = [new_run() for _ in range(3)]
    for run_id in run_ids:
        add_step(run_id, "a", 1.0, 2.0)
    statements: list[str] = []
    open_store().metadata._conn.set_trace_callback(statements.append)  # type: ignore[attr-defined]
    page = Client().list_run_summaries(limit=2, active_time=True)
    open_store().metadata._conn.set_trace_callback(None)  # type: ignore[attr-defined]
    assert [r.step_counts for r in page.runs] == [{"completed": 1}] * 2
    on_steps = [s for s in statements if "step_runs" in s]
    assert len(on_steps) == 2  # one GROUP BY for the counts, one for the active time, for the whole page
    assert [r.active_duration for r in page.runs] == [1.0, 1.0]
    assert not any("SELECT *" in s or "logs" in s or "outputs" in s for s in on_steps), on_steps
    plans = [
        row[-1]
        for s in on_steps
        for row in open_store().metadata.query("EXPLAIN QUERY PLAN " + s)  # type: ignore[attr-defined]
    ]
    assert any("COVERING INDEX step_runs_by_run_status" in p for p in plans), plans


def test_a_bad_cursor_or_limit_is_refused_naming_it(backend: Backend) -> None:
    new_run()
    with pytest.raises(ValueError, match="cursor 'garbage!' is not one a runs page returned"):
        Client().list_run_summaries(after="garbage!")
    with pytest.raises(ValueError, match="cursor 'WzFd' is not one"):  # base64 of [1]
        Client().list_run_summaries(after="WzFd")
    with pytest.raises(ValueError, match="limit must be at least 1, got 0"):
        Client().list_run_summaries(limit=0)
