"""Forecast (and mock real) consumption curves of households."""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.orm import Session

from statistics_manager_service.storage.tables import ConsumptionCurve
from statistics_manager_service.storage.upsert import upsert_rows

CURVE_COLUMNS = ["user_id", "kind", "ts", "interval_s", "energy_kwh", "origin"]


def upsert_curve(
    session: Session,
    user_id: str,
    kind: str,
    starts: Iterable[int],
    energies_kwh: Iterable[float],
    interval_s: int,
    origin: str,
) -> None:
    """Store a curve's values and their origin; a newer curve for the same instants replaces the older."""
    now = int(time.time())
    rows = [
        {
            "user_id": user_id,
            "kind": kind,
            "ts": int(ts),
            "interval_s": int(interval_s),
            "energy_kwh": float(energy),
            "computed_at": now,
            "origin": origin,
        }
        for ts, energy in zip(starts, energies_kwh, strict=True)
    ]
    upsert_rows(session, ConsumptionCurve, rows, ["user_id", "kind", "ts"])


def load_curves(
    session: Session, user_ids: Sequence[str], kind: str, start_s: int, end_s: int
) -> pd.DataFrame:
    """Return curve values of `user_ids` starting in [start_s, end_s), ordered."""
    statement = (
        sa.select(*(ConsumptionCurve.__table__.c[c] for c in CURVE_COLUMNS))
        .where(
            ConsumptionCurve.user_id.in_(sorted(set(user_ids))),
            ConsumptionCurve.kind == kind,
            ConsumptionCurve.ts >= start_s,
            ConsumptionCurve.ts < end_s,
        )
        .order_by(ConsumptionCurve.user_id, ConsumptionCurve.ts)
    )
    frame = pd.DataFrame(session.execute(statement).all(), columns=CURVE_COLUMNS)
    frame["ts"] = frame["ts"].astype("int64")
    frame["energy_kwh"] = frame["energy_kwh"].astype("float64")
    return frame
