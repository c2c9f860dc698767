"""Which environment variables the service reads, taken from config.py itself (nothing listed by hand)."""

from __future__ import annotations

import ast
import dataclasses
import re
from pathlib import Path

from statistics_manager_service import config

# The settings that hold credentials: Kubernetes takes them from a Secret, never a ConfigMap.
SECRET_SETTINGS = frozenset({"DATABASE_URL", "JWT_SIGN_KEY"})
# The settings the image build sets (Dockerfile ARG -> ENV), which a deployment must not override.
BUILD_SETTINGS = frozenset({"GIT_REVISION"})

_VARIABLE = re.compile(r"[A-Z][A-Z0-9_]+")


def _from_env_method() -> ast.FunctionDef:
    tree = ast.parse(Path(config.__file__).read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        if isinstance(node, ast.ClassDef) and node.name == "Settings":
            for item in node.body:
                if isinstance(item, ast.FunctionDef) and item.name == "from_env":
                    return item
    raise AssertionError("config.py has no Settings.from_env")


def _variables_in(node: ast.AST) -> set[str]:
    return {
        child.value
        for child in ast.walk(node)
        if isinstance(child, ast.Constant)
        and isinstance(child.value, str)
        and _VARIABLE.fullmatch(child.value)
    }


def settings_read_by_config() -> dict[str, str]:
    """Map each Settings field to the environment variable `Settings.from_env` reads it from.

    Read from the `cls(field=...)` call of `from_env`: each field's argument names exactly one
    variable, every field is set there, and `from_env` names no variable besides these.
    """
    method = _from_env_method()
    calls = [
        node
        for node in ast.walk(method)
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Name)
        and node.func.id == "cls"
        and node.keywords
    ]
    assert len(calls) == 1, "Settings.from_env builds the settings with one cls(...) call"
    variables: dict[str, str] = {}
    for keyword in calls[0].keywords:
        names = _variables_in(keyword.value)
        assert keyword.arg and len(names) == 1, f"{keyword.arg} is read from {sorted(names)}"
        variables[keyword.arg] = names.pop()
    fields = {field.name for field in dataclasses.fields(config.Settings)}
    assert set(variables) == fields, (
        f"fields not read from the environment: {sorted(fields - set(variables))}"
    )
    assert _variables_in(method) == set(variables.values())
    return variables


def service_settings() -> list[str]:
    """Every environment variable a deployment sets for the service (all it reads but the build's), sorted."""
    return sorted(set(settings_read_by_config().values()) - BUILD_SETTINGS)
