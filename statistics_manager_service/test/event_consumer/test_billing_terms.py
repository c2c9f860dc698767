"""The billing terms of account events (`billing_day`, `large_family`, `bill_budget`) through the real
handlers, on both databases: stored as effective-dated versions whatever the delivery order, a
version that leaves a term out keeps the earlier one, a null budget clears it, a bad value is
dead-lettered naming its field, and a change of terms alone recomputes no statistics."""

from __future__ import annotations

import datetime as dt
import itertools
from collections.abc import Callable
from typing import Any

import pytest
import sqlalchemy as sa

from statistics_manager_service.context import ServiceContext
from statistics_manager_service.storage.tables import ContractVersion, OutboxEvent
from statistics_manager_service.test.conftest import clear_tables
from statistics_manager_service.test.support.pipeline import account_message, meter_message, process, reading

USER = "billterms1"
Headers = Callable[..., dict[str, str]]

# Four versions, each stating some terms: (event type, effective_from, fields).
VERSIONS: list[tuple[str, str, dict[str, Any]]] = [
    (
        "UserRegistered",
        "2026-01-01T00:00:00Z",
        {"tarif_type": "simple", "billing_day": 15, "large_family": False},
    ),
    ("UserUpdated", "2026-03-01T00:00:00Z", {"bill_budget": 80.0}),
    ("UserUpdated", "2026-05-01T00:00:00Z", {"large_family": True}),
    ("UserUpdated", "2026-07-01T00:00:00Z", {"bill_budget": None, "billing_day": 3}),
]
# The history they give, worked out by hand: (effective_from, billing_day, large_family, bill_budget).
EXPECTED = [
    ("2026-01-01T00:00:00Z", 15, False, None),
    ("2026-03-01T00:00:00Z", 15, False, 80.0),
    ("2026-05-01T00:00:00Z", 15, True, 80.0),
    ("2026-07-01T00:00:00Z", 3, True, None),
]


def _history(client: Any, headers: Headers) -> list[tuple[str | None, int, bool, float | None]]:
    response = client.get(f"/api/statistics/contract-history?user_id={USER}", headers=headers(service=True))
    assert response.status_code == 200, response.json()
    return [
        (v["effective_from"], v["billing_day"], v["large_family"], v["bill_budget"]) for v in response.json()
    ]


def _version(event_type: str, effective_from: str, fields: dict[str, Any]):  # type: ignore[no-untyped-def]
    return account_message(USER, event_type, effective_from=effective_from, **fields)


def test_the_terms_form_one_history_in_every_delivery_order(  # type: ignore[no-untyped-def]
    client, context: ServiceContext, auth_headers: Headers
) -> None:
    for order in itertools.permutations(range(len(VERSIONS))):
        clear_tables(context.engine)
        for position in order:
            # One batch per event, as separate deliveries; the second copy is a redelivery.
            event = _version(*VERSIONS[position])
            assert process(context, [event]) == []
            assert process(context, [event]) == []
        assert _history(client, auth_headers) == EXPECTED, order


def test_a_null_budget_is_stored_apart_from_a_budget_left_out(context: ServiceContext) -> None:
    assert process(context, [_version(*VERSIONS[0]), _version(*VERSIONS[1]), _version(*VERSIONS[3])]) == []
    with context.engine.connect() as connection:
        rows = connection.execute(
            sa.select(
                ContractVersion.billing_day, ContractVersion.large_family, ContractVersion.bill_budget_eur
            )
            .where(ContractVersion.user_id == USER)
            .order_by(ContractVersion.effective_from)
        ).all()
    # NULL: not stated (the earlier value holds on); a budget of 0: cleared.
    assert [tuple(row) for row in rows] == [(15, False, None), (None, None, 80.0), (3, None, 0.0)]


def test_terms_alone_recompute_no_statistics(context: ServiceContext) -> None:
    start = dt.datetime(2026, 2, 1, tzinfo=dt.UTC)
    readings = [reading(start + dt.timedelta(minutes=15 * i), 1000.0 + 100 * i) for i in range(97)]
    assert process(context, [_version(*VERSIONS[0]), meter_message(USER, readings)]) == []

    def announcements() -> int:
        with context.engine.connect() as connection:
            count: int = connection.execute(
                sa.select(sa.func.count()).where(OutboxEvent.type == "StatisticsUpdated")
            ).scalar_one()
        return count

    before = announcements()
    assert before > 0
    terms_only = _version("UserUpdated", "2026-02-01T12:00:00Z", {"billing_day": 20, "bill_budget": 45.5})
    assert process(context, [terms_only]) == []
    assert announcements() == before
    # A change of tariff at the same kind of instant does recompute: the count above can move.
    tariff = _version("UserUpdated", "2026-02-01T13:00:00Z", {"tarif_type": "bi-hourly"})
    assert process(context, [tariff]) == []
    assert announcements() == before + 1


@pytest.mark.parametrize(
    ("fields", "name"),
    [
        ({"billing_day": 31}, "billing_day"),
        ({"billing_day": 0}, "billing_day"),
        ({"billing_day": 29}, "billing_day"),
        ({"billing_day": "15"}, "billing_day"),
        ({"billing_day": 15.5}, "billing_day"),
        ({"billing_day": True}, "billing_day"),
        ({"large_family": "yes"}, "large_family"),
        ({"large_family": "true"}, "large_family"),
        ({"large_family": 1}, "large_family"),
        ({"bill_budget": -20.0}, "bill_budget"),
        ({"bill_budget": 0}, "bill_budget"),
        ({"bill_budget": "80"}, "bill_budget"),
        ({"bill_budget": True}, "bill_budget"),
        ({"bill_budget": 1e9}, "bill_budget"),
    ],
)
def test_an_invalid_term_is_dead_lettered_naming_its_field(
    context: ServiceContext, fields: dict[str, Any], name: str
) -> None:
    assert process(context, [_version(*VERSIONS[0])]) == []
    bad = _version("UserUpdated", "2026-04-01T00:00:00Z", fields)
    good = _version(*VERSIONS[1])
    dead = process(context, [bad, good])
    assert [letter.message.offset for letter in dead] == [bad.offset]
    assert name in dead[0].reason and "invalid payload" in dead[0].reason, dead[0].reason
    with context.engine.connect() as connection:
        instants = connection.execute(
            sa.select(ContractVersion.effective_from)
            .where(ContractVersion.user_id == USER)
            .order_by(ContractVersion.effective_from)
        ).scalars()
        # The bad event stored nothing; the good one after it in the same batch was applied.
        assert list(instants) == [
            int(dt.datetime(2026, 1, 1, tzinfo=dt.UTC).timestamp()),
            int(dt.datetime(2026, 3, 1, tzinfo=dt.UTC).timestamp()),
        ]
