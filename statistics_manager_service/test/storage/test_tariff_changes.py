"""A corrected tariff book recomputes exactly the history it changes."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa
import yaml

from statistics_manager_service.context import ServiceContext
from statistics_manager_service.storage.tables import StatisticsPeriod
from statistics_manager_service.tariff_loading import PACKAGED_BOOK, apply_tariff_changes
from statistics_manager_service.test.conftest import make_settings
from statistics_manager_service.test.support.pipeline import account_message, meter_message, process, reading

USER = "tariffhome"
START = dt.datetime(2026, 3, 27, 0, 0, tzinfo=dt.UTC)
LISBON = ZoneInfo("Europe/Lisbon")


def _daily_cost(context: ServiceContext) -> dict[str, float]:
    with context.engine.connect() as connection:
        rows = connection.execute(
            sa.select(StatisticsPeriod.period_start, StatisticsPeriod.energy_cost_eur)
            .where(StatisticsPeriod.user_id == USER, StatisticsPeriod.granularity == "daily")
            .order_by(StatisticsPeriod.period_start)
        ).all()
    return {dt.datetime.fromtimestamp(start, LISBON).date().isoformat(): cost for start, cost in rows}


def test_a_price_corrected_from_a_past_date_recomputes_from_that_date(
    context: ServiceContext, tmp_path: Path
) -> None:
    book_path = tmp_path / "tariffs.yaml"
    book_path.write_text(PACKAGED_BOOK.read_text(encoding="utf-8"), encoding="utf-8")
    context.settings = make_settings(context.settings.database_url, tariffs_file=str(book_path))
    assert apply_tariff_changes(context) == 0  # the first book in force: nothing to redo

    readings = [
        reading(START + dt.timedelta(minutes=15 * q), 250.0 * q) for q in range(3 * 96 + 1)
    ]  # 1 kWh per hour
    assert process(context, [account_message(USER, tarif_type="simple"), meter_message(USER, readings)]) == []
    before = _daily_cost(context)
    assert before["2026-03-27"] == pytest.approx(24 * 0.1651)

    document = yaml.safe_load(book_path.read_text(encoding="utf-8"))
    document["tariffs"]["simple"]["energy_prices_eur_per_kwh"].append(
        {"valid_from": dt.date(2026, 3, 28), "normal": 0.5}
    )
    book_path.write_text(yaml.safe_dump(document), encoding="utf-8")
    context.forget_loaded_state()  # a restart: the book is read again

    assert apply_tariff_changes(context) == 1
    after = _daily_cost(context)
    assert after["2026-03-27"] == before["2026-03-27"]  # before the correction: untouched
    assert after["2026-03-28"] == pytest.approx(24 * 0.5)
    assert after["2026-03-29"] == pytest.approx(23 * 0.5)  # the DST day has 23 hours
    assert apply_tariff_changes(context) == 0  # recorded: the next start does nothing
