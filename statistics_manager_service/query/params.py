"""Request parameters turned into typed values, with 400s that name the parameter."""

from __future__ import annotations

import dataclasses
import datetime as dt
import re

from statistics_manager_service.aggregation.granularity import LEVEL, Granularity, Level
from statistics_manager_service.exception_handling_utils.errors import BadRequest

MAX_BUCKETS = 100_000
_DATE_ONLY = re.compile(r"^\d{4}-\d{2}-\d{2}$")


# The instants the service stores and answers for: readings, signals and statistics of this century.
EARLIEST = dt.datetime(2000, 1, 1, tzinfo=dt.UTC)
LATEST = dt.datetime(2100, 1, 1, tzinfo=dt.UTC)
_RANGE = f"between {EARLIEST:%Y-%m-%d} and {LATEST:%Y-%m-%d}"


def parse_instant(value: str, name: str) -> dt.datetime:
    """Parse an ISO-8601 date-time (or date) into an aware UTC datetime; no offset means UTC."""
    text = value.strip()
    try:
        if _DATE_ONLY.match(text):
            parsed = dt.datetime.combine(dt.date.fromisoformat(text), dt.time())
        else:
            parsed = dt.datetime.fromisoformat(text.replace(" ", "T", 1) if "T" not in text else text)
    except ValueError:
        raise BadRequest(
            f"{name} is not a valid ISO-8601 date-time: {value!r}; expected e.g. 2026-01-21T00:00:00Z"
            " (send a `+` of an offset as `%2B`)"
        ) from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=dt.UTC)
    # Years 1 and 9999 with an offset would overflow; anything outside the range is refused first.
    if not (dt.date(EARLIEST.year - 1, 12, 31) <= parsed.date() <= dt.date(LATEST.year, 1, 2)):
        raise BadRequest(f"{name} must lie {_RANGE}: {value!r}")
    instant = parsed.astimezone(dt.UTC)
    if not EARLIEST <= instant <= LATEST:
        raise BadRequest(f"{name} must lie {_RANGE}: {value!r}")
    return instant


def parse_day(value: str, name: str) -> dt.date:
    """Parse a date, or the date part of a date-time the mobile app sends (`2026-01-21T00:00:00.000Z`)."""
    text = value.strip()
    try:
        day = dt.date.fromisoformat(text[:10])
    except ValueError:
        raise BadRequest(f"{name} is not a valid date: {value!r}; expected e.g. 2026-01-21") from None
    if not EARLIEST.date() <= day < LATEST.date():
        raise BadRequest(f"{name} must lie {_RANGE}: {value!r}")
    return day


def parse_range(
    start_date: str, end_date: str | None, default_end: dt.datetime, max_days: int | None = None
) -> tuple[int, int]:
    """Validate a [start_date, end_date) range (no end: `default_end`), at most `max_days` long;
    return it in epoch seconds."""
    start = parse_instant(start_date, "start_date")
    end = parse_instant(end_date, "end_date") if end_date else default_end
    if start >= end:
        raise BadRequest("start_date must be before end_date")
    if max_days is not None and end - start > dt.timedelta(days=max_days):
        raise BadRequest(f"start_date and end_date must be at most {max_days} days apart; narrow the range")
    return int(start.timestamp()), int(end.timestamp())


def parse_month(value: str, name: str = "period") -> tuple[int, int]:
    """Validate a `YYYY-MM` month of the accepted years; return (year, month)."""
    try:
        year_text, month_text = value.split("-")
        year, month = int(year_text), int(month_text)
        dt.date(year, month, 1)
    except ValueError:
        raise BadRequest(f"{name} must be a month as YYYY-MM, e.g. 2026-11: {value!r}") from None
    if not EARLIEST.year <= year < LATEST.year:
        raise BadRequest(f"{name} must lie between {EARLIEST.year}-01 and {LATEST.year - 1}-12: {value!r}")
    return year, month


@dataclasses.dataclass(frozen=True)
class SeriesRequest:
    """A historic-series request: who, which buckets, over which range."""

    user_ids: tuple[str, ...]
    group_by: str
    start_s: int
    end_s: int
    include_quality: bool = False

    @property
    def level(self) -> Level:
        """Return the granularity asked for."""
        return LEVEL[self.group_by]

    @property
    def engine_granularity(self) -> Granularity | None:
        """Return the engine's granularity name (None for 15-minute buckets)."""
        return self.level.engine


def series_request(
    user_ids: list[str] | str,
    start_date: str,
    end_date: str | None,
    group_by: str,
    include_quality: bool = False,
    now: dt.datetime | None = None,
) -> SeriesRequest:
    """Validate the parameters of a historic endpoint."""
    ids = [user_ids] if isinstance(user_ids, str) else list(user_ids)
    unique_ids = tuple(dict.fromkeys(i.strip() for i in ids if i.strip()))
    if not unique_ids:
        raise BadRequest("user_ids must name at least one user")
    if group_by not in LEVEL:
        raise BadRequest(f"group_by must be one of {', '.join(LEVEL)}")
    start_s, end_s = parse_range(start_date, end_date, now or dt.datetime.now(dt.UTC))
    nominal_s = LEVEL[group_by].nominal_s
    estimate = len(unique_ids) * (-(-(end_s - start_s) // nominal_s) + 1)
    if estimate > MAX_BUCKETS:
        raise BadRequest(
            f"the request would return about {estimate} buckets (limit {MAX_BUCKETS}); "
            "narrow the date range, use a coarser group_by or ask for fewer user_ids"
        )
    return SeriesRequest(unique_ids, group_by, start_s, end_s, include_quality)
