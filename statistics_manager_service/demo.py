"""Demo data: a year of households loaded through the consumer's own handlers."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from statistics_manager_service.app import ServiceContext

logger = logging.getLogger(__name__)


def load_demo(context: ServiceContext) -> None:
    """Load the demo households (not available until the demo data set lands)."""
    logger.warning("--demo: demo data is not available in this build yet; serving without it")
