"""Where the embedded store lives, and whether this user may trust it.

The store is ``$DYNPIPE_HOME``, else the nearest ``.dynpipe/`` upwards, else ``./.dynpipe/``.
Like git's ``safe.directory``: loading an artifact can unpickle code, so a store folder (or a
file in it) owned by another user is refused, and the upward walk never enters a folder owned
by someone else. ``DYNPIPE_SAFE_STORE`` (paths separated by ``os.pathsep``, or ``*``) opts in.
New store folders are 0700 and files 0600, whatever the umask.
"""

from __future__ import annotations

import contextlib
import os
import stat
from pathlib import Path

from .. import settings
from ..errors import StoreAccessError, UnsafeStoreError

SAFE_STORE_ENV = "DYNPIPE_SAFE_STORE"
DIR_MODE = 0o700
FILE_MODE = 0o600


def current_uid() -> int | None:
    """The effective user id, or None where the OS has no owners (ownership checks are off)."""
    return os.geteuid() if hasattr(os, "geteuid") else None


def user_name(uid: int) -> str:
    """``name (uid N)`` for error messages; only called on the error path."""
    try:
        import pwd

        return f"{pwd.getpwuid(uid).pw_name} (uid {uid})"
    except (ImportError, KeyError):
        return f"uid {uid}"


def is_trusted_override(root: Path) -> bool:
    """True if ``DYNPIPE_SAFE_STORE`` names ``root`` (or is ``*``): foreign ownership is accepted."""
    value = settings.safe_store()
    if not value:
        return False
    if value == "*":
        return True
    target = os.path.realpath(root)
    return any(
        os.path.realpath(os.path.expanduser(item)) == target for item in value.split(os.pathsep) if item
    )


def _owner(path: Path) -> int | None:
    try:
        return os.stat(path).st_uid
    except OSError:
        return None


def find_store_root(start: Path | None = None) -> Path:
    """The store root for ``start`` (default: the working directory); never checks ownership itself."""
    home = settings.store_home()
    if home is not None:
        return home
    here = (start or Path.cwd()).resolve()
    me = current_uid()
    folder = here
    while True:
        candidate = folder / ".dynpipe"
        if candidate.is_dir():
            return candidate
        parent = folder.parent
        if parent == folder:
            break
        if me is not None and _owner(parent) != me:
            break  # another user's folder: a .dynpipe/ there could be planted
        folder = parent
    return here / ".dynpipe"


def _refuse(path: Path, uid: int, root: Path) -> UnsafeStoreError:
    me = current_uid()
    return UnsafeStoreError(
        f"refusing to use the dynpipe store {root}: {path} is owned by {user_name(uid)}, not by you"
        f" ({user_name(me) if me is not None else 'unknown'}). Its artifacts can run code when loaded."
        f" If you trust that user, set {SAFE_STORE_ENV}={root} (or {SAFE_STORE_ENV}='*')."
    )


def check_store_owner(root: Path) -> bool:
    """Refuse a store (folder or top-level entry) owned by another user; True if the override applies.

    Checked once per process per store: the root and its entries (a few stats). Artifact files
    are checked when read (an ``fstat`` the read needs anyway), artifact subfolders when written.
    """
    me = current_uid()
    if me is None:
        return True
    if is_trusted_override(root):
        return True
    try:
        st = os.stat(root)
    except FileNotFoundError:
        return False
    except OSError as exc:
        raise StoreAccessError(f"cannot inspect the dynpipe store {root}: {exc.strerror}") from exc
    if st.st_uid != me:
        raise _refuse(root, st.st_uid, root)
    try:
        entries = list(os.scandir(root))
    except NotADirectoryError:
        return False
    except PermissionError as exc:
        raise StoreAccessError(f"cannot list the dynpipe store {root}: permission denied") from exc
    for entry in entries:
        # Another process may remove an entry between the listing and here (SQLite's journal,
        # a Dask runtime's probe file, a temporary name renamed): gone, it needs no check.
        with contextlib.suppress(FileNotFoundError):
            est = entry.stat(follow_symlinks=False)
            if est.st_uid != me:
                raise _refuse(Path(entry.path), est.st_uid, root)
            if est.st_mode & 0o077 and not stat.S_ISLNK(est.st_mode):  # made by an older version
                os.chmod(entry.path, est.st_mode & (DIR_MODE if stat.S_ISDIR(est.st_mode) else FILE_MODE))
    return False


def make_private_dir(path: Path) -> None:
    """Create ``path`` (and parents) so that the last folder is 0700 whatever the umask."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.mkdir(path, DIR_MODE)
        except FileExistsError:
            pass
        st = os.stat(path)
    if st.st_mode & 0o077 and st.st_uid == current_uid():
        os.chmod(path, st.st_mode & DIR_MODE)  # only takes rights away (a read-only store stays so)


def make_private_file(path: Path) -> None:
    """Create ``path`` (0600) if missing, else take group/other rights away if this user owns it."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        try:
            os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), FILE_MODE))
        except FileExistsError:
            pass
        return
    if st.st_mode & 0o077 and st.st_uid == current_uid():
        os.chmod(path, st.st_mode & FILE_MODE)


def describe_access_problem(root: Path, path: Path, exc: BaseException) -> str:
    """Say which path cannot be opened or written, and why (owner, permission, read-only)."""
    reasons: list[str] = []
    me = current_uid()
    for p in (root, path):
        try:
            st = os.stat(p)
        except FileNotFoundError:
            continue
        except OSError as err:
            reasons.append(f"{p}: {err.strerror}")
            continue
        if me is not None and st.st_uid != me:
            reasons.append(f"{p} is owned by {user_name(st.st_uid)}")
        if not os.access(p, os.W_OK | (os.X_OK if p.is_dir() else 0)):
            reasons.append(f"permission denied: you cannot write {p} (mode {oct(st.st_mode & 0o777)})")
    try:
        if os.statvfs(root).f_flag & os.ST_RDONLY:
            reasons.append(f"{root} is on a read-only file system")
    except (OSError, AttributeError):
        pass
    why = "; ".join(dict.fromkeys(reasons)) or str(exc)
    return f"cannot open the dynpipe store {root} ({path.name}): {why}. Underlying error: {exc}"
