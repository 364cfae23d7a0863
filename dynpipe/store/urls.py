"""Metadata URLs: which kind a URL is, and how to show one without its password."""

from __future__ import annotations

import re
from urllib.parse import urlsplit, urlunsplit

_POSTGRES_SCHEMES = ("postgresql://", "postgres://")


def is_postgres_url(url: str) -> bool:
    return url.startswith(_POSTGRES_SCHEMES)


def mask_password(url: str) -> str:
    """The URL with its password (if any) replaced by ``***``: safe to print or log."""
    url = re.sub(r"(password=)[^&\s]*", r"\1***", url)  # a query parameter, or key=value form
    if "://" not in url:
        return url
    parts = urlsplit(url)
    if parts.password is None:
        return url
    user = parts.username or ""
    host = parts.netloc.rsplit("@", 1)[1]
    return urlunsplit(parts._replace(netloc=f"{user}:***@{host}"))
