"""PostgreSQL reads of single step runs (what ``PipelineRun.steps`` loads on demand).

A mixin of ``PostgresMetadata``, kept apart so that module stays within its size.
"""

from __future__ import annotations

from .postgres_pool import PostgresPool
from .records import StepRunRecord
from .rows import step_run_record


class StepRunReads(PostgresPool):
    """``invocation_ids_of_run`` and ``step_run_of_run`` on top of the pool's ``query``."""

    def invocation_ids_of_run(self, run_id: str) -> list[str]:
        rows = self.query("SELECT invocation_id FROM step_runs WHERE run_id = %s ORDER BY seq, row_no", (run_id,))
        return [row["invocation_id"] for row in rows]

    def step_run_of_run(self, run_id: str, invocation_id: str) -> StepRunRecord | None:
        rows = self.query(
            "SELECT * FROM step_runs WHERE run_id = %s AND invocation_id = %s", (run_id, invocation_id)
        )
        return step_run_record(rows[0]) if rows else None
