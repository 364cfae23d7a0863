"""Cron expressions in a time zone: five fields or a macro, stepped in wall-clock time.

croniter steps naive wall-clock times; this module maps each to a real instant with
zoneinfo. Across a DST change a schedule fires once per wall-clock due time: a time
skipped in spring (02:30 in Europe/Berlin) fires at the same real instant an hour later
(03:30), a time repeated in autumn fires at its first occurrence only, and two wall times
landing on one instant fire once (that is what ``cron`` and Kubernetes do too).
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timezone
from typing import Annotated
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import croniter
from pydantic import AfterValidator

MACROS = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}


def normalize_cron(expr: str) -> str:
    """The five-field form of ``expr``; anything else is a ValueError saying what is wrong."""
    text = " ".join(expr.split())
    if text.startswith("@"):
        if text.lower() not in MACROS:
            raise ValueError(
                f"cron expression {expr!r}: unknown macro (known: {', '.join(MACROS)})"
            )
        return MACROS[text.lower()]
    fields = text.split(" ") if text else []
    if len(fields) == 6:
        raise ValueError(
            f"cron expression {expr!r} has 6 fields: seconds are not supported; give five fields"
            " (minute hour day-of-month month day-of-week), e.g. '0 3 * * *'"
        )
    if len(fields) != 5:
        raise ValueError(
            f"cron expression {expr!r} has {len(fields)} fields; give five"
            " (minute hour day-of-month month day-of-week), e.g. '0 3 * * *', or a macro like @daily"
        )
    if not croniter.is_valid(text):
        raise ValueError(f"cron expression {expr!r} is not valid (e.g. '*/15 * * * *', '0 3 * * 1-5')")
    return text


def zone(name: str) -> ZoneInfo:
    """The IANA time zone ``name``; an unknown one is a ValueError naming it."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown time zone {name!r} (use an IANA name such as Europe/Berlin or UTC)") from None


class CronSchedule:
    """Due times of one cron expression in one time zone, as aware UTC datetimes."""

    def __init__(self, expr: str, tz: str = "UTC") -> None:
        self.expr = normalize_cron(expr)
        self.tz = zone(tz)

    def _after(self, start: datetime) -> Iterator[datetime]:
        """Due times strictly after ``start``, oldest first: one croniter stepping wall-clock time."""
        it = croniter(self.expr, start.astimezone(self.tz).replace(tzinfo=None, fold=0))
        last = start
        while True:
            candidate = it.get_next(datetime).replace(tzinfo=self.tz, fold=0).astimezone(timezone.utc)
            if candidate > last:  # a wall time repeated or skipped by DST maps onto an instant already had
                last = candidate
                yield candidate

    def next_after(self, after: datetime) -> datetime:
        """The first due time strictly after ``after`` (an aware datetime)."""
        return next(self._after(after))

    def between(self, start: datetime, end: datetime, limit: int = 100_000) -> list[datetime]:
        """Due times in (start, end], oldest first (at most ``limit``, the newest kept)."""
        found: list[datetime] = []
        for when in self._after(start):
            if when > end:
                return found
            found.append(when)
            if len(found) > limit:
                found.pop(0)
        return found


def to_utc(timestamp: float) -> datetime:
    return datetime.fromtimestamp(timestamp, timezone.utc)


def fire_label(when: datetime) -> str:
    """A due time as it appears in run names: UTC, sortable, no characters a shell dislikes."""
    return when.astimezone(timezone.utc).strftime("%Y%m%dT%H%M%SZ")


def local_text(when: datetime, tz: str) -> str:
    return when.astimezone(zone(tz)).strftime("%Y-%m-%d %H:%M %Z")


def _check_zone(name: str) -> str:
    zone(name)
    return name


def _check_overlap(value: str) -> str:
    if value not in OVERLAP_POLICIES:
        raise ValueError(f"--overlap {value!r}: expected skip, queue or replace")
    return value


#: What a schedule does when a due time comes while its previous run still goes.
OVERLAP_POLICIES = ("skip", "queue", "replace")
#: Field types shared by the schedule models (local and Kubernetes): validated once, here.
Cron = Annotated[str, AfterValidator(normalize_cron)]
TimeZone = Annotated[str, AfterValidator(_check_zone)]
Overlap = Annotated[str, AfterValidator(_check_overlap)]
