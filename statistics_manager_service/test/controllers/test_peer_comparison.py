"""GET /peer-comparison: a household among comparable homes, against the test's own sums and
percentiles; refused below ten households; never another household's id or value."""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Callable, Iterator
from typing import Any

import orjson
import pytest
import sqlalchemy as sa

from statistics_manager_service.context import ServiceContext
from statistics_manager_service.event_consumer.runner import peer_group_job
from statistics_manager_service.storage.tables import PeerGroupRow
from statistics_manager_service.test.support.pipeline import account_message, meter_message, process, reading

# Lisbon keeps UTC in November: local days are UTC days. The open month is compared to date,
# 1 to 3 November, the days before the job's run.
NOW = dt.datetime(2026, 11, 4, 12, 0, tzinfo=dt.UTC)
FIRST = dt.datetime(2026, 11, 1, tzinfo=dt.UTC)
COMPARED_QUARTERS = 3 * 96
URL = "/api/statistics/peer-comparison"
Headers = Callable[..., dict[str, str]]


@dataclasses.dataclass(frozen=True)
class Home:
    user_id: str
    wh_per_quarter: float
    power: str = "3.45 kVA"
    pv: bool = False
    first: dt.datetime = FIRST

    def readings(self) -> list[dict[str, Any]]:
        """A reading every quarter hour from `first` to NOW; PV homes export and generate by day."""
        out, imported, exported, generated = [], 1000.0, 0.0, 0.0
        at = self.first
        while at <= NOW:
            if self.pv:
                out.append(reading(at, imported, exported, generated))
                sunny = 10 <= at.hour < 16
                generated += 300.0 if sunny else 0.0
                exported += 200.0 if sunny else 0.0
            else:
                out.append(reading(at, imported))
            imported += self.wh_per_quarter
            at += dt.timedelta(minutes=15)
        return out

    def compared_kwh(self) -> float:
        """Consumption over 1-3 November by hand: the register's rise over its 288 quarter hours."""
        return COMPARED_QUARTERS * self.wh_per_quarter / 1000.0


# Totals 14.404 + 2.105 i kWh: none lies near a multiple of 0.1 kWh, where a rounded percentile could fall.
PEERS = [Home(f"peerno{i:04d}", 50.0137 + 7.31 * i) for i in range(10)]
PV_HOME = Home("peerpv0000", 60.0, pv=True)
LARGER_HOME = Home("peerbig000", 80.0, power="6.9 kVA")


def _load(context: ServiceContext, homes: list[Home]) -> None:
    messages = [
        account_message(h.user_id, tarif_type="simple", contracted_power=h.power, country="PT") for h in homes
    ]
    messages += [meter_message(h.user_id, h.readings()) for h in homes]
    assert process(context, messages) == []
    peer_group_job(context).run_once(now=NOW)


@pytest.fixture
def ten_peers(context: ServiceContext) -> Iterator[ServiceContext]:
    _load(context, [*PEERS, PV_HOME, LARGER_HOME])
    yield context


def _get(client: Any, headers: dict[str, str], user_id: str, period: str | None = "2026-11") -> Any:
    query = f"?user_id={user_id}" + (f"&period={period}" if period else "")
    return client.get(URL + query, headers=headers)


def _linear_percentile(values: list[float], share: float) -> float:
    """The percentile by hand: linear between the sorted values at position share x (n - 1)."""
    ordered = sorted(values)
    position = min(max(share * (len(ordered) - 1), 0.0), len(ordered) - 1.0)
    below = int(position)
    above = min(below + 1, len(ordered) - 1)
    return ordered[below] + (position - below) * (ordered[above] - ordered[below])


def _shown_percentile(values: list[float], share: float) -> float:
    """What households are shown: the mean of the percentile and the values one place either side."""
    step = 1 / (len(values) - 1)
    return sum(_linear_percentile(values, share + offset) for offset in (-step, 0.0, step)) / 3


