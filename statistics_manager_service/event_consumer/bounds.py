"""What one MeterReadings message may make the service recompute.

Energy between two readings is spread over the gap between them, and every local day the gap
crosses is recomputed and written. A meter whose clock was reset (2000-01-01 is common) would
otherwise spread years of energy over tens of thousands of buckets in one transaction. So a
message with a reading older than READING_MAX_AGE_DAYS, or farther than READING_MAX_GAP_DAYS from
the household's other readings, is refused whole, with the reason, before anything is stored.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from sqlalchemy.orm import Session

from statistics_manager_service.aggregation.granularity import SECONDS_PER_DAY
from statistics_manager_service.aggregation.localtime import utc_text
from statistics_manager_service.aggregation.windows import reachable_instants
from statistics_manager_service.config import Settings
from statistics_manager_service.storage.households import reading_history

# The frame column naming each reading's message (its position in the caller's list).
EVENT_COLUMN = "event"


def refused_messages(
    session: Session, readings: pd.DataFrame, settings: Settings, now_s: float
) -> dict[int, str]:
    """Return, per message whose readings must not be stored, the reason.

    `readings` has `user_id`, `ts` and EVENT_COLUMN. A household's anchor is its known history
    (first to last reading); for a household without history, its newest reading in the batch.
    """
    oldest_s = now_s - settings.reading_max_age_days * SECONDS_PER_DAY
    refused: dict[int, str] = {}
    too_old = readings[readings["ts"] < oldest_s]
    oldest = too_old.groupby(EVENT_COLUMN, sort=True)["ts"].first()
    for event, ts in zip(oldest.index.tolist(), oldest.tolist(), strict=True):
        refused[event] = (
            f"reading at {utc_text(ts)} is older than READING_MAX_AGE_DAYS"
            f" ({settings.reading_max_age_days} days)"
        )
    history = reading_history(session, readings["user_id"].unique().tolist()).set_index("user_id")
    max_gap_s = settings.reading_max_gap_days * SECONDS_PER_DAY
    # Refusing a message may cut a chain through its readings: repeat until nothing more is cut.
    while True:
        kept = readings[~readings[EVENT_COLUMN].isin(list(refused))]
        if kept.empty:
            return refused
        codes, users = pd.factorize(kept["user_id"], sort=True)
        newest = kept.groupby(codes)["ts"].max().to_numpy(dtype=np.int64)
        first = pd.Series(users).map(history["first_s"]).to_numpy(dtype=np.float64, na_value=np.nan)
        last = pd.Series(users).map(history["last_s"]).to_numpy(dtype=np.float64, na_value=np.nan)
        known = ~np.isnan(first)
        low = np.where(known, first, newest).astype(np.int64)
        high = np.where(known, last, newest).astype(np.int64)
        ts = kept["ts"].to_numpy(dtype=np.int64)
        reachable = reachable_instants(codes.astype(np.int64), ts, low, high, max_gap_s)
        if reachable.all():
            return refused
        far = kept[~reachable].assign(code=codes[~reachable])
        for event, ts_s, code in far.groupby(EVENT_COLUMN, sort=True)[["ts", "code"]].first().itertuples():
            anchor = (
                f"the household's readings ({utc_text(int(low[code]))} to {utc_text(int(high[code]))})"
                if known[code]
                else f"the household's newest reading ({utc_text(int(high[code]))})"
            )
            refused[int(event)] = (
                f"reading at {utc_text(int(ts_s))} is more than READING_MAX_GAP_DAYS "
                f"({settings.reading_max_gap_days} days) from {anchor}: not interpolated across"
            )
