"""RFC 9457 problem documents: the one shape of every error this API answers."""

from __future__ import annotations

import re
from collections.abc import Callable, Coroutine
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from pydantic import BaseModel, ConfigDict
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response
from starlette.routing import Match

from promptstack.core.errors import AppError, readable, where

PROBLEM_MEDIA_TYPE = "application/problem+json"


class Problem(BaseModel):
    """An error answer; `code` is stable and meant for programs, `detail` for people."""

    model_config = ConfigDict(extra="allow")

    type: str
    title: str
    status: int
    detail: str
    code: str
    request_id: str | None = None


class FieldError(BaseModel):
    loc: list[str | int]
    msg: str
    type: str | None = None


class ValidationProblem(Problem):
    """A 422: every field that failed, each with where it is and why."""

    errors: list[FieldError]


def problem_type(code: str) -> str:
    return f"/problems/{code.replace('_', '-')}"


def problem_body(
    request_id: str | None,
    *,
    status: int,
    code: str,
    title: str,
    detail: str,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    return {
        "type": problem_type(code),
        "title": title,
        "status": status,
        "detail": detail,
        "code": code,
        "request_id": request_id,
        **(extra or {}),
    }


def problem_of(request_id: str | None, error: AppError) -> dict[str, Any]:
    """The document an `AppError` answers with, for where it cannot be the response
    itself (an event in a stream that has begun)."""
    return problem_body(
        request_id,
        status=error.status,
        code=error.code,
        title=error.title,
        detail=error.detail,
        extra=error.extra,
    )


def problem_response(
    request_id: str | None,
    *,
    status: int,
    code: str,
    title: str,
    detail: str,
    headers: dict[str, str] | None = None,
    extra: dict[str, Any] | None = None,
) -> JSONResponse:
    body = problem_body(
        request_id, status=status, code=code, title=title, detail=detail, extra=extra
    )
    return JSONResponse(body, status_code=status, headers=headers, media_type=PROBLEM_MEDIA_TYPE)


def request_id_of(request: Request) -> str | None:
    value = getattr(request.state, "request_id", None)
    return value if isinstance(value, str) else None


async def _app_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, AppError)
    return problem_response(
        request_id_of(request),
        status=exc.status,
        code=exc.code,
        title=exc.title,
        detail=exc.detail,
        headers=exc.headers,
        extra=exc.extra,
    )


def _summary(errors: list[dict[str, Any]]) -> str:
    """The first error as `field: message`, and how many more there are."""
    more = len(errors) - 1
    return f"{where(errors[0]['loc'])}: {errors[0]['msg']}" + (
        f" (and {more} more)" if more else ""
    )


class _UnreadableTokenRequest(RequestValidationError):
    def __init__(self, error: RequestValidationError) -> None:
        super().__init__(error.errors(), body=error.body)


class OAuth2TokenRoute(APIRoute):
    """The route class of an OAuth2 token endpoint: a request it cannot read is also
    OAuth2's `invalid_request`, with the problem's detail as `error_description` (RFC
    6749, 5.2), which OAuth2 clients read where they ignore the rest."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handle = super().get_route_handler()

        async def token_endpoint(request: Request) -> Response:
            try:
                return await handle(request)
            except RequestValidationError as exc:
                raise _UnreadableTokenRequest(exc) from None

        return token_endpoint


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    # Only location, message and kind: echoing the input could leak a password or be huge.
    errors = [
        {
            "loc": list(error.get("loc", ())),
            "msg": readable(error),
            "type": error.get("type"),
        }
        for error in exc.errors()
    ]
    detail = _summary(errors) if errors else "The request is not valid."
    oauth2 = isinstance(exc, _UnreadableTokenRequest)
    members = {"error": "invalid_request", "error_description": detail} if oauth2 else {}
    return problem_response(
        request_id_of(request),
        status=422,
        code="validation_error",
        title="The request is not valid",
        detail=detail,
        extra={"errors": errors, **members},
    )


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    phrase = HTTPStatus(exc.status_code).phrase
    code = re.sub(r"[^a-z]+", "_", phrase.lower()).strip("_")
    detail = exc.detail if isinstance(exc.detail, str) and exc.detail != phrase else phrase
    if exc.status_code == 404:
        detail = f"There is nothing at {request.url.path}."
    headers = dict(exc.headers or {})
    if exc.status_code == 405:
        detail = f"{request.method} is not allowed on {request.url.path}."
        headers["Allow"] = _allowed_methods(request)
    return problem_response(
        request_id_of(request),
        status=exc.status_code,
        code=code,
        title=phrase,
        detail=detail,
        headers=headers,
    )


def _allowed_methods(request: Request) -> str:
    """Every method some route serves at this path.

    Starlette's 405 names only the methods of the first route whose path matched, and
    one path is often served by several routes (GET, PATCH and DELETE of /users/me).
    """
    routes = request.app.router.routes
    allowed = [
        method
        for method in _METHODS
        if any(
            route.matches({**request.scope, "method": method})[0] is Match.FULL for route in routes
        )
    ]
    return ", ".join(allowed)


# Asked one by one: routes answer "does this request match", not "which methods are here".
_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")


def install_problem_handlers(app: FastAPI) -> None:
    app.add_exception_handler(AppError, _app_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
