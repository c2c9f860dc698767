"""Domain exceptions: each knows the HTTP status and the message a client may see."""

from __future__ import annotations


class ServiceError(Exception):
    """An error whose message is safe to show to a client."""

    status = 500

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class BadRequest(ServiceError):
    """The request is malformed; the message names the parameter."""

    status = 400


class Unauthorized(ServiceError):
    """No valid credentials were presented."""

    status = 401


class Forbidden(ServiceError):
    """The credentials are valid but do not grant access to what was asked."""

    status = 403


class NotFound(ServiceError):
    """The thing asked for does not exist."""

    status = 404


class UserNotFound(NotFound):
    """A user the service has never seen, or has erased."""

    def __init__(self, user_id: str) -> None:
        super().__init__(f'user with id "{user_id}" not found')
        self.user_id = user_id


class NotAcceptable(ServiceError):
    """The client accepts no media type the endpoint answers with."""

    status = 406


class Conflict(ServiceError):
    """The request is well formed but a rule of the service refuses it now; the message says which."""

    status = 409


class Unprocessable(ServiceError):
    """The request is well formed but the data it needs does not exist; the message says what to do."""

    status = 422


class NoForecastHistory(Unprocessable):
    """A household has no consumption on the days the built-in baseline forecast averages."""

    def __init__(self, user_id: str, day: str, weekday: str, weeks: int) -> None:
        super().__init__(
            f'user "{user_id}" has no consumption on the {weeks} {weekday}s before {day}, which the '
            "built-in baseline forecast averages: choose a forecast_day one to four weeks after a day "
            "with readings, or set FORECAST_API_URL to ask a forecast service"
        )


class TooManyRequests(ServiceError):
    """The caller has used up its share for now; `retry_after_s` says when to come back."""

    status = 429

    def __init__(self, message: str, retry_after_s: int) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class Unavailable(ServiceError):
    """A dependency (database, broker) is unavailable; try again later."""

    status = 503


MISSING_CORRELATION_ID = "missing X-Correlation-ID header"
INVALID_TOKEN = "error in authorization token"
FORBIDDEN = "you are not authorized to access this information"
INTERNAL_ERROR = "internal server error"
MAX_AUTHORIZATION_BYTES = 8 * 1024
MAX_REQUEST_HEADER_BYTES = 32 * 1024
AUTHORIZATION_TOO_LONG = (
    f"Authorization header is longer than {MAX_AUTHORIZATION_BYTES} bytes; "
    "send 'Bearer <token>' with the token only"
)
HEADERS_TOO_LARGE = (
    f"request headers are larger than {MAX_REQUEST_HEADER_BYTES} bytes in total; "
    "send fewer or shorter headers"
)
