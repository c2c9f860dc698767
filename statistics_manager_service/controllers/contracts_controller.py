"""A household's contract history."""

from __future__ import annotations

import flask

from statistics_manager_service.app import service_context
from statistics_manager_service.controllers.common import authorized_session_call
from statistics_manager_service.controllers.responses import json_response
from statistics_manager_service.query.contracts import load_contract_history
from statistics_manager_service.tariff_loading import updater_for


def contract_history_get(user_id: str) -> flask.Response:
    """The household's contract versions, oldest first, each with the date it took effect."""
    context = service_context()
    book = updater_for(context).book
    tz = context.settings.default_timezone
    return json_response(authorized_session_call([user_id], load_contract_history, user_id, book, tz))
