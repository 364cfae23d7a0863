"""One page of the runs list with each run's step counts (and active time), in two or three reads.

The runs panel, ``GET /dynpipe/api/runs`` and ``dynpipe runs list`` show many runs at once;
loading each run's step rows (logs, parameters, tracebacks) only to count them read every
step of every listed run. Here a page costs: the page's run rows (keyset: newest first,
after a ``(start, id)`` cursor, so a page stays stable while new runs arrive), one
``GROUP BY`` of the page's step rows by status, and, when asked for (the CLI shows it, the
panel does not), the steps' ``(start, end)`` pairs whose union is each run's active time.
The step reads touch
only ``run_id, status, start, end``, which the ``step_runs_by_run_status`` index covers.

A mixin of both backends: the SQL is written once, with the placeholder and the way a list
is passed as the only differences between SQLite and PostgreSQL.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from .rows import run_record

if TYPE_CHECKING:  # the records are built only when runs are listed (summary_records.py)
    from .summary_records import RunSummaryRecord, SummaryFilter


#: The index that makes the step reads of a page index-only (both schemas create it).
STEP_INDEX = 'CREATE INDEX IF NOT EXISTS step_runs_by_run_status ON step_runs (run_id, status, start, "end")'
#: Newest first, in keyset order.
RUN_INDEX = "CREATE INDEX IF NOT EXISTS runs_by_start ON runs (start, id)"

#: The steps' intervals for active time: narrow columns, read from the covering index.
_SPANS = 'SELECT run_id, start, "end" FROM step_runs WHERE run_id {in_list} AND start IS NOT NULL AND "end" IS NOT NULL'
_COUNTS = "SELECT run_id, status, COUNT(*) AS n FROM step_runs WHERE run_id {in_list} GROUP BY run_id, status"


def union_seconds(spans: list[tuple[float, float]]) -> float:
    """Seconds covered by at least one ``(start, end)`` interval (as ``PipelineRun.active_duration``).

    In Python rather than SQL: SQLite's window functions (gaps and islands) took 3x longer
    than reading the narrow rows and merging them here.
    """
    spans.sort()
    total, (lo, hi) = 0.0, spans[0]
    for start, end in spans[1:]:
        if start > hi:
            total, lo = total + (hi - lo), start
        hi = max(hi, end)
    return total + (hi - lo)


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
        self,
        where: SummaryFilter,
        limit: int,
        after: tuple[float, str] | None = None,
        offset: int = 0,
        active: bool = False,
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
        seconds: dict[str, float] = {}
        if active:
            spans: dict[str, list[tuple[float, float]]] = {}
            for row in self.query(_SPANS.format(in_list=in_list), (ids,)):
                spans.setdefault(row["run_id"], []).append((row["start"], row["end"]))
            seconds = {run_id: union_seconds(found) for run_id, found in spans.items()}
        from .summary_records import RunSummaryRecord

        return [RunSummaryRecord(r, counts[r.id], seconds.get(r.id)) for r in runs]


class PostgresRunSummaryReads(RunSummaryReads):
    """The same reads with psycopg's placeholder and a list as an array parameter."""

    MARK = "%s"

    def _in_list(self, values: Sequence[str]) -> tuple[str, Any]:
        return "= ANY(%s)", list(values)
