"""Swagger UI's pre-filled examples work against the demo: every operation, called with exactly the
spec's example values, answers 2xx with data."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import urlencode

import pytest

from statistics_manager_service.app import BASE_PATH, create_app, load_spec
from statistics_manager_service.context import ServiceContext
from statistics_manager_service.demo import load_demo_data
from statistics_manager_service.demo.households import HOUSEHOLDS

# The demo as it stood the day after the examples' week: the month to date before it, so that
# /peer-comparison finds households whose readings back its compared days.
DEMO_NOW = dt.datetime(2026, 11, 24, 12, 0, tzinfo=dt.UTC)
DEMO_DAYS = 24
DEMO_USER_IDS = {household.user_id for household in HOUSEHOLDS}


def _resolve(spec: dict[str, Any], node: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in node:
        target: Any = spec
        for part in node["$ref"].removeprefix("#/").split("/"):
            target = target[part]
        node = target
    return node


def _example(spec: dict[str, Any], parameter: dict[str, Any]) -> Any:
    """The value Swagger UI fills in: the parameter's example, else its schema's example or default."""
    if "example" in parameter:
        return parameter["example"]
    schema = _resolve(spec, parameter["schema"])
    if "example" in schema:
        return schema["example"]
    if "default" in schema:
        return schema["default"]
    if schema.get("type") == "array" and "example" in _resolve(spec, schema["items"]):
        return [_resolve(spec, schema["items"])["example"]]
    return None


def _operations(spec: dict[str, Any]) -> Iterator[tuple[str, str, list[dict[str, Any]]]]:
    for path, item in spec["paths"].items():
        for method, operation in item.items():
            if method in ("get", "post"):
                yield method, path, [_resolve(spec, p) for p in operation.get("parameters", [])]


def _assert_has_data(where: str, body: Any, may_be_null: frozenset[str] = frozenset()) -> None:
    if isinstance(body, dict):
        assert body and all(value is not None or key in may_be_null for key, value in body.items()), (
            f"{where}: {body}"
        )
        return
    assert isinstance(body, list) and body, f"{where}: no data"
    for item in body:
        for key in ("metrics", "real", "forecast"):
            if key in item:
                assert item[key], f"{where}: empty {key} of {item.get('user_id')}"


def _null_in_example(spec: dict[str, Any], path: str, method: str) -> frozenset[str]:
    """The fields the success answer's own example shows as null (e.g. a closed bill's projection)."""
    success = spec["paths"][path][method]["responses"].get("200", {})
    example = success.get("content", {}).get("application/json", {}).get("example")
    if not isinstance(example, dict):
        return frozenset()
    return frozenset(key for key, value in example.items() if value is None)


@pytest.fixture
def demo(context: ServiceContext) -> ServiceContext:
    load = load_demo_data(context, days=DEMO_DAYS, now=DEMO_NOW)
    assert load.dead_letters == 0
    return context


def test_every_operation_answers_its_examples_with_data(
    demo: ServiceContext, auth_headers: Callable[..., dict[str, str]]
) -> None:
    spec = load_spec()
    user_examples = [
        _example(spec, p)
        for _, _, parameters in _operations(spec)
        for p in parameters
        if p["name"] in ("user_id", "user_ids")
    ]
    assert user_examples and all(
        set(value if isinstance(value, list) else [value]) <= DEMO_USER_IDS for value in user_examples
    )

    app = create_app(demo.settings, context=demo, validate_responses=True)
    called = []
    with app.test_client() as client:
        for method, path, parameters in _operations(spec):
            headers = auth_headers(service=True)
            query: list[tuple[str, str]] = []
            for parameter in parameters:
                value = _example(spec, parameter)
                if value is None:
                    continue
                if parameter["in"] == "header":
                    headers[parameter["name"]] = str(value)
                    continue
                values = value if isinstance(value, list) else [value]
                query += [
                    (parameter["name"], str(v).lower() if isinstance(v, bool) else str(v)) for v in values
                ]
            url = f"{BASE_PATH}{path}?{urlencode(query)}"
            response = client.request(method.upper(), url, headers=headers)
            where = f"{method.upper()} {url}"
            assert 200 <= response.status_code < 300, f"{where}: {response.status_code} {response.text}"
            if method == "get":
                _assert_has_data(where, response.json(), _null_in_example(spec, path, method))
            called.append(path)
    assert "/energy-consumption" in called and "/trigger-computed-forecast-producer" in called
