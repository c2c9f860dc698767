"""Households' contract versions; every function takes the caller's session."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Collection

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.orm import Session

from statistics_manager_service.storage.tables import ContractVersion

# How a version's effective instant was found, from the most to the least explicit:
# "effective_from", "modified_timestamp", "event_time", or this for a household's first version,
# which no account event dated.
INITIAL_SOURCE = "initial"
STORED_VERSION_COLUMNS = (
    "user_id",
    "effective_s",
    "effective_source",
    "tariff_type",
    "contracted_power_kva",
    "zone",
    "timezone",
    "modified_ms",
    "event_id",
    "billing_day",
    "large_family",
    "bill_budget_eur",
)


@dataclasses.dataclass(frozen=True)
class NewContractVersion:
    """A contract version as an account event states it (None: a field it does not state;
    `bill_budget_eur` 0: the version clears the budget)."""

    user_id: str
    effective_s: int
    effective_source: str
    tariff_type: str | None
    contracted_power_kva: float | None
    zone: str | None
    timezone: str | None
    modified_ms: int
    event_id: str
    billing_day: int | None = None
    large_family: bool | None = None
    bill_budget_eur: float | None = None


def load_contract_versions(session: Session, user_ids: Collection[str]) -> pd.DataFrame:
    """Return the stored versions of households (STORED_VERSION_COLUMNS), by household and instant."""
    rows = (
        session.execute(
            sa.select(
                ContractVersion.user_id,
                ContractVersion.effective_from,
                ContractVersion.effective_source,
                ContractVersion.tariff_type,
                ContractVersion.contracted_power_kva,
                ContractVersion.zone,
                ContractVersion.timezone,
                ContractVersion.modified_ms,
                ContractVersion.event_id,
                ContractVersion.billing_day,
                ContractVersion.large_family,
                ContractVersion.bill_budget_eur,
            )
            .where(ContractVersion.user_id.in_(sorted(set(user_ids))))
            .order_by(ContractVersion.user_id, ContractVersion.effective_from)
        ).all()
        if user_ids
        else []
    )
    frame = pd.DataFrame(rows, columns=list(STORED_VERSION_COLUMNS))
    frame["effective_s"] = frame["effective_s"].astype("int64")
    frame["contracted_power_kva"] = frame["contracted_power_kva"].astype("float64")
    frame["billing_day"] = frame["billing_day"].astype("float64")
    frame["large_family"] = frame["large_family"].astype(object)
    frame["bill_budget_eur"] = frame["bill_budget_eur"].astype("float64")
    return frame


def put_contract_version(session: Session, version: NewContractVersion) -> bool:
    """Store a version unless one with the same effective instant was modified later (or as late,
    with a greater event id); return whether the stored history changed."""
    stored = session.get(ContractVersion, (version.user_id, version.effective_s))
    values = {
        "effective_source": version.effective_source,
        "tariff_type": version.tariff_type,
        "contracted_power_kva": version.contracted_power_kva,
        "zone": version.zone,
        "timezone": version.timezone,
        "modified_ms": version.modified_ms,
        "event_id": version.event_id,
        "billing_day": version.billing_day,
        "large_family": version.large_family,
        "bill_budget_eur": version.bill_budget_eur,
        "updated_at": int(time.time()),
    }
    if stored is None:
        session.add(ContractVersion(user_id=version.user_id, effective_from=version.effective_s, **values))
        session.flush()
        return True
    if (stored.modified_ms, stored.event_id) >= (version.modified_ms, version.event_id):
        return False
    for name, value in values.items():
        setattr(stored, name, value)
    session.flush()
    return True
