"""Pure aggregation engine: readings -> 15-minute buckets -> local rollups, with cost and CO2.

No I/O: functions take and return DataFrames (the tariff loader alone reads a file).
"""

from statistics_manager_service.aggregation.buckets import BUCKET_COLUMNS, compute_buckets, coverage
from statistics_manager_service.aggregation.granularity import (
    BUCKET_SECONDS,
    GRANULARITIES,
    LEVEL,
    LEVELS,
    Granularity,
    Level,
)
from statistics_manager_service.aggregation.localtime import format_local_iso
from statistics_manager_service.aggregation.rollup import (
    covering_periods,
    period_bounds,
    period_starts,
    rollup,
)
from statistics_manager_service.aggregation.tariffs import (
    PRICE_COLUMNS,
    TariffBook,
    book_fingerprint,
    first_changed_date,
    load_tariff_book,
    price_buckets,
    tariff_periods,
)
from statistics_manager_service.aggregation.windows import context_bounds, late_data_window

__all__ = [
    "BUCKET_COLUMNS",
    "BUCKET_SECONDS",
    "GRANULARITIES",
    "LEVEL",
    "LEVELS",
    "PRICE_COLUMNS",
    "Granularity",
    "Level",
    "TariffBook",
    "book_fingerprint",
    "compute_buckets",
    "context_bounds",
    "coverage",
    "covering_periods",
    "first_changed_date",
    "format_local_iso",
    "late_data_window",
    "load_tariff_book",
    "period_bounds",
    "period_starts",
    "price_buckets",
    "rollup",
    "tariff_periods",
]
