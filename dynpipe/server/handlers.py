"""REST handlers under ``/dynpipe/api/``: runs, steps, logs, artifact previews, export.

Every handler is an authenticated, authorized ``APIHandler`` (no token: 403). Runs are
read through ``dynpipe.Client`` on the store the server sees: ``$DYNPIPE_HOME``, else the
nearest ``.dynpipe/`` above the server's root directory, as the CLI finds it from its
working directory. The only file path a client can name is the notebook to export, and it
must lie inside the server's root directory.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import tornado.web
from jupyter_server.auth.decorator import authorized
from jupyter_server.base.handlers import APIHandler
from jupyter_server.utils import url_path_join

from ..store.client import Client
from ..store.location import find_store_root
from . import previews
from .dag_payload import dag_payload

AUTH_RESOURCE = "dynpipe"
MAX_PER_PAGE = 200


class DynpipeHandler(APIHandler):
    """Shared plumbing: the store, JSON replies, errors that name what was not found."""

    auth_resource = AUTH_RESOURCE

    @property
    def server_root(self) -> Path:
        return Path(self.settings["dynpipe_root_dir"]).resolve()

    def client(self) -> Client:
        # Located per request: the store may appear after the server started.
        return Client(find_store_root(self.server_root))

    def reply(self, data: Any) -> None:
        self.set_header("Content-Type", "application/json")
        self.set_header("Cache-Control", "no-store")
        self.finish(json.dumps(data, default=str))

    def get_run(self, client: Client, run_id: str) -> Any:
        try:
            return client.get_pipeline_run(run_id)
        except KeyError as exc:
            raise tornado.web.HTTPError(404, reason=f"no run {run_id!r}") from exc

    def json_body(self, what: str) -> dict[str, Any]:
        try:
            body = json.loads(self.request.body or b"{}")
        except ValueError:
            raise tornado.web.HTTPError(400, reason=f"{what}: the request body is not JSON") from None
        if not isinstance(body, dict):
            raise tornado.web.HTTPError(400, reason=f"{what}: the request body must be a JSON object")
        return body

    def notebook_path(self, rel: Any, what: str) -> Path:
        """The notebook ``rel`` names, which must exist inside the server root (403 outside)."""
        if not isinstance(rel, str) or not rel.endswith(".ipynb"):
            raise tornado.web.HTTPError(400, reason=f"{what}: 'path' must name a .ipynb notebook, got {rel!r}")
        root = self.server_root
        notebook = (root / rel.lstrip("/")).resolve()
        try:
            notebook.relative_to(root)
        except ValueError:
            raise tornado.web.HTTPError(403, reason=f"{what}: {rel!r} is outside the server root") from None
        if not notebook.is_file():
            raise tornado.web.HTTPError(404, reason=f"{what}: notebook {rel!r} does not exist")
        return notebook

    def int_arg(self, name: str, default: int, low: int, high: int) -> int:
        raw = self.get_argument(name, str(default))
        try:
            value = int(raw)
        except ValueError:
            reason = f"query parameter {name!r} must be an integer, got {raw!r}"
            raise tornado.web.HTTPError(400, reason=reason) from None
        if not low <= value <= high:
            reason = f"query parameter {name!r} must be in {low}..{high}, got {value}"
            raise tornado.web.HTTPError(400, reason=reason)
        return value


class RunsHandler(DynpipeHandler):
    @tornado.web.authenticated
    @authorized
    def get(self) -> None:
        """Runs newest first, ``?per_page=50&pipeline=NAME&status=STATUS`` and ``after=NEXT``
        (the ``next`` of the page before: stable while new runs arrive) or ``page=N``."""
        per_page = self.int_arg("per_page", 50, 1, MAX_PER_PAGE)
        after = self.get_argument("after", "") or None
        page = self.int_arg("page", 1, 1, 1_000_000)
        if after is not None and self.get_argument("page", ""):
            raise tornado.web.HTTPError(400, reason="query parameters 'after' and 'page' exclude each other")
        pipeline = self.get_argument("pipeline", "") or None
        status = self.get_argument("status", "") or None
        client = self.client()
        try:
            found = client.list_run_summaries(
                pipeline_name=pipeline, status=status, limit=per_page, after=after, offset=(page - 1) * per_page
            )
        except ValueError as exc:
            raise tornado.web.HTTPError(400, reason=f"query parameter 'after': {exc}") from None
        self.reply({
            "store": str(client.store.root),
            "page": page,
            "per_page": per_page,
            "has_more": found.next is not None,
            "next": found.next,
            "pipelines": [p.name for p in client.list_pipelines()],
            "runs": [previews.list_summary(r) for r in found.runs],
        })


class RunHandler(DynpipeHandler):
    @tornado.web.authenticated
    @authorized
    def get(self, run_id: str) -> None:
        run = self.get_run(self.client(), run_id)
        self.reply({
            "run": previews.run_summary(run),
            "steps": [previews.step_detail(s) for s in run.steps.values()],
            "dag": dag_payload(run),
        })


class StepLogHandler(DynpipeHandler):
    @tornado.web.authenticated
    @authorized
    def get(self, run_id: str, invocation_id: str) -> None:
        run = self.get_run(self.client(), run_id)
        step = run.steps.get(invocation_id)
        if step is None:
            raise tornado.web.HTTPError(404, reason=f"run {run.name!r} has no step {invocation_id!r}")
        self.reply(previews.capped_log(step))


class ArtifactHandler(DynpipeHandler):
    @tornado.web.authenticated
    @authorized
    def get(self, artifact_id: str) -> None:
        client = self.client()
        try:
            art = client.get_artifact_version(artifact_id)
        except KeyError as exc:
            raise tornado.web.HTTPError(404, reason=f"no artifact {artifact_id!r}") from exc
        self.reply(previews.artifact_preview(art, Path(client.store.root)))


class ExportHandler(DynpipeHandler):
    @tornado.web.authenticated
    @authorized
    def post(self) -> None:
        """``{"path": "dir/nb.ipynb", "name": optional}``: write ``dir/nb_pipeline.py`` beside it."""
        from ..notebook.export import export_notebook

        body = self.json_body("export")
        rel = body.get("path")
        notebook = self.notebook_path(rel, "export")
        root = self.server_root
        name = body.get("name")
        try:
            source = export_notebook(notebook, name if isinstance(name, str) and name else None)
        except (ValueError, SyntaxError, KeyError) as exc:
            raise tornado.web.HTTPError(400, reason=f"export of {rel!r} failed: {exc}") from None
        target = notebook.with_name(notebook.stem + "_pipeline.py")
        target.write_text(source)
        self.reply({"path": target.relative_to(root).as_posix(), "chars": len(source)})


def routes(base: str) -> list[tuple[str, type[DynpipeHandler]]]:
    seg = r"([^/]+)"
    return [
        (url_path_join(base, "runs"), RunsHandler),
        (url_path_join(base, "runs", seg), RunHandler),
        (url_path_join(base, "runs", seg, "steps", seg, "logs"), StepLogHandler),
        (url_path_join(base, "artifacts", seg), ArtifactHandler),
        (url_path_join(base, "export"), ExportHandler),
    ]
