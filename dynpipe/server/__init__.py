"""The jupyter_server extension behind the dynpipe JupyterLab extension.

Enabled on install by ``jupyter-config/jupyter_server_config.d/dynpipe.json`` (shipped
into ``etc/jupyter`` by the wheel). Serves the REST API under ``/dynpipe/api/``. Nothing
here imports jupyter_server at module level, so kernels can import ``dag_payload``.
"""

from __future__ import annotations

from typing import Any

from .dag_payload import MIME_TYPE, dag_payload, nodes_payload

__all__ = ["MIME_TYPE", "dag_payload", "nodes_payload"]


def _jupyter_server_extension_points() -> list[dict[str, str]]:
    return [{"module": "dynpipe.server"}]


def _jupyter_labextension_paths() -> list[dict[str, str]]:
    """Where the prebuilt labextension sits in a source tree (``./dev`` links it)."""
    return [{"src": "../labextension", "dest": "dynpipe"}]


def _load_jupyter_server_extension(serverapp: Any) -> None:
    """Serve the REST API under ``/dynpipe/api/`` (runs and export, schedules)."""
    from pathlib import Path

    from jupyter_server.utils import url_path_join

    from ..store.location import find_store_root
    from . import handlers, schedules_api

    web_app = serverapp.web_app
    web_app.settings["dynpipe_root_dir"] = str(serverapp.root_dir)
    base = url_path_join(web_app.settings["base_url"], "dynpipe", "api")
    web_app.add_handlers(".*$", handlers.routes(base) + schedules_api.routes(base))
    serverapp.log.info("dynpipe: REST API at %s (store: %s)", base, find_store_root(Path(serverapp.root_dir)))
