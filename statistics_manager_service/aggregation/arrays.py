"""Small numpy helpers shared by the aggregation modules: typed aliases, keys and segments."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]
ObjectArray = npt.NDArray[np.object_]

# A composite key packs (group code, seconds since an origin) into one int64 so that one
# sort / searchsorted handles every user at once; 40 bits of seconds span ~34,800 years.
_TIME_BITS = 40
_MAX_GROUPS = 1 << (63 - _TIME_BITS)


def factorize_labels(labels: Any) -> tuple[IntArray, ObjectArray]:
    """Return int64 codes and sorted unique labels, so codes never depend on row order.

    A Categorical is used as is: hashing a million shuffled strings costs more than the rest
    of the bucket computation, and storage can hand user ids over already coded.
    """
    series = pd.Series(labels, copy=False)
    if isinstance(series.dtype, pd.CategoricalDtype):
        raw_codes = series.cat.codes.to_numpy().astype(np.int64)
        if (raw_codes < 0).any():
            raise ValueError("user_id: missing values are not allowed")
        categories = np.asarray(series.cat.categories, dtype=object)
        used = np.flatnonzero(np.bincount(raw_codes, minlength=categories.size) > 0)
        used = used[np.argsort(categories[used], kind="stable")]
        remap = np.full(categories.size, -1, dtype=np.int64)
        remap[used] = np.arange(used.size, dtype=np.int64)
        return remap[raw_codes], categories[used]
    codes, uniques = pd.factorize(series, sort=True)
    if (codes < 0).any():
        raise ValueError("user_id: missing values are not allowed")
    return codes.astype(np.int64, copy=False), np.asarray(uniques, dtype=object)


def composite_keys(codes: IntArray, ts_s: IntArray, origin_s: int) -> IntArray:
    """Pack group codes and times into sortable int64 keys."""
    rel = ts_s - origin_s
    if rel.size and (int(rel.min()) < 0 or int(rel.max()) >= 1 << _TIME_BITS):
        raise ValueError("ts: times span more than the supported range")
    if codes.size and int(codes.max()) >= _MAX_GROUPS:
        raise ValueError("user_id: too many distinct groups in one call")
    return (codes << _TIME_BITS) | rel


def split_keys(keys: IntArray, origin_s: int) -> tuple[IntArray, IntArray]:
    """Unpack composite keys into group codes and times."""
    codes = keys >> _TIME_BITS
    return codes, (keys - (codes << _TIME_BITS)) + origin_s


def floor_to(ts_s: IntArray, step_s: int) -> IntArray:
    """Round times down to a multiple of step_s."""
    return (ts_s // step_s) * step_s


def ceil_to(ts_s: IntArray, step_s: int) -> IntArray:
    """Round times up to a multiple of step_s."""
    return -((-ts_s) // step_s) * step_s


def group_bounds(sorted_codes: IntArray, n_groups: int) -> tuple[IntArray, IntArray]:
    """Return each group's first position and one-past-last position in sorted codes."""
    groups = np.arange(n_groups, dtype=np.int64)
    first = np.searchsorted(sorted_codes, groups, side="left").astype(np.int64)
    end = np.searchsorted(sorted_codes, groups, side="right").astype(np.int64)
    return first, end


def run_starts(sorted_keys: IntArray) -> IntArray:
    """Return the start index of each run of equal values in a sorted array."""
    if sorted_keys.size == 0:
        return np.zeros(0, dtype=np.int64)
    change = np.empty(sorted_keys.size, dtype=bool)
    change[0] = True
    np.not_equal(sorted_keys[1:], sorted_keys[:-1], out=change[1:])
    return np.flatnonzero(change).astype(np.int64)


def segmented_reduce(
    ufunc: np.ufunc, values: FloatArray, rows: IntArray, n_rows: int, empty: float
) -> FloatArray:
    """Reduce values into output rows (rows sorted ascending); rows with no value get `empty`."""
    out = np.full(n_rows, empty, dtype=np.float64)
    if values.size == 0:
        return out
    starts = run_starts(rows)
    out[rows[starts]] = ufunc.reduceat(values, starts)
    return out


def label_groups(labels: ObjectArray, what: str) -> Iterator[tuple[str, IntArray]]:
    """Yield each distinct label with the positions holding it (few labels, many rows)."""
    codes, uniques = pd.factorize(pd.Series(labels, dtype=object, copy=False))
    if (codes < 0).any():
        raise ValueError(f"{what}: missing value")
    order = np.argsort(codes, kind="stable")
    bounds = np.searchsorted(codes[order], np.arange(len(uniques) + 1))
    for index, label in enumerate(uniques):
        yield str(label), order[bounds[index] : bounds[index + 1]].astype(np.int64)


def check_columns(frame: pd.DataFrame, columns: Sequence[str], name: str) -> None:
    """Fail naming the columns a frame crossing into the engine lacks."""
    missing = [column for column in columns if column not in frame.columns]
    if missing:
        raise ValueError(f"{name}: missing column(s) {', '.join(missing)}")
