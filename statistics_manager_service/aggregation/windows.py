"""Which buckets late or corrected readings can change, so only those are recomputed."""

from __future__ import annotations

import numpy as np
import pandas as pd

from statistics_manager_service.aggregation.arrays import BoolArray, IntArray, floor_to
from statistics_manager_service.aggregation.granularity import BUCKET_SECONDS


def late_data_window(
    earliest_changed_s: IntArray,
    latest_changed_s: IntArray,
    previous_s: IntArray,
    following_s: IntArray,
    measured_gap_s: int = 900,
) -> tuple[IntArray, IntArray]:
    """Return the bucket-aligned [start, end) window each batch of changed readings can affect.

    Per user: the earliest and latest changed reading, the stored reading just before the earliest
    and the one just after the latest (pass the changed reading's own time where there is none).
    Energy between two readings depends only on them, a power sample holds for at most
    measured_gap_s, and the following reading's reset flag may flip, so nothing outside
    [previous, max(following, latest + gap)] moves.
    """
    start = floor_to(np.minimum(previous_s, earliest_changed_s), BUCKET_SECONDS)
    # floor + one bucket (not ceil) keeps the bucket holding the following reading itself.
    end = (
        floor_to(np.maximum(following_s, latest_changed_s + measured_gap_s), BUCKET_SECONDS) + BUCKET_SECONDS
    )
    return start, end


def context_bounds(
    window_start_s: IntArray, window_end_s: IntArray, measured_gap_s: int = 900
) -> tuple[IntArray, IntArray]:
    """Return the [start, end) of stored readings to load for a window.

    Load the readings in that range plus, per user, the last reading before it and the first
    reading at or after its end: compute_buckets needs nothing else for the window's buckets.
    """
    return window_start_s - measured_gap_s, window_end_s


def reachable_instants(
    owner: IntArray, instant_s: IntArray, anchor_low_s: IntArray, anchor_high_s: IntArray, max_gap_s: int
) -> BoolArray:
    """Tell which instants interpolation may join to their owner's anchor.

    `owner[i]` indexes the anchor intervals [anchor_low_s, anchor_high_s] (a household's known
    history, or a single trusted instant). An instant is reachable when a chain of instants, each
    at most `max_gap_s` from the next, links it to the anchor: energy is only ever spread over a
    gap between two readings, so nothing reachable spreads over more than `max_gap_s`.
    """
    count = instant_s.size
    if count == 0:
        return np.zeros(0, dtype=bool)
    anchors = np.arange(anchor_low_s.size, dtype=np.int64)
    owners = np.concatenate([owner, anchors])
    low = np.concatenate([instant_s, anchor_low_s])
    high = np.concatenate([instant_s, anchor_high_s])
    order = np.lexsort((low, owners))
    owners, low, high = owners[order], low[order], high[order]
    reach = pd.Series(high).groupby(owners).cummax().to_numpy(dtype=np.int64)
    first = np.ones(owners.size, dtype=bool)
    first[1:] = owners[1:] != owners[:-1]
    previous_reach = np.empty_like(reach)
    previous_reach[1:] = reach[:-1]
    starts_run = first | (low > previous_reach + max_gap_s)
    run = np.cumsum(starts_run)
    run_of = np.empty_like(run)
    run_of[order] = run
    reachable: BoolArray = run_of[:count] == run_of[count:][owner]
    return reachable
