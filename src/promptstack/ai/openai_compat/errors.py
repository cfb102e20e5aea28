"""Errors on the OpenAI-compatible API in OpenAI's shape, made from our problem documents.

Everything under /v1 fails as the rest of this API does, with a problem document, from
whichever layer refused (a route, the body limit, the rate limiter, an unknown path);
this middleware rewrites those documents, and only those, into `{"error": {...}}`, which
OpenAI's client libraries read. The status stays, but a 422 becomes OpenAI's 400.
"""

from __future__ import annotations

import json
from typing import Any

from fastapi import FastAPI
from pydantic import BaseModel
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from promptstack.http.problems import PROBLEM_MEDIA_TYPE

PREFIX = "/v1/"
_TYPES = {
    401: "authentication_error",
    402: "insufficient_quota",
    403: "permission_error",
    404: "not_found_error",
    429: "rate_limit_error",
}


def error_type(status: int, code: str | None) -> str:
    if code == "quota_exceeded":
        return "insufficient_quota"
    if status >= 500:
        return "api_error"
    return _TYPES.get(status, "invalid_request_error")


def openai_error(problem: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    """The status and body OpenAI's API would answer for this problem document."""
    status = int(problem.get("status", 500))
    status = 400 if status == 422 else status
    errors = problem.get("errors") or [{}]
    # The first failing field, as OpenAI names it: without "body", its parts joined by dots.
    loc = [str(part) for part in errors[0].get("loc", ())[1:]]
    code = problem.get("code")
    body = {
        "message": problem.get("detail") or problem.get("title") or "The request failed.",
        "type": error_type(status, code),
        "param": ".".join(loc) or None,
        "code": code,
    }
    return status, {"error": body}


class OpenAIErrors:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith(PREFIX):
            await self.app(scope, receive, send)
            return
        start: Message | None = None
        parts: list[bytes] = []

        async def translate(message: Message) -> None:
            nonlocal start
            if message["type"] == "http.response.start":
                headers = dict(message.get("headers", ()))
                if headers.get(b"content-type", b"").startswith(PROBLEM_MEDIA_TYPE.encode()):
                    start = message
                    return
            elif message["type"] == "http.response.body" and start is not None:
                parts.append(message.get("body", b""))
                if message.get("more_body", False):
                    return
                await _send_translated(send, start, b"".join(parts))
                return
            await send(message)

        await self.app(scope, receive, translate)


async def _send_translated(send: Send, start: Message, body: bytes) -> None:
    status, translated = openai_error(json.loads(body))
    encoded = json.dumps(translated).encode()
    kept = [
        (name, value)
        for name, value in start.get("headers", ())
        if name.lower() not in (b"content-type", b"content-length")
    ]
    headers = [
        *kept,
        (b"content-type", b"application/json"),
        (b"content-length", str(len(encoded)).encode()),
    ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": encoded})


def document_openai_errors(app: FastAPI, error: type[BaseModel]) -> None:
    """Make the published document say so too: under /v1, every error is `error`'s shape
    as `application/json`, and what would be a 422 is a 400."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        schema = build()
        schemas = schema.setdefault("components", {}).setdefault("schemas", {})
        found = error.model_json_schema(ref_template="#/components/schemas/{model}")
        schemas.update(found.pop("$defs", {}))
        schemas[error.__name__] = found
        reference = {"schema": {"$ref": f"#/components/schemas/{error.__name__}"}}
        for path, operations in schema.get("paths", {}).items():
            if path.startswith(PREFIX):
                for operation in operations.values():
                    _rewrite(operation["responses"], reference)
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]


def _rewrite(responses: dict[str, Any], reference: dict[str, Any]) -> None:
    invalid = responses.pop("422", None)
    if invalid is not None:
        described = responses.get("400", {}).get("description")
        merged = "; or ".join(filter(None, [described, invalid["description"]]))
        responses["400"] = {"description": merged}
    for status, response in responses.items():
        if int(status) >= 400:
            response["content"] = {"application/json": reference}
    ordered = dict(sorted(responses.items()))
    responses.clear()
    responses.update(ordered)
