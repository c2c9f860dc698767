"""Recompute a grid zone's households after a signal change, a bounded chunk at a time."""

from __future__ import annotations

import numpy as np
import pandas as pd
from sqlalchemy.orm import Session

from statistics_manager_service.aggregation.granularity import BUCKET_SECONDS, SECONDS_PER_DAY
from statistics_manager_service.recompute.inputs import empty_windows
from statistics_manager_service.recompute.updater import Recomputed, StatisticsUpdater
from statistics_manager_service.storage.households import households_in_zone


def covered_windows(starts_s: list[int], resolution_s: int) -> list[tuple[int, int]]:
    """Merge the intervals [ts, ts + resolution) of a signal's values into bucket-aligned windows.

    Values less than a day apart share a window (a recomputation writes whole days anyway); a
    value months away from the others gets a window of its own instead of the span between them.
    """
    starts = np.unique(np.asarray(starts_s, dtype=np.int64))
    ends = starts + resolution_s
    new_window = np.ones(starts.size, dtype=bool)
    new_window[1:] = starts[1:] > np.maximum.accumulate(ends)[:-1] + SECONDS_PER_DAY
    firsts = np.flatnonzero(new_window)
    lasts = np.append(firsts[1:], starts.size) - 1
    reach = np.maximum.accumulate(ends)
    return [
        (int(starts[first]) // BUCKET_SECONDS * BUCKET_SECONDS, int(reach[last]))
        for first, last in zip(firsts.tolist(), lasts.tolist(), strict=True)
    ]


def recompute_zone_chunk(
    session: Session,
    updater: StatisticsUpdater,
    zone: str,
    tariff_type: str | None,
    window: tuple[int, int],
    cause: str,
    after_user_id: str,
    households: int,
) -> tuple[Recomputed, str | None]:
    """Recompute at most `households` of the zone's households after `after_user_id` (in user
    order) over the window; return what changed and the last household done when more remain."""
    remaining = [u for u in households_in_zone(session, zone, tariff_type) if u > after_user_id]
    chunk = remaining[:households]
    if not chunk:
        return Recomputed(empty_windows()), None
    windows = pd.DataFrame({"user_id": chunk, "start_s": window[0], "end_s": window[1]})
    recomputed = updater.recompute_windows(session, windows, cause=cause)
    return recomputed, chunk[-1] if len(remaining) > households else None
