"""Where the embedded store lives: $DYNPIPE_HOME, else the nearest .dynpipe/ upwards, else ./.dynpipe/."""

from __future__ import annotations

import os
from pathlib import Path


def find_store_root(start: Path | None = None) -> Path:
    env = os.environ.get("DYNPIPE_HOME")
    if env:
        return Path(env).expanduser().resolve()
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        candidate = folder / ".dynpipe"
        if candidate.is_dir():
            return candidate
    return here / ".dynpipe"
