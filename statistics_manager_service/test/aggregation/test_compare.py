"""The alignment of `compare_to`, hand-checked on leap days, month ends and both DST changes."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pytest

from statistics_manager_service.aggregation.compare import (
    CalendarShift,
    comparison_shift,
    earlier_bucket_starts,
)
from statistics_manager_service.aggregation.granularity import Granularity

LISBON = "Europe/Lisbon"


def _s(text: str) -> int:
    return int(dt.datetime.fromisoformat(text).timestamp())


def _texts(instants: np.ndarray) -> list[str]:
    return [dt.datetime.fromtimestamp(int(s), dt.UTC).isoformat() for s in instants]


@pytest.mark.parametrize(
    ("start", "shift", "granularity", "expected"),
    [
        ("2028-02-29T00:00:00+00:00", CalendarShift(years=1), "day", "2027-02-28T00:00:00+00:00"),
        ("2028-03-31T00:00:00+01:00", CalendarShift(months=1), "day", "2028-02-29T00:00:00+00:00"),
        ("2027-03-31T00:00:00+01:00", CalendarShift(months=1), "day", "2027-02-28T00:00:00+00:00"),
        ("2028-03-01T00:00:00+00:00", CalendarShift(years=1), "month", "2027-03-01T00:00:00+00:00"),
        # After the spring change, 02:00 summer time of the 23-hour day compares with 02:00 winter time.
        ("2026-03-29T02:00:00+01:00", CalendarShift(days=1), None, "2026-03-28T02:00:00+00:00"),
        # Both 01:00 of the 25-hour day compare with the one 01:00 of the day before.
        ("2026-10-25T01:00:00+01:00", CalendarShift(days=1), None, "2026-10-24T00:00:00+00:00"),
        ("2026-10-25T01:00:00+00:00", CalendarShift(days=1), None, "2026-10-24T00:00:00+00:00"),
        # 01:30 did not exist on 30 March 2025: it moves forward to 02:00 summer time.
        ("2026-03-30T01:30:00+01:00", CalendarShift(years=1), None, "2025-03-30T01:00:00+00:00"),
        ("2026-03-29T10:00:00+01:00", CalendarShift(seconds=7200), "hour", "2026-03-29T07:00:00+00:00"),
    ],
)
def test_earlier_bucket(
    start: str, shift: CalendarShift, granularity: Granularity | None, expected: str
) -> None:
    earlier = earlier_bucket_starts(np.array([_s(start)], dtype=np.int64), LISBON, shift, granularity)
    assert _texts(earlier) == [dt.datetime.fromisoformat(expected).astimezone(dt.UTC).isoformat()]


@pytest.mark.parametrize(
    ("start", "end", "expected"),
    [
        ("2026-01-01T00:00:00+00:00", "2028-01-01T00:00:00+00:00", CalendarShift(years=2)),
        ("2028-03-01T00:00:00+00:00", "2028-04-01T00:00:00+01:00", CalendarShift(months=1)),
        ("2026-03-29T00:00:00+00:00", "2026-03-30T00:00:00+01:00", CalendarShift(days=1)),
        ("2026-03-29T10:00:00+01:00", "2026-03-29T12:00:00+01:00", CalendarShift(seconds=7200)),
    ],
)
def test_previous_period_shift(start: str, end: str, expected: CalendarShift) -> None:
    assert comparison_shift(_s(start), _s(end), LISBON, "previous_period") == expected
    assert comparison_shift(_s(start), _s(end), LISBON, "previous_year") == CalendarShift(years=1)
