"""The JupyterLab extension's own checks, run from pytest: vitest, tsc, ESLint, Prettier.

They need the npm packages in extension/node_modules (``./dev`` installs them with
``npm ci``); without them the tests skip and say so.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

EXTENSION = Path(__file__).resolve().parent.parent / "extension"

pytestmark = [
    pytest.mark.skipif(shutil.which("npm") is None, reason="npm is not installed (Node.js 20 builds the extension)"),
    pytest.mark.skipif(
        not (EXTENSION / "node_modules").is_dir(),
        reason="extension/node_modules is missing: run ./dev setup (npm ci) first",
    ),
    pytest.mark.timeout(300),
]


def npm(script: str) -> str:
    out = subprocess.run(["npm", "run", "--silent", script], cwd=EXTENSION, capture_output=True, text=True,
                         timeout=240)
    assert out.returncode == 0, f"npm run {script} failed:\n{out.stdout}\n{out.stderr}"
    return out.stdout + out.stderr


def test_typescript_unit_tests_pass() -> None:
    output = npm("test")
    assert "Test Files" in output and "failed" not in output, output


def test_typescript_type_checks() -> None:
    npm("typecheck")


def test_lint_and_formatting() -> None:
    output = npm("lint")
    assert "All matched files use Prettier code style" in output, output