def test_each_of_ten_comparable_households_is_placed_among_them(
    client: Any, auth_headers: Headers, ten_peers: ServiceContext
) -> None:
    truth = [home.compared_kwh() for home in PEERS]
    ordered = sorted(truth)
    # Ten households: the median blends the 4th to 7th lowest, (x3 + 2 x4 + 2 x5 + x6) / 6.
    median = (ordered[3] + 2 * ordered[4] + 2 * ordered[5] + ordered[6]) / 6
    assert median == pytest.approx(_shown_percentile(truth, 0.5))
    for home in PEERS:
        response = _get(client, auth_headers(user_id=home.user_id), home.user_id)
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["consumption_kwh"] == pytest.approx(home.compared_kwh(), abs=1e-3)
        assert body["households"] == 10
        assert body["median_kwh"] == pytest.approx(median, abs=0.05 + 1e-9)
        assert body["efficient_kwh"] == pytest.approx(_shown_percentile(truth, 0.2), abs=0.05 + 1e-9)
        # The k-th lowest of n sits at k / (n - 1) of the way from the lowest to the highest.
        rank = ordered.index(home.compared_kwh())
        assert body["percentile"] == pytest.approx(100.0 * rank / 9, abs=1.0)
        assert body["group"] == {
            "zone": "PT",
            "tariff_type": "simple",
            "power_band": "1.15-3.45",
            "contracted_power_kva": 3.45,
            "pv": False,
        }
        assert (body["period"], body["first_day"], body["last_day"]) == (
            "2026-11",
            "2026-11-01",
            "2026-11-03",
        )
        assert body["complete"] is False and body["coverage"] == pytest.approx(1.0)
        assert body["computed_at"] == NOW.isoformat()
    lowest, highest = PEERS[0], PEERS[-1]
    assert _get(client, auth_headers(service=True), lowest.user_id).json()["percentile"] == 0.0
    assert _get(client, auth_headers(service=True), highest.user_id).json()["percentile"] == 100.0
    # Without a period: the newest month with groups.
    assert _get(client, auth_headers(service=True), lowest.user_id, None).json()["period"] == "2026-11"


def _numbers(node: Any) -> Iterator[float]:
    if isinstance(node, bool):
        return
    if isinstance(node, int | float):
        yield float(node)
    elif isinstance(node, dict):
        for value in node.values():
            yield from _numbers(value)
    elif isinstance(node, list):
        for value in node:
            yield from _numbers(value)


def test_no_answer_or_stored_group_holds_another_household_s_id_or_value(
    client: Any, auth_headers: Headers, ten_peers: ServiceContext
) -> None:
    everyone = [*PEERS, PV_HOME, LARGER_HOME]
    for home in PEERS:
        body = _get(client, auth_headers(user_id=home.user_id), home.user_id).json()
        text = orjson.dumps(body).decode()
        others = [h for h in everyone if h.user_id != home.user_id]
        assert not [h.user_id for h in others if h.user_id in text]
        leaked = [
            (number, other.user_id)
            for number in _numbers(body)
            for other in others
            if abs(number - other.compared_kwh()) < 5e-4
        ]
        assert not leaked, body
    with ten_peers.engine.connect() as connection:
        rows = connection.execute(sa.select(PeerGroupRow.__table__)).mappings().all()
    stored = orjson.dumps([dict(row) for row in rows]).decode()
    assert not [h.user_id for h in everyone if h.user_id in stored]
    kept = [value for row in rows if row["percentiles_kwh"] for value in orjson.loads(row["percentiles_kwh"])]
    assert len(kept) == 99
    assert not [v for v in kept for h in everyone if abs(v - h.compared_kwh()) < 5e-4]
    assert min(kept) > min(h.compared_kwh() for h in PEERS)
    assert max(kept) < max(h.compared_kwh() for h in PEERS)


