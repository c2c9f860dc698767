"""Energy consumption and injection endpoints."""

from __future__ import annotations

from statistics_manager_service.controllers.endpoints import latest_endpoint, series_endpoint

energy_consumption_get = series_endpoint(
    "consumption", "Consumption (grid import + self-consumed generation) per bucket."
)
energy_injection_get = series_endpoint("injection", "Injection (grid export) per bucket.")
energy_balance_get = series_endpoint(
    "balance",
    "Consumption, grid import and export, generation, self-consumption and their ratios per bucket.",
)
energy_consumption_last_get = latest_endpoint("energy_consumption", "The newest consumption register (kWh).")
energy_injection_last_get = latest_endpoint("energy_injection", "The newest export register (kWh).")
