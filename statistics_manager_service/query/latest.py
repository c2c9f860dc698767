"""The newest reading of each household: cumulative energy, power or voltage."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import numpy as np
from sqlalchemy.orm import Session

from statistics_manager_service.aggregation.localtime import format_local_iso
from statistics_manager_service.query.series import household_timezones
from statistics_manager_service.storage.readings import latest_readings, latest_registers


@dataclasses.dataclass(frozen=True)
class Latest:
    """Which reading column an `-last` endpoint reports, and how to scale it."""

    column: str
    units: str
    scale: float = 1.0


LATEST: dict[str, Latest] = {
    "energy_injection": Latest("energy_exported_wh", "kWh", 0.001),
    "power_consumption": Latest("power_imported_w", "W"),
    "power_injection": Latest("power_exported_w", "W"),
    "voltage": Latest("voltage_v", "V"),
}


def load_latest(
    session: Session, user_ids: Sequence[str], kind: str, default_timezone: str
) -> list[dict[str, Any]]:
    """Return the newest value per household (households without readings are left out).

    Energy answers the meter's registers, as FlexiHome did: `/energy-consumption-last` the import
    register (with `consumption_total`, import plus self-consumed generation, for a household with
    generation), `/energy-injection-last` the export register. After a meter replacement the newest
    reading is the new meter's, so is its register.
    """
    zones = household_timezones(session, user_ids, default_timezone)
    extra: dict[str, list[Any]] = {}
    if kind == "energy_consumption":
        frame = latest_registers(session, user_ids)
        imported = frame["energy_imported_wh"].to_numpy(dtype=np.float64)
        generated = frame["energy_generated_wh"].to_numpy(dtype=np.float64)
        self_consumed = np.clip(generated - frame["energy_exported_wh"].to_numpy(dtype=np.float64), 0.0, None)
        values = imported * 0.001
        total = (imported + self_consumed) * 0.001
        extra["consumption_total"] = [None if t != t else round(t, 6) for t in total.tolist()]
        units = "kWh"
    else:
        spec = LATEST[kind]
        frame = latest_readings(session, user_ids, spec.column)
        values = frame["value"].to_numpy(dtype=np.float64) * spec.scale
        units = spec.units
    stamps = format_local_iso(
        frame["ts"].to_numpy(dtype=np.int64), frame["user_id"].map(zones).to_numpy(dtype=object)
    )
    by_user: dict[str, dict[str, Any]] = {}
    for index, (user_id, stamp, value) in enumerate(
        zip(frame["user_id"].tolist(), stamps.tolist(), values.tolist(), strict=True)
    ):
        item = {"user_id": user_id, "timestamp": stamp, "value": round(float(value), 6), "units": units}
        for name, column in extra.items():
            if column[index] is not None:  # only where the household measures generation
                item[name] = column[index]
        by_user[user_id] = item
    return [by_user[user_id] for user_id in user_ids if user_id in by_user]
