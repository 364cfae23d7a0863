"""The widget's front end (dynpipe/notebook/static) passes ESLint and Prettier's check.

The tools come from the repo-root package.json / package-lock.json (``./dev setup`` runs
``npm ci``); without node_modules the test is skipped, naming how to install them.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
STATIC = ROOT / "dynpipe" / "notebook" / "static"

pytestmark = [
    pytest.mark.skipif(
        not (ROOT / "node_modules" / ".bin" / "eslint").exists(),
        reason="node_modules is absent: run `./dev setup` (or `npm ci`) to install ESLint and Prettier",
    ),
    pytest.mark.skipif(shutil.which("npx") is None, reason="npx (Node.js) is not installed"),
    pytest.mark.timeout(120),
]


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["npx", "--no-install", *args], cwd=ROOT, capture_output=True, text=True, timeout=100, check=False
    )


def test_static_files_exist_and_are_the_widgets_front_end() -> None:
    from dynpipe.notebook.widget import DagWidget

    assert (STATIC / "dag_widget.js").is_file() and (STATIC / "dag_widget.css").is_file()
    widget = DagWidget()
    try:
        assert widget._esm == (STATIC / "dag_widget.js").read_text()
        assert widget._css == (STATIC / "dag_widget.css").read_text()
    finally:
        widget.close()


def test_eslint_passes_on_the_static_folder() -> None:
    done = _run("eslint", "--max-warnings=0", str(STATIC.relative_to(ROOT)))
    assert done.returncode == 0, f"eslint failed:\n{done.stdout}\n{done.stderr}"


def test_prettier_check_passes_on_the_static_folder() -> None:
    done = _run("prettier", "--check", str(STATIC.relative_to(ROOT)))
    assert done.returncode == 0, f"prettier --check failed (run `npm run format`):\n{done.stdout}\n{done.stderr}"
