"""Voltage endpoints: mean, min and max per bucket, and the newest reading."""

from __future__ import annotations

from statistics_manager_service.controllers.endpoints import latest_endpoint, series_endpoint

voltage_get = series_endpoint("voltage", "Voltage mean, min and max per bucket.")
voltage_last_get = latest_endpoint("voltage", "The newest voltage reading.")
