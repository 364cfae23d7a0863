"""Store trust: another user's store is refused, the walk stays in our folders, files are private,
and a store this user cannot write gives an error naming the path and the reason.

Runs as root; "another user" is nobody (65534): folders are chowned to it, and processes run
as it with ``setpriv`` (keeping only CAP_DAC_READ_SEARCH, so it can read the venv under /root
but writes are checked as for nobody).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import stat
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from dynpipe import Client, pipeline, step
from dynpipe.errors import StoreAccessError, UnsafeStoreError
from dynpipe.store.location import find_store_root
from dynpipe.store.store import Store

NOBODY = 65534
REPO = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.skipif(
    not hasattr(os, "geteuid") or os.geteuid() != 0 or shutil.which("setpriv") is None,
    reason="needs root (to chown to nobody) and setpriv",
)


@pytest.fixture
def shared_tmp() -> Iterator[Path]:
    """A folder every user can reach (pytest's tmp_path is 0700 root)."""
    import tempfile

    folder = Path(tempfile.mkdtemp(prefix="dynpipe-shared-"))
    folder.chmod(0o755)
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def as_nobody(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    cmd = [
        "setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups",
        "--inh-caps=+dac_read_search", "--ambient-caps=+dac_read_search", *args,
    ]
    full_env = {"PATH": os.environ["PATH"], "PYTHONPATH": str(REPO), "HOME": str(cwd), **env}
    return subprocess.run(cmd, env=full_env, cwd=cwd, capture_output=True, text=True, timeout=120, check=False)


def _fill_store(root: Path) -> None:
    """A real store with a run in it (metadata.db and an artifact file)."""
    os.environ["DYNPIPE_HOME"] = str(root)
    try:

        @step
        def big() -> bytes:
            return b"x" * 10_000

        @pipeline(dynamic=True)
        def fill() -> None:
            big()

        fill()
    finally:
        del os.environ["DYNPIPE_HOME"]


# -- 1. ownership ------------------------------------------------------------------------------
def test_store_folder_owned_by_another_user_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DYNPIPE_HOME")
    project = tmp_path / "project"
    (project / "sub").mkdir(parents=True)
    planted = project / ".dynpipe"
    planted.mkdir()
    os.chown(planted, NOBODY, NOBODY)
    monkeypatch.chdir(project / "sub")
    with pytest.raises(UnsafeStoreError, match=rf"{planted}.*owned by nobody \(uid {NOBODY}\)"):
        Client()
    assert not (planted / "metadata.db").exists()


def test_cli_refuses_a_foreign_store_with_a_message(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    planted = tmp_path / "store"
    planted.mkdir()
    os.chown(planted, NOBODY, NOBODY)
    proc = subprocess.run(
        [sys.executable, "-m", "dynpipe.cli", "runs", "list"],
        env={**os.environ, "DYNPIPE_HOME": str(planted), "PYTHONPATH": str(REPO)},
        capture_output=True, text=True, timeout=120, check=False,
    )
    assert proc.returncode == 1
    assert f"{planted}" in proc.stderr and "owned by nobody" in proc.stderr
    assert "DYNPIPE_SAFE_STORE" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_a_file_in_the_store_owned_by_another_user_is_refused(store_home: Path) -> None:
    _fill_store(store_home)
    db = store_home / "metadata.db"
    os.chown(db, NOBODY, NOBODY)
    with pytest.raises(UnsafeStoreError, match=rf"{db} is owned by nobody"):
        Store(store_home)
    os.chown(db, 0, 0)
    store = Store(store_home)
    files = [p for p in (store_home / "artifacts").rglob("*") if p.is_file()]
    assert len(files) == 1
    os.chown(files[0], NOBODY, NOBODY)  # a pickle planted in an existing artifact's place
    uri = str(files[0].relative_to(store_home))
    with pytest.raises(UnsafeStoreError, match=rf"{files[0]}.*owned by nobody"):
        store.files.get(uri)


def test_the_walk_never_enters_a_folder_owned_by_someone_else(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DYNPIPE_HOME")
    shared = tmp_path / "shared"
    mine = shared / "mine" / "deeper"
    mine.mkdir(parents=True)
    (shared / ".dynpipe").mkdir()
    os.chown(shared / ".dynpipe", NOBODY, NOBODY)
    os.chown(shared, NOBODY, NOBODY)
    assert find_store_root(mine) == mine / ".dynpipe"
    (shared / "mine" / ".dynpipe").mkdir()
    assert find_store_root(mine) == shared / "mine" / ".dynpipe"  # our own folders are still walked


@pytest.mark.parametrize("how", ["path", "star"])
def test_safe_store_override_trusts_a_foreign_store(
    store_home: Path, monkeypatch: pytest.MonkeyPatch, how: str
) -> None:
    _fill_store(store_home)
    for path in [store_home, *store_home.rglob("*")]:
        os.chown(path, NOBODY, NOBODY, follow_symlinks=False)
    with pytest.raises(UnsafeStoreError):
        Store(store_home)
    monkeypatch.setenv("DYNPIPE_SAFE_STORE", "/elsewhere" + os.pathsep + "/also/not/it")
    with pytest.raises(UnsafeStoreError):
        Store(store_home)
    monkeypatch.setenv("DYNPIPE_SAFE_STORE", str(store_home) if how == "path" else "*")
    store = Store(store_home)
    files = [p for p in (store_home / "artifacts").rglob("*") if p.is_file()]
    assert store.files.get(str(files[0].relative_to(store_home))).startswith(b"x")


# -- 2. private by default -----------------------------------------------------------------------
@pytest.mark.parametrize("umask", [0o022, 0o000], ids=["umask022", "umask000"])
def test_store_folders_are_0700_and_files_0600_whatever_the_umask(store_home: Path, umask: int) -> None:
    @step
    def small() -> int:
        return 1

    @step
    def large() -> bytes:
        return os.urandom(50_000)

    @step(runtime="isolated", enable_cache=False)
    def large_isolated() -> bytes:
        return os.urandom(60_000)

    @pipeline(dynamic=True, enable_cache=False)
    def private() -> None:
        small()
        large()
        large_isolated()

    old = os.umask(umask)
    try:
        private()
    finally:
        os.umask(old)
    seen = {p.name for p in store_home.iterdir()}
    assert {"metadata.db", "metadata.db-wal", "metadata.db-shm", "artifacts"} <= seen
    assert stat.S_IMODE(store_home.stat().st_mode) == 0o700
    n_files = 0
    for path in store_home.rglob("*"):
        mode = stat.S_IMODE(path.lstat().st_mode)
        if path.is_dir():
            assert mode == 0o700, path
        else:
            n_files += 1
            assert mode == 0o600, path
    assert n_files >= 5  # the database, its -wal/-shm, two artifact files


def test_an_existing_loose_store_is_tightened(store_home: Path) -> None:
    _fill_store(store_home)
    store_home.chmod(0o755)
    (store_home / "metadata.db").chmod(0o644)
    sub = next(p for p in (store_home / "artifacts").iterdir() if p.is_dir())
    sub.chmod(0o755)
    store = Store(store_home)
    assert stat.S_IMODE(store_home.stat().st_mode) == 0o700
    assert stat.S_IMODE((store_home / "metadata.db").stat().st_mode) == 0o600
    assert stat.S_IMODE((store_home / "artifacts").stat().st_mode) == 0o700
    data = os.urandom(8)
    while hashlib.sha256(data).hexdigest()[:2] != sub.name:
        data = os.urandom(8)
    store.files.put(data)  # the first write into a loose artifact subfolder tightens it
    assert stat.S_IMODE(sub.stat().st_mode) == 0o700


# -- 5. a store this user cannot write ----------------------------------------------------------------
LIST_RUNS = ["python", "-m", "dynpipe.cli", "runs", "list"]

RUN_PIPELINE = textwrap.dedent(
    """
    from dynpipe import pipeline, step

    @step
    def one() -> int:
        return 1

    @pipeline(dynamic=True)
    def p() -> None:
        one()

    p()
    """
)


def _nobody_python(args: list[str]) -> list[str]:
    return [sys.executable, *args[1:]] if args[0] == "python" else args


def test_cli_as_another_user_on_my_store_says_who_owns_it(shared_tmp: Path) -> None:
    store = shared_tmp / "store"
    _fill_store(store)
    proc = as_nobody(_nobody_python(LIST_RUNS), {"DYNPIPE_HOME": str(store)}, shared_tmp)
    assert proc.returncode == 1, proc.stderr
    assert f"{store}" in proc.stderr and "owned by root (uid 0)" in proc.stderr
    assert "OperationalError" not in proc.stderr and "Traceback" not in proc.stderr


@pytest.mark.parametrize("entry", ["cli", "pipeline"])
def test_read_only_store_gives_a_clear_error(shared_tmp: Path, entry: str) -> None:
    store = shared_tmp / "store"
    _fill_store(store)
    for path in [store, *store.rglob("*")]:
        os.chown(path, NOBODY, NOBODY)
    for path in store.rglob("*"):
        path.chmod(0o500 if path.is_dir() else 0o400)
    store.chmod(0o500)
    (shared_tmp / "p.py").write_text(RUN_PIPELINE)
    args = LIST_RUNS if entry == "cli" else ["python", str(shared_tmp / "p.py")]
    proc = as_nobody(_nobody_python(args), {"DYNPIPE_HOME": str(store)}, shared_tmp)
    assert proc.returncode == 1, proc.stderr
    assert "unable to open database file" not in proc.stderr.splitlines()[-1]
    last = proc.stderr.strip().splitlines()[-1]
    assert f"cannot open the dynpipe store {store}" in last
    assert "permission denied" in last and "mode 0o500" in last, last
    if entry == "cli":
        assert "Traceback" not in proc.stderr
    else:
        assert "StoreAccessError" in last


def test_store_access_error_when_the_database_cannot_be_opened(tmp_path: Path) -> None:
    store = tmp_path / "store"
    store.mkdir()
    (store / "metadata.db").mkdir()  # not a file: SQLite cannot open it
    with pytest.raises(StoreAccessError, match=rf"cannot open the dynpipe store {store}"):
        Store(store)
