"""Power endpoints: mean and peak per bucket, and the newest reading."""

from __future__ import annotations

from statistics_manager_service.controllers.endpoints import latest_endpoint, series_endpoint

power_consumption_get = series_endpoint("power_consumption", "Mean (and peak) import power per bucket.")
power_injection_get = series_endpoint("power_injection", "Mean (and peak) export power per bucket.")
power_consumption_last_get = latest_endpoint("power_consumption", "The newest import power reading.")
power_injection_last_get = latest_endpoint("power_injection", "The newest export power reading.")
