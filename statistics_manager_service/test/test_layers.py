"""Imports run one way: aggregation <- storage <- recompute <- query and the event handlers <- controllers.

A lower layer never imports a higher one, not even for type checking: what both need moves down.
"""

from __future__ import annotations

from pathlib import Path

import pytest

import statistics_manager_service
from statistics_manager_service.test.aggregation.test_purity import imported_modules

PACKAGE = "statistics_manager_service"
ROOT = Path(statistics_manager_service.__file__).parent
# The wiring at the top: it builds and runs everything below it.
WIRING = {"app", "context", "tariff_loading", "controllers", "demo"}
ABOVE_QUERY = WIRING | {"event_consumer", "event_producers"}
ABOVE_RECOMPUTE = ABOVE_QUERY | {"query"}
# Each part of the service, and the parts above it that it must not import.
ABOVE: dict[str, set[str]] = {
    "storage": ABOVE_RECOMPUTE | {"recompute", "background"},
    "recompute": ABOVE_RECOMPUTE,
    "query": ABOVE_QUERY,
    "event_producers": WIRING - {"tariff_loading", "context"} | {"event_consumer", "query"},
    "background": {"event_consumer", "event_producers", "app", "context"},
    "backoff": {"event_consumer", "event_producers", "app", "context"},
    "produce_errors": {"event_consumer", "event_producers", "app", "context"},
}
# The bottom, imported by every layer: tracing and logging import no other part but the settings.
PARTS = {path.stem for path in ROOT.iterdir() if path.suffix == ".py" or (path / "__init__.py").exists()}
ABOVE["tracing"] = PARTS - {"__init__", "config", "tracing"}
ABOVE["log"] = PARTS - {"__init__", "config", "tracing", "log"}


def _sources(part: str) -> list[Path]:
    folder = ROOT / part
    return sorted(folder.rglob("*.py")) if folder.is_dir() else [ROOT / f"{part}.py"]


@pytest.mark.parametrize("part", sorted(ABOVE))
def test_a_layer_imports_nothing_above_it(part: str) -> None:
    sources = _sources(part)
    assert sources and all(path.exists() for path in sources)
    for path in sources:
        for module in imported_modules(path):
            if not module.startswith(PACKAGE + "."):
                continue
            top = module.split(".")[1]
            assert top not in ABOVE[part], f"{path.relative_to(ROOT)} imports {module}"
