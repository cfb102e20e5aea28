"""The published OpenAPI document: what the handlers and middleware really answer.

FastAPI documents every 422 as its own `application/json` shape and knows nothing of
what middleware answers. Here every error is `application/problem+json` (a
`ValidationProblem` for 422), each operation lists only the statuses it can return, and
the ones middleware adds are stated where they apply: 400 and 413 for a body that does
not decode or is too large, 429 where the rate limiter counts the path.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from fastapi import FastAPI
from fastapi.routing import APIRoute

from promptstack.core.errors import AppError
from promptstack.http.problems import PROBLEM_MEDIA_TYPE, Problem, ValidationProblem


def operation_id(route: APIRoute) -> str:
    """`auth-register`: the route's tag and its function's name, so that a generated
    client reads `auth.register` and the id changes only when the function is renamed."""
    tag = route.tags[0] if route.tags else "api"
    return f"{tag}-{route.name}".replace("_", "-")


def publish_problems(
    app: FastAPI,
    *,
    max_body_bytes: int,
    rate_limited: Callable[[str], bool],
    body_limits: Mapping[str, int] | None = None,
) -> None:
    """Make `app.openapi()` state every problem an operation can answer, and only those;
    `body_limits` names the paths whose bodies may exceed `max_body_bytes`."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        schema = build()
        schemas = schema.setdefault("components", {}).setdefault("schemas", {})
        for model in (Problem, ValidationProblem):
            found = model.model_json_schema(ref_template="#/components/schemas/{model}")
            schemas.update(found.pop("$defs", {}))
            schemas[model.__name__] = found
        for path, operations in schema.get("paths", {}).items():
            for operation in operations.values():
                limit = (body_limits or {}).get(path, max_body_bytes)
                _complete(operation, path, limit, rate_limited)
        for unused in ("HTTPValidationError", "ValidationError"):
            schemas.pop(unused, None)
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]


def _complete(
    operation: dict[str, Any],
    path: str,
    max_body_bytes: int,
    rate_limited: Callable[[str], bool],
) -> None:
    responses: dict[str, Any] = operation.setdefault("responses", {})
    validation = responses.get("422")
    if validation is not None and PROBLEM_MEDIA_TYPE not in validation.get("content", {}):
        responses["422"] = problem_response(
            "The request is not valid: each failing field is listed", ValidationProblem
        )
    if "requestBody" in operation:
        _add(responses, "400", "The body could not be decoded (not UTF-8, or a malformed form)")
        _add(responses, "413", f"The body is larger than {max_body_bytes} bytes")
    if rate_limited(path):
        _add(responses, "429", "Too many requests from this client: wait `Retry-After` seconds")
        responses["429"]["headers"] = {
            "Retry-After": {
                "description": "Seconds until a request will be admitted",
                "schema": {"type": "integer", "minimum": 0},
            }
        }
    operation["responses"] = dict(sorted(responses.items()))


def _add(responses: dict[str, Any], status: str, description: str) -> None:
    """Document a problem; beside one the route declares itself, both descriptions."""
    if status in responses:
        responses[status]["description"] += f"; or {description[0].lower()}{description[1:]}"
    else:
        responses[status] = problem_response(description)


def problem_response(description: str, model: type[Problem] = Problem) -> dict[str, Any]:
    """One documented error answer: a problem document of `model`'s shape."""
    return {
        "description": description,
        "content": {
            PROBLEM_MEDIA_TYPE: {"schema": {"$ref": f"#/components/schemas/{model.__name__}"}}
        },
    }


def problem_responses(*errors: type[AppError]) -> dict[int | str, dict[str, Any]]:
    """A route's `responses` for the errors its service raises; those every route of its
    kind can answer (422 for its parameters, 400, 413, 429) are added for it."""
    responses: dict[int | str, dict[str, Any]] = {}
    for error in errors:
        titles = responses.get(error.status, {}).get("description", "")
        model = ValidationProblem if error.status == 422 else Problem
        responses[error.status] = problem_response(
            "; ".join(filter(None, [titles, error.title])), model
        )
    return responses
