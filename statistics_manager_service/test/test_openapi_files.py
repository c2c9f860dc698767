"""The contract: one spec in two places, and wire-compatible with the FlexiHome reference."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from statistics_manager_service.app import SPEC_PATH
from statistics_manager_service.test.conftest import REPO_ROOT

REFERENCE = REPO_ROOT.parent / "shared" / "reference" / "flexihome-statistics-manager-openapi.yaml"


def _load(path: Path) -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load(path.read_text(encoding="utf-8"))
    return document


def test_root_spec_is_identical_to_the_package_spec() -> None:
    assert (REPO_ROOT / "statistics-manager-openapi.yaml").read_bytes() == SPEC_PATH.read_bytes()


def _resolve(document: dict[str, Any], node: Any) -> Any:
    while isinstance(node, dict) and "$ref" in node:
        target: Any = document
        for part in node["$ref"].lstrip("#/").split("/"):
            target = target[part]
        node = target
    return node


def _parameter_names(document: dict[str, Any], operation: dict[str, Any]) -> set[str]:
    return {
        _resolve(document, parameter)["name"]
        for parameter in operation.get("parameters", [])
        if _resolve(document, parameter)["name"] != "Authorization"
    }


def _response_fields(document: dict[str, Any], schema: Any, seen: frozenset[int] = frozenset()) -> set[str]:
    schema = _resolve(document, schema)
    if not isinstance(schema, dict) or id(schema) in seen:
        return set()
    seen = seen | {id(schema)}
    fields: set[str] = set()
    for part in schema.get("allOf", []):
        fields |= _response_fields(document, part, seen)
    if "items" in schema:
        fields |= _response_fields(document, schema["items"], seen)
    for name, child in schema.get("properties", {}).items():
        fields.add(name)
        fields |= {f"{name}.{sub}" for sub in _response_fields(document, child, seen)}
    return fields


@pytest.mark.skipif(not REFERENCE.is_file(), reason="the FlexiHome reference contract is not beside the repo")
def test_every_reference_path_parameter_and_field_exists() -> None:
    reference, ours = _load(REFERENCE), _load(SPEC_PATH)
    for path, item in reference["paths"].items():
        assert path in ours["paths"], path
        for method, operation in item.items():
            if method not in ("get", "post", "put", "delete", "patch"):
                continue
            mine = ours["paths"][path][method]
            assert _parameter_names(reference, operation) <= _parameter_names(ours, mine) | {
                "X-Correlation-ID"
            }
            for status, response in operation["responses"].items():
                content = _resolve(reference, response).get("content", {})
                for media, body in content.items():
                    mine_body = _resolve(ours, mine["responses"][str(status)])["content"][media]
                    missing = _response_fields(reference, body["schema"]) - _response_fields(
                        ours, mine_body["schema"]
                    )
                    assert not missing, f"{method.upper()} {path} {status}: {sorted(missing)}"
