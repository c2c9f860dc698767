"""An independent, deliberately plain reference for bucket energy: scalar Python, no pandas."""

from __future__ import annotations

import itertools
from collections.abc import Iterable

BUCKET_S = 900


def merge_duplicates(readings: Iterable[tuple[int, float]]) -> list[tuple[int, float]]:
    """Keep one value per instant (the larger), sorted by time."""
    merged: dict[int, float] = {}
    for ts, value in readings:
        merged[ts] = max(value, merged.get(ts, value))
    return sorted(merged.items())


def continuous_register(readings: list[tuple[int, float]]) -> list[tuple[int, float]]:
    """A register that never drops: after a reset the new reading counts from zero."""
    result: list[tuple[int, float]] = []
    total = 0.0
    previous: float | None = None
    for ts, value in readings:
        if previous is not None:
            total += value - previous if value >= previous else value
        result.append((ts, total))
        previous = value
    return result


def register_at(points: list[tuple[int, float]], instant: float) -> float:
    """Linear interpolation of the continuous register at `instant` (clamped to the span)."""
    if instant <= points[0][0]:
        return points[0][1]
    for (t0, v0), (t1, v1) in itertools.pairwise(points):
        if t0 <= instant <= t1:
            return v0 + (v1 - v0) * (instant - t0) / (t1 - t0)
    return points[-1][1]


def bucket_energy_kwh(readings: Iterable[tuple[int, float]]) -> dict[int, float]:
    """Energy (kWh) per 15-minute bucket start, from cumulative Wh readings."""
    points = continuous_register(merge_duplicates(readings))
    first, last = points[0][0], points[-1][0]
    result: dict[int, float] = {}
    start = first // BUCKET_S * BUCKET_S
    while start < last:
        low, high = max(start, first), min(start + BUCKET_S, last)
        result[start] = (register_at(points, high) - register_at(points, low)) / 1000.0
        start += BUCKET_S
    return result
