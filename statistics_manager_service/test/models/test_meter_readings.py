"""The vectorized MeterReadings check accepts only what the schema accepts, with the same values."""

from __future__ import annotations

import datetime as dt
import math
import time
from typing import Any

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from marshmallow import ValidationError

from statistics_manager_service.models.events import MeterReadingsSchema
from statistics_manager_service.models.meter_readings import NUMBER_FIELDS, plain_meter_readings

GOOD_STAMP = "2026-05-04T10:15:00Z"

good_stamps = st.sampled_from([GOOD_STAMP, "2026-05-04T10:15:00+00:00", "2026-05-05T00:00:00Z"])
odd_stamps = st.one_of(
    st.sampled_from(
        [
            "2026-05-04T10:15:00",  # naive: the schema takes it as UTC
            "2026-05-04 10:15:00Z",
            "2026-05-04T10:15:00.250Z",
            "2026-05-04T11:15:00+01:00",
            "2026-02-29T00:00:00Z",
            "2026-05-04T24:00:00Z",
            "1999-12-31T23:59:59Z",
            "2000-01-01T00:00:00Z",
            "2099-01-01T00:00:00Z",
            "yesterday",
            "",
            "2026-05-04t10:15:00Z",
        ]
    ),
    st.integers(),
    st.none(),
)
good_numbers = st.one_of(st.floats(min_value=0, max_value=1000), st.integers(0, 1000), st.none())
odd_numbers = st.one_of(
    st.floats(min_value=0, max_value=2e12),
    st.integers(min_value=-5, max_value=10**13),
    st.sampled_from([-0.0, -1.5, 1e7, 1e7 + 1, 1000.0, 1000.5, 10**400, float("nan"), float("inf")]),
    st.sampled_from(["12.5", True, False, [], {}]),
    st.none(),
)


def _mostly(draw: st.DrawFn, good: st.SearchStrategy[Any], odd: st.SearchStrategy[Any]) -> Any:
    return draw(odd if draw(st.integers(0, 19)) == 0 else good)


@st.composite
def readings(draw: st.DrawFn) -> Any:
    if draw(st.integers(0, 50)) == 0:
        return draw(st.sampled_from([None, "x", [1], 3]))
    reading: dict[str, Any] = {"timestamp": _mostly(draw, good_stamps, odd_stamps)}
    for name in NUMBER_FIELDS:
        if name.startswith("energy_im") or name.startswith("energy_ex") or draw(st.booleans()):
            reading[name] = _mostly(draw, good_numbers, odd_numbers)
    if draw(st.integers(0, 50)) == 0:
        del reading["timestamp"]
    if draw(st.integers(0, 50)) == 0:
        del reading["energy_exported_wh"]
    return reading


@st.composite
def payloads(draw: st.DrawFn) -> Any:
    payload: dict[str, Any] = {
        "source": _mostly(
            draw, st.sampled_from(["hub", "dongle", "smart_meter"]), st.sampled_from(["x", None])
        ),
        "readings": draw(st.lists(readings(), min_size=0, max_size=3)),
        "ignored": 1,
    }
    owner = _mostly(
        draw, st.sampled_from(["user", "device", "both"]), st.sampled_from(["none", "bad user", "bad device"])
    )
    if owner in ("user", "both"):
        payload["user_id"] = "house00001"
    if owner in ("device", "both"):
        payload["device_id"] = "dongle-1"
    if owner == "bad user":
        payload["user_id"] = draw(st.sampled_from(["short", "house 00001", None, 7, "house00001\n"]))
    if owner == "bad device":
        payload["device_id"] = draw(st.sampled_from(["", "d" * 129, None]))
    return payload


def _schema_result(payload: Any) -> dict[str, Any] | None:
    try:
        loaded: dict[str, Any] = MeterReadingsSchema().load(payload)
    except ValidationError:
        return None
    return loaded


def _check(batch: list[Any]) -> int:
    owners, columns = plain_meter_readings(batch, time.time())
    accepted = 0
    for index, (payload, owner) in enumerate(zip(batch, owners, strict=True)):
        expected = _schema_result(payload)
        if owner is None:
            continue
        accepted += 1
        assert expected is not None, payload
        assert owner == {k: v for k, v in expected.items() if k != "readings"}
        mine = columns.event == index
        assert int(mine.sum()) == len(expected["readings"])
        for row, reading in zip(np.flatnonzero(mine), expected["readings"], strict=True):
            assert columns.ts[row] == int(reading["timestamp"].timestamp())
            for name in NUMBER_FIELDS:
                value = reading.get(name)
                if value is None:
                    assert math.isnan(columns.numbers[name][row])
                else:
                    assert columns.numbers[name][row] == value
    assert len(columns.event) == sum(
        len(payload["readings"]) for payload, owner in zip(batch, owners, strict=True) if owner is not None
    )
    return accepted


@settings(max_examples=300, deadline=None)
@given(st.lists(payloads(), min_size=1, max_size=6))
def test_accepts_only_what_the_schema_accepts_with_the_same_values(batch: list[Any]) -> None:
    _check(batch)


def test_the_common_shape_is_accepted_without_the_schema() -> None:
    start = dt.datetime(2026, 5, 4, tzinfo=dt.UTC)
    batch = [
        {
            "user_id": f"house{user:05d}",
            "source": "hub",
            "readings": [
                {
                    "timestamp": (start + dt.timedelta(minutes=15 * step)).isoformat().replace("+00:00", "Z"),
                    "energy_imported_wh": 100.0 * step + user,
                    "energy_exported_wh": 0,
                    **({"voltage_v": 230.5, "power_imported_w": None} if step % 2 else {}),
                }
                for step in range(96)
            ],
        }
        for user in range(5)
    ]
    assert _check(batch) == 5
