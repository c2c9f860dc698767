"""Issue bearer tokens signed with the service's key (tests, the demo and operators use it)."""

from __future__ import annotations

import time

import jwt

from statistics_manager_service.auth import SERVICE_ROLE
from statistics_manager_service.config import Settings


def issue_token(
    settings: Settings, *, user_id: str | None = None, service: bool = False, valid_for_s: int = 3600
) -> str:
    """Return a JWT for a household user (`sub`) or a service (`role: service`)."""
    now = int(time.time())
    claims: dict[str, object] = {"iat": now, "exp": now + valid_for_s}
    if user_id:
        claims["sub"] = user_id
    if service:
        claims["role"] = SERVICE_ROLE
        claims.setdefault("sub", "statistics-service")
    return jwt.encode(claims, settings.jwt_sign_key, algorithm=settings.jwt_sign_algorithm)
