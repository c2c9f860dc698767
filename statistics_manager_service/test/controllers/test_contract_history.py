"""`GET /contract-history`: who may read it, an unknown household, a history read back, on both
databases."""

from __future__ import annotations

from collections.abc import Callable

from statistics_manager_service.context import ServiceContext
from statistics_manager_service.test.support.pipeline import account_message, process

USER = "contracts1"
OTHER = "contracts2"
Headers = Callable[..., dict[str, str]]


def _url(user_id: str) -> str:
    return f"/api/statistics/contract-history?user_id={user_id}"


def test_a_household_reads_its_own_history_and_a_service_reads_any(  # type: ignore[no-untyped-def]
    client, context: ServiceContext, auth_headers: Headers
) -> None:
    registered = account_message(
        USER, tarif_type="tri-hourly", contracted_power="10.35 kVA", modified_timestamp="2026-01-01T00:00:00Z"
    )
    assert process(context, [registered]) == []
    assert process(context, [account_message(OTHER)]) == []
    # The date comes from the account manager's modification time when no effective date is given.
    updated = account_message(
        USER, "UserUpdated", tarif_type="bi-hourly", modified_timestamp="2026-02-01T10:00:00+01:00"
    )
    assert process(context, [updated]) == []

    own = client.get(_url(USER), headers=auth_headers(user_id=USER))
    assert own.status_code == 200
    history = own.json()
    assert [(v["effective_source"], v["tariff_type"], v["contracted_power_kva"]) for v in history] == [
        ("modified_timestamp", "tri-hourly", 10.35),
        ("modified_timestamp", "bi-hourly", 10.35),  # the power it leaves out is the earlier one
    ]
    assert history[1]["effective_from"] == "2026-02-01T09:00:00Z"
    assert (history[1]["cycle"], history[1]["zone"], history[1]["timezone"]) == (
        "pt-bi-hourly-daily",
        "PT",
        context.settings.default_timezone,
    )
    assert client.get(_url(USER), headers=auth_headers(service=True)).json() == history

    other = client.get(_url(USER), headers=auth_headers(user_id=OTHER))
    assert other.status_code == 403
    assert "error" in other.json()
    anonymous = client.get(_url(USER), headers={"X-Correlation-ID": "c1"})
    assert anonymous.status_code == 401


def test_an_unknown_household_is_404_and_a_bad_id_400(client, auth_headers: Headers) -> None:  # type: ignore[no-untyped-def]
    missing = client.get(_url("nobody0000"), headers=auth_headers(service=True))
    assert missing.status_code == 404
    assert missing.json() == {"error": 'user with id "nobody0000" not found'}
    bad = client.get(_url("short"), headers=auth_headers(service=True))
    assert bad.status_code == 400
    assert "user_id" in bad.json()["error"]


def test_a_household_known_only_from_readings_has_its_default_contract_from_the_beginning(  # type: ignore[no-untyped-def]
    client, context: ServiceContext, auth_headers: Headers
) -> None:
    from statistics_manager_service.storage import households
    from statistics_manager_service.storage.engine import session_scope

    with session_scope(context.session_factory) as session:
        households.ensure_households(session, [USER])
    history = client.get(_url(USER), headers=auth_headers(user_id=USER)).json()
    assert history == [
        {
            "effective_from": None,
            "effective_source": "initial",
            "tariff_type": "simple",
            "cycle": "pt-simple",
            "contracted_power_kva": 6.9,
            "zone": "PT",
            "timezone": context.settings.default_timezone,
            "billing_day": 1,
            "large_family": False,
            "bill_budget": None,
        }
    ]
