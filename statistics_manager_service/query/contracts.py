"""A household's contract history, as support staff read it to explain a cost."""

from __future__ import annotations

from typing import Any

import numpy as np
from sqlalchemy.orm import Session

from statistics_manager_service.aggregation.billing import (
    DEFAULT_BILLING_DAY,
    billing_terms_at,
    resolve_billing_terms,
)
from statistics_manager_service.aggregation.contracts import BEGINNING_S
from statistics_manager_service.aggregation.localtime import utc_text
from statistics_manager_service.aggregation.tariffs import TariffBook
from statistics_manager_service.exception_handling_utils.errors import UserNotFound
from statistics_manager_service.recompute.views import load_household_contracts
from statistics_manager_service.storage.contracts import INITIAL_SOURCE


def _iso(epoch_s: int) -> str | None:
    if epoch_s <= BEGINNING_S:
        return None
    return utc_text(epoch_s)


def load_contract_history(
    session: Session, user_id: str, book: TariffBook, default_timezone: str
) -> list[dict[str, Any]]:
    """List a household's contract versions, oldest first, each with every field in force (a
    billing day and large-family flag no version stated are the bill's defaults, 1 and false; a
    budget never stated or cleared is null); 404 for an unknown household."""
    known = load_household_contracts(session, default_timezone, user_id)
    if known.household is None:
        raise UserNotFound(user_id)
    stored, contracts = known.stored, known.contracts
    sources = dict(zip(stored["effective_s"].tolist(), stored["effective_source"].tolist(), strict=True))
    instants = contracts["effective_s"].to_numpy(dtype=np.int64)
    users = np.full(instants.size, user_id, dtype=object)
    terms = billing_terms_at(resolve_billing_terms(stored), users, instants)
    history = []
    for (effective_s, tariff_type, power_kva, zone, timezone), billing in zip(
        contracts[["effective_s", "tariff_type", "contracted_power_kva", "zone", "timezone"]].itertuples(
            index=False, name=None
        ),
        terms,
        strict=True,
    ):
        spec = book.tariffs.get(tariff_type)
        history.append(
            {
                "effective_from": _iso(int(effective_s)),
                "effective_source": sources.get(int(effective_s), INITIAL_SOURCE),
                "tariff_type": tariff_type,
                "cycle": spec.schedule if spec is not None else None,
                "contracted_power_kva": float(power_kva),
                "zone": zone,
                "timezone": timezone,
                "billing_day": billing.billing_day or DEFAULT_BILLING_DAY,
                "large_family": bool(billing.large_family),
                "bill_budget": billing.bill_budget_eur,
            }
        )
    return history
