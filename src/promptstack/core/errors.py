"""The one error hierarchy of the application.

Services raise these; the API layer renders every one as an RFC 9457 problem document.
Each class carries its HTTP status, a stable machine-readable `code` and a title, so the
same class both answers the request and describes itself in the OpenAPI schema.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar


class AppError(Exception):
    status: ClassVar[int] = 400
    code: ClassVar[str] = "bad_request"
    title: ClassVar[str] = "Bad request"

    def __init__(
        self,
        detail: str | None = None,
        *,
        headers: dict[str, str] | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        self.detail = detail or self.title
        self.headers = headers or {}
        self.extra = extra or {}
        super().__init__(self.detail)


class InvalidToken(AppError):
    code = "invalid_token"
    title = "The token is invalid or has expired"


class Unauthorized(AppError):
    status = 401
    code = "not_authenticated"
    title = "Authentication required"

    def __init__(self, detail: str | None = None, **kwargs: Any) -> None:
        super().__init__(detail, **kwargs)
        self.headers.setdefault("WWW-Authenticate", "Bearer")


class InvalidCredentials(Unauthorized):
    code = "invalid_credentials"
    title = "Incorrect username or password"


class Forbidden(AppError):
    status = 403
    code = "forbidden"
    title = "You are not allowed to do this"


class NotFound(AppError):
    status = 404
    code = "not_found"
    title = "Not found"


class Conflict(AppError):
    status = 409
    code = "conflict"
    title = "Conflict with the current state"


def readable(error: Mapping[str, Any]) -> str:
    """A pydantic error's message, without the "Value error, " it puts before the words
    of a validator of ours."""
    message = str(error.get("msg", ""))
    if error.get("type") == "value_error":
        return message.removeprefix("Value error, ")
    return message


def where(loc: Sequence[str | int]) -> str:
    """A place in a request as people write it: a body field by its name alone, a query
    or path parameter as `query.limit`."""
    parts = [str(part) for part in loc]
    return ".".join(parts[1:] if parts[:1] == ["body"] and len(parts) > 1 else parts)


class ValidationFailed(AppError):
    """A rule a schema cannot check (one that needs stored state, or a cursor's inside),
    reported like a schema's error: `errors` names where in the request it is, as
    `("body", "new_password")`, `("query", "cursor")` or, in a list, by its index as a
    number (`("body", "items", 1, "product_id")`), as pydantic writes it."""

    status = 422
    code = "validation_error"
    title = "The request is not valid"

    def __init__(self, detail: str, *, loc: tuple[str | int, ...], **kwargs: Any) -> None:
        self.loc = loc
        self.rule = detail  # the message without the field's name
        error = {"loc": list(loc), "msg": detail, "type": "value_error"}
        super().__init__(f"{where(loc)}: {detail}", extra={"errors": [error]}, **kwargs)


class TooManyRequests(AppError):
    status = 429
    code = "too_many_requests"
    title = "Too many requests"

    def __init__(self, detail: str | None = None, *, retry_after: int, **kwargs: Any) -> None:
        super().__init__(detail, **kwargs)
        self.retry_after = max(1, retry_after)
        self.headers["Retry-After"] = str(self.retry_after)


class ServiceUnavailable(AppError):
    status = 503
    code = "service_unavailable"
    title = "Service unavailable"
