"""Builders for readings frames used across the aggregation tests."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt
import pandas as pd

MIDNIGHT_UTC_2026_01_05 = 1_767_571_200  # Monday 2026-01-05T00:00:00Z


def utc(text: str) -> int:
    """Return epoch seconds of an ISO-8601 instant."""
    return int(pd.Timestamp(text).timestamp())


def readings(
    ts: npt.ArrayLike,
    imported_wh: npt.ArrayLike,
    exported_wh: npt.ArrayLike | None = None,
    *,
    user_id: str = "user000001",
    generated_wh: npt.ArrayLike | None = None,
    power_imported_w: npt.ArrayLike | None = None,
    power_exported_w: npt.ArrayLike | None = None,
    voltage_v: npt.ArrayLike | None = None,
) -> pd.DataFrame:
    """Return a readings frame for one user; omitted optional fields are NaN."""
    n = np.asarray(ts).size

    def column(values: npt.ArrayLike | None, default: float = np.nan) -> np.ndarray:
        return np.full(n, default) if values is None else np.asarray(values, dtype=np.float64)

    return pd.DataFrame(
        {
            "user_id": [user_id] * n,
            "ts": np.asarray(ts, dtype=np.int64),
            "energy_imported_wh": column(imported_wh),
            "energy_exported_wh": column(exported_wh, 0.0),
            "energy_generated_wh": column(generated_wh),
            "power_imported_w": column(power_imported_w),
            "power_exported_w": column(power_exported_w),
            "voltage_v": column(voltage_v),
        }
    )


def households(rows: Sequence[tuple[str, str, str, float | str, str]]) -> pd.DataFrame:
    """Return a households frame from (user_id, timezone, tariff_type, contracted kVA, zone) rows."""
    return pd.DataFrame(rows, columns=["user_id", "timezone", "tariff_type", "contracted_power_kva", "zone"])


def no_energy_prices() -> pd.DataFrame:
    """Return an empty EnergyPrices frame."""
    return pd.DataFrame({"zone": [], "direction": [], "ts": [], "resolution_s": [], "value": []})


def no_carbon_intensity() -> pd.DataFrame:
    """Return an empty CarbonIntensity frame."""
    return pd.DataFrame({"zone": [], "kind": [], "ts": [], "resolution_s": [], "value": []})
