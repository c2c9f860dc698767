"""The aggregation engine stays pure: it imports only stdlib, numpy, pandas, yaml and itself."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import statistics_manager_service.aggregation as aggregation

ALLOWED_THIRD_PARTY = {"numpy", "pandas", "yaml"}
OWN_PACKAGE = "statistics_manager_service.aggregation"


def imported_modules(path: Path) -> set[str]:
    """Return every module name a source file imports (absolute names)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, f"{path.name}: use absolute imports"
            names.add(node.module or "")
    return names


def test_aggregation_imports_only_stdlib_numpy_pandas_yaml() -> None:
    sources = sorted(Path(aggregation.__file__).parent.glob("*.py"))
    assert len(sources) > 5
    for path in sources:
        for module in imported_modules(path):
            top = module.split(".")[0]
            allowed = (
                top in sys.stdlib_module_names
                or top in ALLOWED_THIRD_PARTY
                or module == OWN_PACKAGE
                or module.startswith(OWN_PACKAGE + ".")
            )
            assert allowed, f"{path.name} imports {module}"
