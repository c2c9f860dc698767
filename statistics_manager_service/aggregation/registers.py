"""Reset-corrected cumulative registers and their piecewise-linear evaluation at any instant."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from statistics_manager_service.aggregation.arrays import BoolArray, FloatArray, IntArray, composite_keys
from statistics_manager_service.aggregation.readings import Track


def per_user_cumsum(increments: FloatArray, track: Track) -> FloatArray:
    """Return the running sum of increments, restarting at zero at each user's first reading."""
    total = np.cumsum(increments)
    if total.size == 0:
        return total
    # Subtracting the user's starting total keeps magnitudes per user, not across the batch.
    first = np.minimum(track.first_pos, total.size - 1)
    base = total[first] - increments[first]
    return total - np.repeat(base, track.counts)


def register_increments(values: FloatArray, track: Track) -> tuple[FloatArray, BoolArray]:
    """Return each reading's energy since the previous one and where the register dropped."""
    previous = np.empty_like(values)
    previous[1:] = values[:-1]
    previous[:1] = values[:1]
    step = values - previous
    starts = track.starts_mask()
    dropped = (step < 0) & ~starts
    # After a drop the meter restarted from zero, so the new value itself is the energy
    # (Home Assistant's total_increasing); energy is never negative.
    increments = np.where(step >= 0, step, np.maximum(values, 0.0))
    increments[starts] = 0.0
    return increments, dropped


@dataclass(frozen=True)
class Location:
    """Where query instants fall in a track: the reading interval [pos, pos + 1] around each."""

    clipped_s: IntArray  # the query clipped to its user's [first, last] reading span
    pos: IntArray
    offset_s: IntArray  # clipped_s - ts[pos]
    interval_s: IntArray  # ts[pos + 1] - ts[pos]
    ok: BoolArray  # False where the user has fewer than two readings in the track


def locate(track: Track, codes: IntArray, query_s: IntArray, origin_s: int) -> Location:
    """Locate instants in their users' reading intervals, clipping them to the reading span."""
    n = track.ts_s.size
    counts = track.counts[codes]
    ok = counts >= 2
    if n < 2:
        zeros = np.zeros(query_s.size, dtype=np.int64)
        return Location(query_s.copy(), zeros, zeros, np.ones_like(zeros), np.zeros(query_s.size, bool))
    first = np.minimum(track.first_pos[codes], n - 2)
    last = np.clip(track.end_pos[codes] - 1, 1, n - 1)
    clipped = np.clip(query_s, track.ts_s[first], track.ts_s[last])
    pos = np.searchsorted(track.keys, composite_keys(codes, clipped, origin_s), side="right") - 1
    # The last reading belongs to the interval ending on it, so every query has a right neighbour.
    pos = np.clip(pos, first, np.maximum(last - 1, first)).astype(np.int64)
    offset = clipped - track.ts_s[pos]
    interval = track.ts_s[pos + 1] - track.ts_s[pos]
    interval = np.where(ok, interval, 1)
    return Location(clipped, pos, np.where(ok, offset, 0), interval, ok)


def interpolate(cumulative: FloatArray, increments: FloatArray, where: Location) -> FloatArray:
    """Evaluate a per-user cumulative series linearly between readings at located instants."""
    following = np.minimum(where.pos + 1, cumulative.size - 1)
    fraction = where.offset_s / where.interval_s
    value = cumulative[where.pos] + fraction * increments[following]
    return np.where(where.ok, value, np.nan)


def measured_seconds(track: Track, measured_gap_s: int) -> tuple[FloatArray, FloatArray]:
    """Return per-interval measured flags and the per-user running measured seconds."""
    n = track.ts_s.size
    gap = np.zeros(n, dtype=np.int64)
    gap[:-1] = track.ts_s[1:] - track.ts_s[:-1]
    last = track.end_pos[track.counts > 0] - 1
    gap[last] = 0  # no interval after a user's last reading
    measured = ((gap > 0) & (gap <= measured_gap_s)).astype(np.float64)
    # Shift by one so cumulative[i] counts the measured seconds before reading i.
    seconds = np.zeros(n, dtype=np.float64)
    seconds[1:] = (gap * measured)[:-1]
    return measured, per_user_cumsum(seconds, track)


def measured_at(measured: FloatArray, cumulative: FloatArray, where: Location) -> FloatArray:
    """Evaluate the running measured seconds at located instants."""
    return np.where(where.ok, cumulative[where.pos] + where.offset_s * measured[where.pos], 0.0)
