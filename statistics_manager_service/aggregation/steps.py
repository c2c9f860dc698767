"""Step-function series (each value holds for [ts, ts + resolution_s)) looked up for many groups at once."""

from __future__ import annotations

import numpy as np
import pandas as pd

from statistics_manager_service.aggregation.arrays import (
    FloatArray,
    IntArray,
    ObjectArray,
    composite_keys,
    split_keys,
)


def step_values(
    series_groups: ObjectArray,
    series: pd.DataFrame,
    query_groups: ObjectArray,
    query_s: IntArray,
) -> FloatArray:
    """Return the value in force for each query's group at its instant, NaN in a hole.

    `series` has columns ts, resolution_s and value; `series_groups` labels each of its rows.
    When intervals overlap, the one starting last (at or before the instant) decides; for two
    rows with the same group and ts, the later row wins.
    """
    out = np.full(query_s.size, np.nan)
    if series.empty or query_s.size == 0:
        return out
    group_codes, groups = pd.factorize(pd.Series(series_groups, dtype=object, copy=False))
    ts_s = series["ts"].to_numpy(dtype=np.int64)
    resolution_s = series["resolution_s"].to_numpy(dtype=np.int64)
    values = series["value"].to_numpy(dtype=np.float64, na_value=np.nan)
    query_codes = pd.Index(groups, dtype=object).get_indexer(pd.Index(query_groups, dtype=object))
    origin_s = int(min(ts_s.min(), query_s.min()))
    keys = composite_keys(group_codes.astype(np.int64), ts_s, origin_s)
    order = np.argsort(keys, kind="stable")
    keys, ts_s, resolution_s, values = keys[order], ts_s[order], resolution_s[order], values[order]
    # After a stable sort the last of equal keys is the latest delivered row; keep only it.
    keep = np.ones(keys.size, dtype=bool)
    keep[:-1] = keys[1:] != keys[:-1]
    keys, ts_s, resolution_s, values = keys[keep], ts_s[keep], resolution_s[keep], values[keep]
    known = query_codes >= 0
    query_keys = composite_keys(np.where(known, query_codes, 0).astype(np.int64), query_s, origin_s)
    pos = np.searchsorted(keys, query_keys, side="right") - 1
    safe = np.maximum(pos, 0)
    same_group = split_keys(keys[safe], origin_s)[0] == np.where(known, query_codes, -1)
    hit = known & (pos >= 0) & same_group & (query_s < ts_s[safe] + resolution_s[safe])
    out[hit] = values[safe[hit]]
    return out
