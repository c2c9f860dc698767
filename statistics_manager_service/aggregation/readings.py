"""Turn a raw readings DataFrame into sorted, de-duplicated arrays for every user at once."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from statistics_manager_service.aggregation.arrays import (
    BoolArray,
    FloatArray,
    IntArray,
    ObjectArray,
    check_columns,
    composite_keys,
    factorize_labels,
    group_bounds,
    run_starts,
)

REQUIRED_COLUMNS = ("user_id", "ts", "energy_imported_wh", "energy_exported_wh")
VALUE_COLUMNS = (
    "energy_imported_wh",
    "energy_exported_wh",
    "energy_generated_wh",
    "power_imported_w",
    "power_exported_w",
    "voltage_v",
)


@dataclass(frozen=True)
class Track:
    """Readings of every user sorted by (user, ts), one row per instant, as flat arrays."""

    codes: IntArray
    ts_s: IntArray
    keys: IntArray
    first_pos: IntArray  # per user: position of the first reading (== end_pos when none)
    end_pos: IntArray  # per user: one past the last reading

    @property
    def counts(self) -> IntArray:
        """Return the number of readings of each user."""
        return self.end_pos - self.first_pos

    def starts_mask(self) -> BoolArray:
        """Return True at each user's first reading."""
        mask = np.zeros(self.ts_s.size, dtype=bool)
        mask[self.first_pos[self.counts > 0]] = True
        return mask

    def subset(self, keep: BoolArray) -> Track:
        """Return the track restricted to the rows where keep is True."""
        codes = self.codes[keep]
        first, end = group_bounds(codes, self.first_pos.size)
        return Track(codes, self.ts_s[keep], self.keys[keep], first, end)


@dataclass(frozen=True)
class PreparedReadings:
    """Sorted, de-duplicated readings plus the key origin used for every lookup."""

    user_ids: ObjectArray
    track: Track
    origin_s: int
    values: dict[str, FloatArray]


def prepare_readings(readings: pd.DataFrame) -> PreparedReadings:
    """Sort readings by (user, ts) and merge duplicates by taking each field's max."""
    check_columns(readings, REQUIRED_COLUMNS, "readings")
    if not pd.api.types.is_integer_dtype(readings["ts"]):
        raise ValueError(f"ts: expected int64 epoch seconds, got {readings['ts'].dtype}")
    codes, user_ids = factorize_labels(readings["user_id"])
    ts_s = readings["ts"].to_numpy(dtype=np.int64)
    origin_s = int(ts_s.min()) if ts_s.size else 0
    keys = composite_keys(codes, ts_s, origin_s)
    values = {
        name: (
            readings[name].to_numpy(dtype=np.float64, na_value=np.nan)
            if name in readings.columns
            else np.full(ts_s.size, np.nan)
        )
        for name in VALUE_COLUMNS
    }
    # Storage usually hands readings over already sorted; checking is far cheaper than sorting.
    if keys.size > 1 and bool((keys[1:] < keys[:-1]).any()):
        order = np.argsort(keys, kind="stable")
        keys, codes, ts_s = keys[order], codes[order], ts_s[order]
        values = {name: column[order] for name, column in values.items()}
    if keys.size > 1 and bool((keys[1:] == keys[:-1]).any()):
        # fmax ignores NaN, so a duplicate that lacks a field never hides one that has it,
        # and the merge is the same whatever the order or number of copies.
        starts = run_starts(keys)
        values = {name: np.fmax.reduceat(column, starts) for name, column in values.items()}
        keys, codes, ts_s = keys[starts], codes[starts], ts_s[starts]
    first, end = group_bounds(codes, user_ids.size)
    return PreparedReadings(user_ids, Track(codes, ts_s, keys, first, end), origin_s, values)
