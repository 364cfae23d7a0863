"""One page of the runs list with each run's step counts and active time, in three reads.

The runs panel, ``GET /dynpipe/api/runs`` and ``dynpipe runs list`` show many runs at once;
loading each run's step rows (logs, parameters, tracebacks) only to count them read every
step of every listed run. Here a page costs: the page's run rows (keyset: newest first,
after a ``(start, id)`` cursor, so a page stays stable while new runs arrive), one
``GROUP BY`` of the page's step rows by status, and one pass computing each run's active
time (the union of its steps' ``(start, end)`` intervals) in SQL. The step reads touch
only ``run_id, status, start, end``, which the ``step_runs_by_run_status`` index covers.

A mixin of both backends: the SQL is written once, with the placeholder and the way a list
is passed as the only differences between SQLite and PostgreSQL.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .records import RunRecord
from .rows import run_record


@dataclass(frozen=True)
class SummaryFilter:
    """Which runs a page lists; ``None`` fields do not filter."""

    pipeline_name: str | None = None
    status: str | None = None
    #: only runs with these names (a schedule's runs)
    run_names: Sequence[str] | None = None
    include_unlisted: bool = False


@dataclass(frozen=True)
class RunSummaryRecord:
    """A run's row, its step counts by status and its active seconds (``None``: no step ended)."""

    run: RunRecord
    step_counts: dict[str, int] = field(default_factory=dict)
    active: float | None = None


#: The index that makes the step reads of a page index-only (both schemas create it).
STEP_INDEX = 'CREATE INDEX IF NOT EXISTS step_runs_by_run_status ON step_runs (run_id, status, start, "end")'
#: Newest first, in keyset order.
RUN_INDEX = "CREATE INDEX IF NOT EXISTS runs_by_start ON runs (start, id)"

#: Islands of overlapping step intervals per run (gaps and islands): a step opens a new
#: island when it starts after every earlier step of its run ended; the run's active time
#: is the sum of its islands' spans. Steps still open (no end) do not count, as in
#: ``PipelineRun.active_duration``.
_ACTIVE = """
WITH spans AS (
    SELECT run_id, start AS lo, "end" AS hi,
           MAX("end") OVER (PARTITION BY run_id ORDER BY start, "end"
                            ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING) AS before_hi
    FROM step_runs WHERE run_id {in_list} AND start IS NOT NULL AND "end" IS NOT NULL
), marked AS (
    SELECT run_id, lo, hi,
           SUM(CASE WHEN before_hi IS NULL OR lo > before_hi THEN 1 ELSE 0 END)
               OVER (PARTITION BY run_id ORDER BY lo, hi ROWS UNBOUNDED PRECEDING) AS island
    FROM spans
), islands AS (
    SELECT run_id, MAX(hi) - MIN(lo) AS span FROM marked GROUP BY run_id, island
)
SELECT run_id, SUM(span) AS active FROM islands GROUP BY run_id
"""
_COUNTS = "SELECT run_id, status, COUNT(*) AS n FROM step_runs WHERE run_id {in_list} GROUP BY run_id, status"


class RunSummaryReads:
    """``run_summaries`` for a backend that has ``query(sql, params)`` returning rows by name."""

    #: the driver's placeholder
    MARK = "?"

    if TYPE_CHECKING:  # the backend's own method (a stub here would shadow PostgresPool's)

        def query(self, sql: str, params: Any = ()) -> Sequence[Any]: ...

    def _in_list(self, values: Sequence[str]) -> tuple[str, Any]:
        """``IN`` a list passed as one parameter (no statement per list length, no length limit)."""
        return f"IN (SELECT value FROM json_each({self.MARK}))", json.dumps(list(values))

    def run_summaries(
        self, where: SummaryFilter, limit: int, after: tuple[float, str] | None = None, offset: int = 0
    ) -> list[RunSummaryRecord]:
        mark = self.MARK
        clauses: list[str] = []
        params: list[Any] = []
        for column, value in (("pipeline_name", where.pipeline_name), ("status", where.status)):
            if value is not None:
                clauses.append(f"{column} = {mark}")
                params.append(value)
        if where.run_names is not None:
            sql, param = self._in_list(where.run_names)
            clauses.append(f"name {sql}")
            params.append(param)
        if not where.include_unlisted:
            clauses.append("unlisted = 0")
        if after is not None:
            clauses.append(f"(start < {mark} OR (start = {mark} AND id < {mark}))")
            params += [after[0], after[0], after[1]]
        sql = "SELECT * FROM runs" + (" WHERE " + " AND ".join(clauses) if clauses else "")
        sql += f" ORDER BY start DESC, id DESC LIMIT {int(limit)}"
        if offset:
            sql += f" OFFSET {int(offset)}"
        runs = [run_record(row) for row in self.query(sql, params)]
        if not runs:
            return []
        in_list, ids = self._in_list([r.id for r in runs])
        counts: dict[str, dict[str, int]] = {r.id: {} for r in runs}
        for row in self.query(_COUNTS.format(in_list=in_list), (ids,)):
            counts[row["run_id"]][row["status"]] = int(row["n"])
        active = {row["run_id"]: float(row["active"]) for row in self.query(_ACTIVE.format(in_list=in_list), (ids,))}
        return [RunSummaryRecord(r, counts[r.id], active.get(r.id)) for r in runs]


class PostgresRunSummaryReads(RunSummaryReads):
    """The same reads with psycopg's placeholder and a list as an array parameter."""

    MARK = "%s"

    def _in_list(self, values: Sequence[str]) -> tuple[str, Any]:
        return "= ANY(%s)", list(values)
