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
    from .handlers import setup_handlers

    setup_handlers(serverapp)
