"""``./dev setup`` prints dynpipe's own progress, not pip's warnings; pip's errors still show.

Run against a copy of the script with a stand-in ``python`` in the venv that behaves like
pip does under ``-q``: it prints WARNING lines on success, and an error plus a non-zero
exit status on failure.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).parent.parent
FAKE_PIP = """#!/bin/sh
echo "WARNING: Ignoring invalid distribution ~ip (/somewhere/site-packages)"
echo "WARNING: The script foo is installed in '/x/bin' which is not on PATH." >&2
if [ -n "$DEV_TEST_FAIL" ]; then echo "ERROR: No matching distribution found for nothing" >&2; exit 3; fi
exit 0
"""


def _project(tmp_path: Path) -> Path:
    work = tmp_path / "proj"
    work.mkdir()
    shutil.copy(ROOT / "dev", work / "dev")
    for name in ("pyproject.toml", "package-lock.json"):
        (work / name).write_text("{}\n")
    (work / "node_modules").mkdir()  # newer than package-lock.json: npm ci is not run
    python = work / "venv" / "bin" / "python"
    python.parent.mkdir(parents=True)
    python.write_text(FAKE_PIP)
    python.chmod(0o755)
    return work


def _setup(work: Path, fail: bool) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, DYNPIPE_VENV="venv")
    if fail:
        env["DEV_TEST_FAIL"] = "1"
    return subprocess.run(
        ["bash", str(work / "dev"), "setup"], cwd=work, env=env, capture_output=True, text=True, timeout=60,
    )


@pytest.mark.skipif(shutil.which("dot") is None or not Path("/usr/bin/chromium").exists(), reason="needs dot, chromium")
def test_setup_shows_its_own_progress_and_hides_pip_warnings(tmp_path: Path) -> None:
    work = _project(tmp_path)
    done = _setup(work, fail=False)
    assert done.returncode == 0, done.stderr
    out = done.stdout + done.stderr
    assert "WARNING" not in out
    assert "dev: installing dynpipe and test dependencies" in out and "dev: dynpipe installed" in out
    assert (work / "venv" / ".dynpipe-installed").exists()


@pytest.mark.skipif(shutil.which("dot") is None or not Path("/usr/bin/chromium").exists(), reason="needs dot, chromium")
def test_a_failing_pip_shows_its_output_and_exit_status(tmp_path: Path) -> None:
    work = _project(tmp_path)
    failed = _setup(work, fail=True)
    assert failed.returncode == 3
    assert "ERROR: No matching distribution found for nothing" in failed.stderr
    assert "failed (exit 3)" in failed.stderr
    assert not (work / "venv" / ".dynpipe-installed").exists()
