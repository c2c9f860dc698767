"""The household's consumption against comparable households."""

from __future__ import annotations

import flask

from statistics_manager_service.app import service_context
from statistics_manager_service.controllers.common import authorized_session_call
from statistics_manager_service.controllers.responses import json_response
from statistics_manager_service.query.peers import load_peer_comparison, peer_period
from statistics_manager_service.tariff_loading import updater_for


def peer_comparison_get(user_id: str, period: str | None = None) -> flask.Response:
    """A month's consumption placed among the household's peer group: percentile, median, 20th."""
    statistics = updater_for(service_context())
    return json_response(
        authorized_session_call([user_id], load_peer_comparison, user_id, peer_period(period), statistics)
    )
