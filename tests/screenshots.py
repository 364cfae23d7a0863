"""Where the real-browser tests put their screenshots.

Always in ``test-artifacts/`` (git-ignored; pictures of failures go there too). The pictures
committed under ``docs/`` are replaced only when ``DYNPIPE_UPDATE_SCREENSHOTS=1``, so an
ordinary test run leaves the repository clean.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = ROOT / "test-artifacts"


def updating_docs() -> bool:
    return os.environ.get("DYNPIPE_UPDATE_SCREENSHOTS", "").strip().lower() in ("1", "true", "yes", "on")


def shot(name: str) -> str:
    """Where to save screenshot ``name`` (a path in test-artifacts/, as Playwright takes it)."""
    ARTIFACTS.mkdir(exist_ok=True)
    return str(ARTIFACTS / name)


def publish(name: str, docs_path: str) -> None:
    """Copy test-artifacts/``name`` over ``docs/<docs_path>``, only with DYNPIPE_UPDATE_SCREENSHOTS=1."""
    if not updating_docs():
        return
    target = ROOT / "docs" / docs_path
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(ARTIFACTS / name, target)
