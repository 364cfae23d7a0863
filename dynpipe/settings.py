"""Every ``DYNPIPE_*`` environment variable, read in one place.

Each setting is read when asked for (never frozen at import time, so a notebook or a test
can change it between runs) and parsed by one of three parsers. A value dynpipe cannot use
raises :class:`~dynpipe.errors.SettingError` naming the variable, the value and what is
accepted — before any step is registered, so a bad setting can never leave a run waiting.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

from .errors import SettingError

_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off", ""})


def _raw(name: str) -> str | None:
    value = os.environ.get(name)
    if value is None:
        return None
    value = value.strip()
    return value or None


def flag(name: str, default: bool) -> bool:
    """A boolean variable: 1/true/yes/on or 0/false/no/off (any case)."""
    value = _raw(name)
    if value is None:
        return default
    lowered = value.lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise SettingError(f"{name}={value!r} is not a boolean; use one of 1/true/yes/on or 0/false/no/off")


def whole_number(name: str, default: int, minimum: int = 1, maximum: int | None = None) -> int:
    """An integer variable within ``[minimum, maximum]``."""
    value = _raw(name)
    if value is None:
        return default
    try:
        number = int(value)
    except ValueError:
        raise SettingError(f"{name}={value!r} is not a whole number") from None
    if number < minimum or (maximum is not None and number > maximum):
        upper = f" and at most {maximum}" if maximum is not None else ""
        raise SettingError(f"{name}={value!r} must be at least {minimum}{upper}")
    return number


def seconds(name: str, default: float, minimum: float = 0.0, maximum: float = 86_400.0) -> float:
    """A finite duration in seconds within ``[minimum, maximum]``."""
    value = _raw(name)
    if value is None:
        return default
    try:
        number = float(value)
    except ValueError:
        raise SettingError(f"{name}={value!r} is not a number of seconds") from None
    if not math.isfinite(number) or number < minimum or number > maximum:
        raise SettingError(f"{name}={value!r} must be between {minimum:g} and {maximum:g} seconds")
    return number


def choice(name: str, default: str, allowed: tuple[str, ...]) -> str:
    value = _raw(name)
    if value is None:
        return default
    if value not in allowed:
        raise SettingError(f"{name}={value!r} is not one of {', '.join(allowed)}")
    return value


def text(name: str) -> str | None:
    """A free-form string variable; unset or blank is ``None``."""
    return _raw(name)


# -- the settings themselves ------------------------------------------------------------


def store_home() -> Path | None:
    """``DYNPIPE_HOME``: the store folder; ``None`` means "find ``.dynpipe/`` upwards"."""
    value = _raw("DYNPIPE_HOME")
    return Path(value).expanduser().resolve() if value else None


def artifact_store() -> str | None:
    """``DYNPIPE_ARTIFACT_STORE``: where artifacts live (a path or an fsspec URL such as
    ``s3://bucket/prefix``); unset means the store's own ``artifacts/`` folder."""
    return _raw("DYNPIPE_ARTIFACT_STORE")


def safe_store() -> str | None:
    """``DYNPIPE_SAFE_STORE``: stores trusted although another user owns them (paths joined by
    ``os.pathsep``, or ``*`` for any); see docs/trust-and-crash-safety.md."""
    return _raw("DYNPIPE_SAFE_STORE")


def verify_hash_max_bytes() -> int:
    """``DYNPIPE_VERIFY_HASH_MAX_BYTES``: artifact files up to this size are re-hashed on every load."""
    return whole_number("DYNPIPE_VERIFY_HASH_MAX_BYTES", 64 << 20, minimum=0)


def store_url() -> str | None:
    """``DYNPIPE_STORE_URL``: where run metadata lives; ``None`` means ``metadata.db`` in the store folder.

    A ``postgresql://user:password@host:port/database`` URL shares metadata across
    machines; any other value is the path of a SQLite database file.
    """
    return _raw("DYNPIPE_STORE_URL")


def heartbeat_timeout() -> float:
    """``DYNPIPE_HEARTBEAT_TIMEOUT``: a run on another host whose heartbeat is older than this is lost."""
    return seconds("DYNPIPE_HEARTBEAT_TIMEOUT", 120.0, minimum=0.1)


def heartbeat_interval() -> float:
    """``DYNPIPE_HEARTBEAT_INTERVAL``: seconds between heartbeats of an open run.

    Never more than a quarter of the timeout, so a live run is not taken for a lost one.
    """
    interval = seconds("DYNPIPE_HEARTBEAT_INTERVAL", 15.0, minimum=0.01)
    return min(interval, heartbeat_timeout() / 4)


def inline_workers() -> int:
    """``DYNPIPE_INLINE_WORKERS``: threads running submitted inline steps of one run."""
    return whole_number("DYNPIPE_INLINE_WORKERS", max(8, (os.cpu_count() or 1) + 4), maximum=4096)


#: Isolated steps of one run in flight at once on a runtime that does not bound its attempts.
DEFAULT_ISOLATED_WAITERS = 64
#: Waiting threads per attempt a bounded runtime runs at once (the local pool: per worker).
#: Enough that a freed worker finds its next attempt already queued; more only add threads
#: contending for the GIL (64 for 2 workers: 15 context switches and 0.8 ms CPU a step,
#: 8: ~11 and ~0.6).
WAITERS_PER_ATTEMPT = 4


def isolated_waiters(attempts_at_once: int | None = None) -> int:
    """``DYNPIPE_ISOLATED_WAITERS``: isolated steps of one run in flight at once.

    Unset: a few per attempt the runtime runs at once (``attempts_at_once``: the local
    pool's workers), else ``DEFAULT_ISOLATED_WAITERS`` (Kubernetes, Dask).
    """
    default = DEFAULT_ISOLATED_WAITERS
    if attempts_at_once is not None:
        default = min(default, max(WAITERS_PER_ATTEMPT, WAITERS_PER_ATTEMPT * attempts_at_once))
    return whole_number("DYNPIPE_ISOLATED_WAITERS", default, maximum=4096)


def local_workers() -> int:
    """``DYNPIPE_WORKERS``: worker processes of the local pool for isolated steps."""
    return whole_number("DYNPIPE_WORKERS", os.cpu_count() or 1, maximum=1024)


def isolated_backend() -> str:
    """``DYNPIPE_ISOLATED_BACKEND``: where ``runtime="isolated"`` steps run."""
    return choice("DYNPIPE_ISOLATED_BACKEND", "local", ("local", "kubernetes", "dask"))


def isolated_backend_chosen() -> bool:
    """Whether ``DYNPIPE_ISOLATED_BACKEND`` is set (else a client from ``use_dask`` picks Dask)."""
    return _raw("DYNPIPE_ISOLATED_BACKEND") is not None


def dask_scheduler() -> str | None:
    """``DYNPIPE_DASK_SCHEDULER``: the Dask scheduler address (``tcp://host:8786``) for isolated steps."""
    return text("DYNPIPE_DASK_SCHEDULER")


def echo_logs() -> bool:
    """``DYNPIPE_ECHO_LOGS``: echo captured step output live to the console/cell."""
    return flag("DYNPIPE_ECHO_LOGS", True)


def enforce_type_annotations() -> bool:
    """``DYNPIPE_ENFORCE_TYPE_ANNOTATIONS``: refuse steps whose inputs/outputs lack annotations."""
    return flag("DYNPIPE_ENFORCE_TYPE_ANNOTATIONS", False)


def run_single_steps_without_store() -> bool:
    """``DYNPIPE_RUN_SINGLE_STEPS_WITHOUT_STORE``: a step called outside a pipeline runs as a plain function."""
    return flag("DYNPIPE_RUN_SINGLE_STEPS_WITHOUT_STORE", False)


def inline_artifact_bytes() -> int:
    """``DYNPIPE_INLINE_ARTIFACT_BYTES``: outputs up to this size are kept inside the metadata database."""
    return whole_number("DYNPIPE_INLINE_ARTIFACT_BYTES", 4096, minimum=0, maximum=1 << 20)


def group_threshold() -> int:
    """``DYNPIPE_GROUP_THRESHOLD``: sibling steps of one kind beyond this are drawn as one group node."""
    return whole_number("DYNPIPE_GROUP_THRESHOLD", 12, minimum=2, maximum=100_000)


def widget_interval() -> float:
    """``DYNPIPE_WIDGET_INTERVAL``: seconds between live DAG redraws."""
    return seconds("DYNPIPE_WIDGET_INTERVAL", 0.25, minimum=0.01, maximum=60.0)


def run_origin() -> str | None:
    """``DYNPIPE_RUN_ORIGIN``: what a run records as its origin instead of its notebook or script
    (the schedule runner sets ``schedule:NAME``)."""
    return text("DYNPIPE_RUN_ORIGIN")


def k8s_namespace() -> str:
    return text("DYNPIPE_K8S_NAMESPACE") or "default"


def k8s_image() -> str | None:
    return text("DYNPIPE_K8S_IMAGE")


def k8s_pvc() -> str | None:
    return text("DYNPIPE_K8S_PVC")


def k8s_service_account() -> str | None:
    return text("DYNPIPE_K8S_SERVICE_ACCOUNT")


def k8s_pending_timeout() -> float | None:
    """``DYNPIPE_K8S_PENDING_TIMEOUT``: seconds a step's pod may stay pending (overrides settings)."""
    if text("DYNPIPE_K8S_PENDING_TIMEOUT") is None:
        return None
    return seconds("DYNPIPE_K8S_PENDING_TIMEOUT", 600.0, minimum=0.01, maximum=7 * 86_400.0)


def k8s_owner_pod() -> tuple[str, str] | None:
    """``POD_NAME``/``POD_UID`` (downward API): the orchestrator's own pod, owner of its Jobs."""
    name, uid = text("POD_NAME"), text("POD_UID")
    return (name, uid) if name and uid else None


def check_run_settings() -> None:
    """Parse every setting a run depends on, so a bad one fails before any step is registered."""
    inline_workers()
    isolated_waiters()
    isolated_backend()
    echo_logs()
    heartbeat_interval()  # and the timeout it is derived from
