"""REST handlers for schedules: list them, preview a cron's next fire times, and schedule
a notebook (export it beside itself, then create the schedule).

A thin layer over ``schedule/manage.py`` and ``schedule/cron.py``: validation, module
checks and storage stay there, so a schedule made from JupyterLab is exactly one that
``dynpipe schedule create`` would make (and ``dynpipe schedule list`` shows it).
"""

from __future__ import annotations

import ast
import json
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import tornado.web
from jupyter_server.auth.decorator import authorized
from jupyter_server.utils import url_path_join

from .handlers import DynpipeHandler

#: Fire times a preview lists at most.
MAX_PREVIEW = 20


def prefill(default_source: str) -> str:
    """A ``parameters`` cell default as the ``KEY=VALUE`` text a schedule run parses back
    (a string as itself, other literals as JSON, anything else as its source)."""
    try:
        value = ast.literal_eval(default_source)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return default_source
    if isinstance(value, str):
        return value
    try:
        return json.dumps(value)
    except (TypeError, ValueError):
        return default_source


def fire_times(cron: str, tz: str, count: int, after: datetime | None = None) -> dict[str, Any]:
    """The next ``count`` due times of ``cron`` in ``tz`` (ValueError names a bad cron or zone)."""
    from ..schedule.cron import CronSchedule, local_text

    schedule = CronSchedule(cron, tz)
    when = after or datetime.now(timezone.utc)
    fires = []
    for _ in range(count):
        when = schedule.next_after(when)
        fires.append({"utc": when.isoformat(), "local": local_text(when, tz)})
    return {"cron": schedule.expr, "timezone": tz, "next": fires}


class SchedulePreviewHandler(DynpipeHandler):
    @tornado.web.authenticated
    @authorized
    def get(self) -> None:
        """``?cron=0 3 * * *&timezone=Europe/Berlin&count=5``: the next fire times, or 400 saying why not."""
        cron = self.get_argument("cron", "")
        tz = self.get_argument("timezone", "UTC") or "UTC"
        count = self.int_arg("count", 5, 1, MAX_PREVIEW)
        try:
            self.reply(fire_times(cron, tz, count))
        except ValueError as exc:
            raise tornado.web.HTTPError(400, reason=str(exc)) from None


class NotebookParametersHandler(DynpipeHandler):
    @tornado.web.authenticated
    @authorized
    def get(self) -> None:
        """``?path=dir/nb.ipynb``: the pipeline name and the notebook's ``parameters`` cell."""
        from ..notebook.export import export_module

        rel = self.get_argument("path", "")
        notebook = self.notebook_path(rel, "parameters")
        try:
            exported = export_module(notebook)
        except (ValueError, SyntaxError, KeyError) as exc:
            raise tornado.web.HTTPError(400, reason=f"parameters of {rel!r}: {exc}") from None
        self.reply({
            "path": rel,
            "function": exported.function,
            "parameters": [
                {"name": p.name, "annotation": p.annotation, "default": p.default, "value": prefill(p.default)}
                for p in exported.parameters
            ],
        })


class SchedulesHandler(DynpipeHandler):
    def _store_root(self) -> Path:
        return Path(self.client().store.root)

    @tornado.web.authenticated
    @authorized
    def get(self) -> None:
        """Every schedule of the store, with its next fire time while active."""
        from ..schedule.cron import CronSchedule, local_text
        from ..store.schedules import ScheduleStore

        store = ScheduleStore(self._store_root())
        try:
            records = store.schedules()
        finally:
            store.close()
        now = datetime.now(timezone.utc)
        rows = []
        for s in records:
            nxt = CronSchedule(s.cron, s.timezone).next_after(now) if s.state == "active" else None
            rows.append({
                "name": s.name, "state": s.state, "cron": s.cron, "timezone": s.timezone,
                "module": s.module, "pipeline": s.pipeline, "params": s.params,
                "next": local_text(nxt, s.timezone) if nxt else None,
            })
        self.reply({"schedules": rows})

    @tornado.web.authenticated
    @authorized
    def post(self) -> None:
        """``{"path": nb, "name", "cron", "timezone", "params": {k: v}, "target": "local"}``:
        export the notebook to ``nb_pipeline.py`` beside it and schedule that module."""
        from ..notebook.export import export_notebook
        from ..schedule.cron import CronSchedule, local_text
        from ..schedule.manage import build_spec, create_schedule

        body = self.json_body("schedule")
        notebook = self.notebook_path(body.get("path"), "schedule")
        target = body.get("target", "local")
        if target != "local":
            reason = f"schedule: target {target!r} is not supported here (use 'dynpipe schedule kubernetes')"
            raise tornado.web.HTTPError(400, reason=reason)
        params = body.get("params") or {}
        if not isinstance(params, dict):
            raise tornado.web.HTTPError(400, reason="schedule: 'params' must be an object of NAME: VALUE")
        try:
            spec = build_spec(
                name=body.get("name"), module=str(notebook.with_name(notebook.stem + "_pipeline.py")),
                cron=body.get("cron"), timezone=body.get("timezone") or "UTC",
                params=[f"{k}={v}" for k, v in params.items()],
            )
            source = export_notebook(notebook)
        except (ValueError, SyntaxError, KeyError) as exc:
            raise tornado.web.HTTPError(400, reason=f"schedule: {exc}") from None
        module = Path(spec.module)
        module.write_text(source)
        try:
            record = create_schedule(spec, self._store_root())
        except ValueError as exc:
            code = 409 if "already exists" in str(exc) else 400
            raise tornado.web.HTTPError(code, reason=f"schedule: {exc}") from None
        nxt = CronSchedule(record.cron, record.timezone).next_after(datetime.now(timezone.utc))
        self.reply({
            "name": record.name, "module": module.relative_to(self.server_root).as_posix(),
            "pipeline": record.pipeline, "cron": record.cron, "timezone": record.timezone,
            "params": record.params, "next": local_text(nxt, record.timezone),
        })


def routes(base: str) -> list[tuple[str, type[DynpipeHandler]]]:
    return [
        (url_path_join(base, "schedules"), SchedulesHandler),
        (url_path_join(base, "schedules", "preview"), SchedulePreviewHandler),
        (url_path_join(base, "notebook-parameters"), NotebookParametersHandler),
    ]
