"""Serialize response bodies once, fast."""

from __future__ import annotations

from typing import Any

import flask
import orjson

_OPTIONS = orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> flask.Response:
    """Return `body` as JSON bytes with `status`."""
    return flask.Response(
        orjson.dumps(body, option=_OPTIONS), status=status, headers=headers, mimetype="application/json"
    )


def json_body_response(body: bytes) -> flask.Response:
    """Return JSON bytes serialized earlier, with status 200."""
    return flask.Response(body, status=200, mimetype="application/json")
