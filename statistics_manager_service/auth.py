"""Bearer-token decoding and the rule of who may see which household."""

from __future__ import annotations

import dataclasses
import ipaddress
import logging
from collections.abc import Iterable
from contextvars import ContextVar

import jwt

from statistics_manager_service.exception_handling_utils.errors import (
    FORBIDDEN,
    INVALID_TOKEN,
    Forbidden,
    Unauthorized,
)

logger = logging.getLogger(__name__)

SERVICE_ROLE = "service"
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclasses.dataclass(frozen=True)
class Principal:
    """Who is calling: a household user, another service, or an anonymous internal caller."""

    user_id: str | None
    is_service: bool = False
    is_anonymous: bool = False

    @property
    def reads_everything(self) -> bool:
        """Tell whether this caller may read any household."""
        return self.is_service or self.is_anonymous


ANONYMOUS_INTERNAL = Principal(user_id=None, is_anonymous=True)

_current_principal: ContextVar[Principal | None] = ContextVar("principal", default=None)


def bearer_token(authorization: str) -> str:
    """Return the token of an `Authorization: Bearer <token>` header; raise Unauthorized otherwise."""
    scheme, _, token = authorization.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized(f"{INVALID_TOKEN}: the Authorization header must be `Bearer <token>`")
    return token.strip()


def decode_token(token: str, *, sign_key: str, algorithm: str) -> Principal:
    """Turn a bearer token into a Principal; raise Unauthorized when it is not valid."""
    try:
        # Pinning the one configured algorithm rejects `alg: none` and algorithm swaps.
        claims = jwt.decode(
            token,
            sign_key,
            algorithms=[algorithm],
            options={"require": ["exp"]},
            leeway=30,
        )
    except jwt.ExpiredSignatureError:
        logger.info("rejected bearer token: expired")
        raise Unauthorized(f"{INVALID_TOKEN}: the token has expired; get a new one") from None
    except jwt.PyJWTError as error:
        # The class only: a message may quote parts of the presented token.
        logger.info("rejected bearer token: %s", type(error).__name__)
        raise Unauthorized(
            f"{INVALID_TOKEN}: the token is invalid (malformed, not signed with this service's key and"
            f" {algorithm}, or without an expiry)"
        ) from None
    if claims.get("role") == SERVICE_ROLE:
        return Principal(user_id=None, is_service=True)
    subject = claims.get("sub") or claims.get("user_id")
    if not isinstance(subject, str) or not subject:
        logger.info("rejected bearer token without a subject")
        raise Unauthorized(f"{INVALID_TOKEN}: the token names neither a user (`sub`) nor the service role")
    return Principal(user_id=subject)


def in_networks(client_host: str | None, networks: Iterable[IPNetwork]) -> bool:
    """Tell whether a client address (as the server reports it) lies in one of `networks`."""
    if not client_host:
        return False
    try:
        address = ipaddress.ip_address(client_host.split("%", 1)[0])
    except ValueError:
        return False  # not an address (a Unix socket path, a test client's name)
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return any(address in network for network in networks)


def set_current_principal(principal: Principal | None) -> None:
    """Remember the caller of the request being served."""
    _current_principal.set(principal)


def peek_principal() -> Principal | None:
    """Return the caller of the request being served, None before (or without) authentication."""
    return _current_principal.get()


def caller_name(principal: Principal | None) -> str:
    """Name a caller for logs and traces: the user id, "service" or "anonymous"; never the token."""
    if principal is None or principal.is_anonymous:
        return "anonymous"
    if principal.is_service:
        return SERVICE_ROLE
    return principal.user_id or "anonymous"


def current_principal() -> Principal:
    """Return the caller of the request being served."""
    principal = _current_principal.get()
    if principal is None:
        raise Unauthorized(INVALID_TOKEN)
    return principal


def authorize_users(principal: Principal, user_ids: Iterable[str]) -> None:
    """Raise Forbidden unless the caller may read every one of `user_ids`."""
    if principal.reads_everything:
        return
    if any(user_id != principal.user_id for user_id in user_ids):
        raise Forbidden(FORBIDDEN)


def require_service(principal: Principal) -> None:
    """Raise Forbidden unless the caller is a service (or an allowed anonymous internal call)."""
    if not principal.reads_everything:
        raise Forbidden(FORBIDDEN)


def verified_token_info(token: str) -> dict[str, str]:
    """Tell Connexion the bearer token is valid: the request middleware verified it already.

    Declaring the scheme lets Swagger UI send the token; the check itself stays in one place.
    """
    return {"verified_by": "request middleware"}
