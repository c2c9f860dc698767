"""Sample-and-hold power: running integrals evaluated at bucket boundaries for all users at once."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from statistics_manager_service.aggregation.arrays import BoolArray, FloatArray, IntArray, composite_keys
from statistics_manager_service.aggregation.readings import Track
from statistics_manager_service.aggregation.registers import Location, per_user_cumsum


@dataclass(frozen=True)
class PowerSamples:
    """Readings that report power, with how long each sample holds and running integrals."""

    track: Track
    every_reading: bool  # every reading has power, so the samples are the readings' own track
    imported_w: FloatArray
    exported_w: FloatArray
    hold_s: IntArray
    energy_imported_ws: FloatArray  # per user, integral of held import power before each sample
    energy_exported_ws: FloatArray
    known_s: FloatArray  # per user, seconds with a held sample before each sample


def power_samples(
    track: Track, imported_w: FloatArray, exported_w: FloatArray, measured_gap_s: int
) -> PowerSamples:
    """Build the sample-and-hold series from readings with any power field."""
    has_power = ~np.isnan(imported_w) | ~np.isnan(exported_w)
    every_reading = bool(has_power.all())
    samples = track if every_reading else track.subset(has_power)
    # Meters report the direction that is flowing; a missing direction in a sample is idle.
    sample_imported_w = np.nan_to_num(imported_w[has_power], nan=0.0)
    sample_exported_w = np.nan_to_num(exported_w[has_power], nan=0.0)
    n = samples.ts_s.size
    following_s = np.empty(n, dtype=np.int64)
    following_s[:-1] = samples.ts_s[1:]
    last = samples.end_pos[samples.counts > 0] - 1
    following_s[last] = samples.ts_s[last] + measured_gap_s
    # A sample holds until the next sample, but never longer than a measured gap.
    hold_s = np.minimum(following_s - samples.ts_s, measured_gap_s)

    starts = samples.starts_mask()

    def before_each(weighted: FloatArray) -> FloatArray:
        shifted = np.zeros(n, dtype=np.float64)
        shifted[1:] = weighted[:-1]
        shifted[starts] = 0.0  # the previous row belongs to another user
        return per_user_cumsum(shifted, samples)

    return PowerSamples(
        track=samples,
        every_reading=every_reading,
        imported_w=sample_imported_w,
        exported_w=sample_exported_w,
        hold_s=hold_s,
        energy_imported_ws=before_each(sample_imported_w * hold_s),
        energy_exported_ws=before_each(sample_exported_w * hold_s),
        known_s=before_each(hold_s.astype(np.float64)),
    )


@dataclass(frozen=True)
class PowerAt:
    """Running power integrals (and the held values) at query instants."""

    energy_imported_ws: FloatArray
    energy_exported_ws: FloatArray
    known_s: FloatArray
    held_imported_w: FloatArray  # NaN where no sample holds at the instant
    held_exported_w: FloatArray


def power_at(
    samples: PowerSamples, codes: IntArray, query_s: IntArray, origin_s: int, readings_at: Location
) -> PowerAt:
    """Evaluate the running integrals at instants inside their users' spans.

    `readings_at` locates the same instants among all readings; when every reading has power
    it already tells the sample in force, which saves a second search.
    """
    track = samples.track
    if track.ts_s.size == 0:
        zeros = np.zeros(query_s.size)
        nans = np.full(query_s.size, np.nan)
        return PowerAt(zeros, zeros, zeros, nans, nans)
    valid: BoolArray
    if samples.every_reading and bool(readings_at.ok.all()):
        # An instant on a reading belongs to that reading's sample, not to the interval before it.
        pos = readings_at.pos + (readings_at.offset_s == readings_at.interval_s)
        valid = np.ones(query_s.size, dtype=bool)
    else:
        keys = composite_keys(codes, query_s, origin_s)
        pos = np.searchsorted(track.keys, keys, side="right") - 1
        # A user's samples are contiguous, so a position before their first one means "no sample yet".
        valid = pos >= track.first_pos[codes]
        pos = np.where(valid, pos, 0)
    elapsed_s = np.minimum(query_s - track.ts_s[pos], samples.hold_s[pos])
    holding = valid & (query_s - track.ts_s[pos] < samples.hold_s[pos])

    def integral(before: FloatArray, level_w: FloatArray) -> FloatArray:
        return np.where(valid, before[pos] + level_w[pos] * elapsed_s, 0.0)

    return PowerAt(
        energy_imported_ws=integral(samples.energy_imported_ws, samples.imported_w),
        energy_exported_ws=integral(samples.energy_exported_ws, samples.exported_w),
        known_s=np.where(valid, samples.known_s[pos] + elapsed_s, 0.0),
        held_imported_w=np.where(holding, samples.imported_w[pos], np.nan),
        held_exported_w=np.where(holding, samples.exported_w[pos], np.nan),
    )
