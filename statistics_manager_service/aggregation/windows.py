"""Which buckets late or corrected readings can change, so only those are recomputed."""

from __future__ import annotations

import numpy as np

from statistics_manager_service.aggregation.arrays import IntArray, floor_to
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