def test_pv_homes_and_other_power_bands_are_not_mixed_in(
    client: Any, auth_headers: Headers, ten_peers: ServiceContext
) -> None:
    with ten_peers.engine.connect() as connection:
        rows = connection.execute(
            sa.select(
                PeerGroupRow.period,
                PeerGroupRow.power_band,
                PeerGroupRow.pv,
                PeerGroupRow.households,
                PeerGroupRow.percentiles_kwh.is_not(None),
            ).order_by(PeerGroupRow.power_band, PeerGroupRow.pv)
        ).all()
    assert [tuple(row) for row in rows] == [
        ("2026-11", "1.15-3.45", False, 10, True),
        ("2026-11", "1.15-3.45", True, 1, False),
        ("2026-11", "4.6-6.9", False, 1, False),
    ]
    for home, described in ((PV_HOME, "1.15-3.45 kVA, with PV"), (LARGER_HOME, "4.6-6.9 kVA, without PV")):
        response = _get(client, auth_headers(user_id=home.user_id), home.user_id)
        assert response.status_code == 409, response.text
        error = response.json()["error"]
        assert "fewer than 10 comparable households" in error and described in error
        assert " 1 " not in error and "(1" not in error  # the count below ten stays undisclosed


def test_nine_comparable_households_are_refused(
    client: Any, auth_headers: Headers, context: ServiceContext
) -> None:
    # The last peer's readings start on the 2nd: two of the three compared days, below 90%.
    late = dataclasses.replace(PEERS[-1], first=FIRST + dt.timedelta(days=1))
    _load(context, [*PEERS[:-1], late])

    response = _get(client, auth_headers(user_id=PEERS[0].user_id), PEERS[0].user_id)
    assert response.status_code == 409
    error = response.json()["error"]
    assert "fewer than 10 comparable households" in error and "9" not in error
    own = _get(client, auth_headers(user_id=late.user_id), late.user_id)
    assert own.status_code == 409
    assert "67% of the compared days" in own.json()["error"] and "at least 90%" in own.json()["error"]


def test_who_may_ask_and_what_is_refused(
    client: Any, auth_headers: Headers, ten_peers: ServiceContext
) -> None:
    user = PEERS[3].user_id
    assert _get(client, auth_headers(user_id=PEERS[4].user_id), user).status_code == 403
    assert _get(client, auth_headers(service=True), user).status_code == 200
    assert _get(client, {"X-Correlation-ID": "c-1"}, user).status_code == 401
    unknown = _get(client, auth_headers(service=True), "nobody0000")
    assert unknown.status_code == 404 and "nobody0000" in unknown.json()["error"]
    for bad in ("2026-13", "202611", "2026-1"):
        malformed = _get(client, auth_headers(service=True), user, bad)
        assert malformed.status_code == 400, bad
        assert "period" in malformed.json()["error"]
    not_computed = _get(client, auth_headers(service=True), user, "2026-08")
    assert not_computed.status_code == 409
    assert "PEER_COMPARISON_INTERVAL_S" in not_computed.json()["error"]


def test_a_household_without_readings_in_the_month_is_told_why(
    client: Any, auth_headers: Headers, ten_peers: ServiceContext
) -> None:
    assert process(ten_peers, [account_message("peerempty0", tarif_type="simple", country="PT")]) == []
    response = _get(client, auth_headers(user_id="peerempty0"), "peerempty0")
    assert response.status_code == 404
    assert "has no consumption in 2026-11" in response.json()["error"]


def test_a_household_whose_readings_start_during_the_first_day_counts_that_day(
    client: Any, auth_headers: Headers, context: ServiceContext
) -> None:
    """Readings from 03:00 on 1 November: the day's 84 quarter hours after them count, and the
    household's coverage is (288 - 12) / 288 of the compared days."""
    late = Home("peerlate00", 61.0, first=FIRST + dt.timedelta(hours=3))
    _load(context, [*PEERS, late])
    response = _get(client, auth_headers(user_id=late.user_id), late.user_id)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["consumption_kwh"] == pytest.approx((COMPARED_QUARTERS - 12) * 61.0 / 1000.0, abs=1e-3)
    assert body["coverage"] == pytest.approx((COMPARED_QUARTERS - 12) / COMPARED_QUARTERS, abs=1e-3)
    assert body["households"] == 11
