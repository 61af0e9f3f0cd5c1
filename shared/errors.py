"""The one error hierarchy of the platform; :mod:`shared.http` maps it to HTTP.

Every error a client can cause is a :class:`DarkroomError` subclass with the Progimage code and
status. Anything else that escapes a handler is a bug and answers ``500 internal``.
"""

from __future__ import annotations


class DarkroomError(Exception):
    """Base of every error that is answered to a client in the error shape."""

    status = 500
    code = "internal"
    default_message = "Internal error"

    def __init__(
        self, message: str | None = None, *, retry_after: float | None = None, **details: object
    ) -> None:
        super().__init__(message or self.default_message)
        self.message = message or self.default_message
        self.retry_after = retry_after
        self.details = details

    def body(self) -> dict:
        """The JSON error shape: ``{"error": {"code", "message"}}``."""
        error: dict = {"code": self.code, "message": self.message}
        if self.details:
            error["details"] = self.details
        return {"error": error}


class BadRequest(DarkroomError):
    """The request was malformed (400)."""

    status, code, default_message = 400, "bad_request", "The request was malformed"


class BadCredentials(DarkroomError):
    """Missing or invalid credentials (401)."""

    status, code, default_message = 401, "bad_credentials", "Invalid credentials"


class Forbidden(DarkroomError):
    """Authenticated, but not allowed to do this (403)."""

    status, code, default_message = 403, "forbidden", "Not allowed"


class NotFound(DarkroomError):
    """The resource does not exist or is not the caller's (404)."""

    status, code, default_message = 404, "not_found", "The requested resource does not exist"


class MethodNotAllowed(DarkroomError):
    """The path exists but not with this method (405)."""

    status, code, default_message = 405, "method_not_allowed", "Method not allowed"


class Conflict(DarkroomError):
    """The request conflicts with the current state (409)."""

    status, code, default_message = 409, "conflict", "Conflict"


class PayloadTooLarge(DarkroomError):
    """The body exceeds the configured limit (413)."""

    status, code, default_message = 413, "payload_too_large", "Request body too large"


class HeadersTooLarge(DarkroomError):
    """A request header, or all of them together, exceed the limit (431)."""

    status, code, default_message = 431, "headers_too_large", "Request headers too large"


class UnsupportedMediaType(DarkroomError):
    """The body's type is not accepted here (415)."""

    status, code, default_message = 415, "unsupported_media_type", "Unsupported media type"


class InvalidRequest(DarkroomError):
    """Well-formed but missing or invalid parameters (422)."""

    status, code, default_message = 422, "invalid_request", "The request has invalid parameters"


class RateLimitExceeded(DarkroomError):
    """Too many requests for this principal (429); carries ``retry_after`` seconds."""

    status, code, default_message = 429, "rate_limit_exceeded", "API request rate limit exceeded"


class ClientGone(DarkroomError):
    """The client closed the connection before its answer was ready (499, as nginx logs it):
    nobody reads this answer, but the metrics and logs should say why the work stopped."""

    status, code, default_message = 499, "client_closed_request", "The client went away"


class Unavailable(DarkroomError):
    """A dependency is down; the client should retry after ``retry_after`` seconds (503)."""

    status, code, default_message = 503, "unavailable", "Service temporarily unavailable"


_BY_STATUS = {
    cls.status: cls
    for cls in (
        BadRequest,
        BadCredentials,
        Forbidden,
        NotFound,
        MethodNotAllowed,
        Conflict,
        PayloadTooLarge,
        UnsupportedMediaType,
        HeadersTooLarge,
        InvalidRequest,
        RateLimitExceeded,
        Unavailable,
    )
}


def for_status(status: int, message: str | None = None) -> DarkroomError:
    """The error of the hierarchy that stands for an HTTP ``status`` (4xx default: bad_request)."""
    cls = _BY_STATUS.get(status)
    if cls is None:
        cls = BadRequest if 400 <= status < 500 else DarkroomError
    return cls(message)
