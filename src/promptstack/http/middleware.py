"""Request context as plain ASGI: id, timing, one log line, and the last-resort 500.

Plain ASGI rather than `BaseHTTPMiddleware`, which buffers streaming bodies and breaks
context variables across the call.
"""

from __future__ import annotations

import ipaddress
import json
import re
import time
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

import structlog
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from promptstack.core.errors import AppError
from promptstack.core.logging import get_logger
from promptstack.core.metrics import IN_FLIGHT, RATE_LIMITED, REQUEST_DURATION, REQUESTS
from promptstack.core.net import Network, client_address
from promptstack.core.rate_limit import FailOpenLimiter, Quota
from promptstack.core.security import TokenCodec
from promptstack.http.problems import PROBLEM_MEDIA_TYPE, problem_response, problem_type
from promptstack.http.schemas import TOKEN_MAX_LENGTH

_SANE_REQUEST_ID = re.compile(r"[A-Za-z0-9._:+=/-]{1,128}")

log = get_logger("promptstack.request")


_ADDED_HEADERS = "response_headers"


def add_response_headers(scope: Scope, headers: Sequence[tuple[bytes, bytes]]) -> None:
    """Have `headers` sent with this request's response, whoever answers it.

    `RequestContextMiddleware`, the outermost layer, adds them as the response starts:
    one wrapper of `send` for every layer that adds headers, where one each cost a tenth
    of a cheap request's time.
    """
    scope["state"][_ADDED_HEADERS].extend(headers)


class RequestContextMiddleware:
    """The request's id, its timing, its log line and metrics, and the last-resort 500;
    and the headers inner layers ask to add (`add_response_headers`)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        offered = header(scope, b"x-request-id") or ""
        request_id = offered if _SANE_REQUEST_ID.fullmatch(offered) else uuid.uuid4().hex
        added: list[tuple[bytes, bytes]] = []
        state = scope.setdefault("state", {})
        state["request_id"] = request_id
        state[_ADDED_HEADERS] = added
        started = time.perf_counter()
        status = 500
        response_started = False

        async def send_with_context(message: Message) -> None:
            nonlocal status, response_started
            if message["type"] == "http.response.start":
                response_started = True
                status = message["status"]
                elapsed = f"{(time.perf_counter() - started) * 1000:.2f}ms"
                message["headers"] = [
                    *message.get("headers", ()),
                    *added,
                    (b"x-request-id", request_id.encode()),
                    (b"x-response-time", elapsed.encode()),
                ]
            await send(message)

        structlog.contextvars.clear_contextvars()
        structlog.contextvars.bind_contextvars(request_id=request_id)
        IN_FLIGHT.inc()
        try:
            await self.app(scope, receive, send_with_context)
        except Exception:
            log.exception("unhandled_error", method=scope["method"], path=scope["path"])
            if response_started:
                raise
            await self._internal_error(send_with_context, request_id)
        finally:
            elapsed = time.perf_counter() - started
            IN_FLIGHT.dec()
            route = _route_template(scope)
            _observe(scope["method"], route, status, elapsed)
            log.info(
                "request",
                method=scope["method"],
                path=scope["path"],
                status=status,
                duration_ms=round(elapsed * 1000, 2),
            )
            structlog.contextvars.clear_contextvars()

    @staticmethod
    async def _internal_error(send: Send, request_id: str) -> None:
        body = json.dumps(
            {
                "type": problem_type("internal_error"),
                "title": "Internal server error",
                "status": 500,
                "detail": "Something went wrong on our side; quote the request id to report it.",
                "code": "internal_error",
                "request_id": request_id,
            }
        ).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 500,
                "headers": [
                    (b"content-type", PROBLEM_MEDIA_TYPE.encode()),
                    (b"content-length", str(len(body)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})


_SERIES: dict[tuple[str, str, int], tuple[Any, Any]] = {}
# Any other method string is counted as "other": a label value per invented method
# would let a client create time series without bound.
_KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


def _observe(method: str, route: str, status: int, elapsed: float) -> None:
    """Count and time a request; the labelled series are looked up once, then kept."""
    if method not in _KNOWN_METHODS:
        method = "other"
    series = _SERIES.get((method, route, status))
    if series is None:
        series = _SERIES[(method, route, status)] = (
            REQUESTS.labels(method, route, f"{status // 100}xx"),
            REQUEST_DURATION.labels(method, route),
        )
    series[0].inc()
    series[1].observe(elapsed)


def header(scope: Scope, name: bytes) -> str | None:
    """One request header (`name` in lower case), read from the raw pairs.

    The middlewares each need one or two headers on every request; building a parsed
    `Headers` for each would decode every header several times over.
    """
    for key, value in scope["headers"]:
        if key == name:
            text: str = value.decode("latin-1")
            return text
    return None


def _route_template(scope: Scope) -> str:
    """The matched route's template (`/users/{user_id}`), never the raw path, whose
    values would make one time series per user."""
    route = scope.get("route")
    path = getattr(route, "path", None)
    return path if isinstance(path, str) else "unmatched"


class RateLimitMiddleware:
    """Token buckets per caller: the authenticated user, else the client address.

    The user is read from the access token's signature alone (no database), so the
    limit applies before any work is done; an invalid token counts against the address.
    The auth endpoints share a stricter bucket per address, since they are where
    credential stuffing and email flooding come from.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        limiter: FailOpenLimiter,
        general: Quota,
        auth: Quota,
        auth_paths: frozenset[str],
        exempt_paths: frozenset[str],
        tokens: TokenCodec,
        trusted_proxies: tuple[Network, ...],
    ) -> None:
        self.app = app
        self.limiter = limiter
        self.general = general
        self.auth = auth
        self.auth_paths = auth_paths
        self.exempt_paths = exempt_paths
        self.tokens = tokens
        self.trusted_proxies = trusted_proxies

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in self.exempt_paths:
            await self.app(scope, receive, send)
            return
        peer = scope["client"][0] if scope.get("client") else None
        forwarded = header(scope, b"x-forwarded-for")
        address = client_address(peer, forwarded, self.trusted_proxies)
        if scope["path"] in self.auth_paths:
            scope_name, key, quota = "auth", f"auth:{address}", self.auth
        else:
            authorization = header(scope, b"authorization") or ""
            scope_name, key, quota = "api", self._caller(authorization, address), self.general
        decision = await self.limiter.hit(key, quota)
        if decision is None:
            await self.app(scope, receive, send)
            return
        limit_headers = {
            "ratelimit-limit": str(decision.limit),
            "ratelimit-remaining": str(decision.remaining),
            "ratelimit-reset": str(decision.reset_after),
        }
        if not decision.allowed:
            RATE_LIMITED.labels(scope=scope_name).inc()
            state = scope.get("state", {})
            response = problem_response(
                state.get("request_id"),
                status=429,
                code="rate_limited",
                title="Too many requests",
                detail=f"Slow down: try again in {decision.retry_after} seconds.",
                headers={**limit_headers, "retry-after": str(decision.retry_after)},
            )
            await response(scope, receive, send)
            return

        add_response_headers(
            scope, [(name.encode(), value.encode()) for name, value in limit_headers.items()]
        )
        await self.app(scope, receive, send)

    def _caller(self, authorization: str, address: str) -> str:
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() == "bearer" and 0 < len(token) <= TOKEN_MAX_LENGTH:
            try:
                return f"user:{self.tokens.read_access(token.strip()).user_id}"
            except AppError:
                pass
        return f"ip:{address}"


class SecurityHeadersMiddleware:
    """Headers that make browsers treat API answers as data, never as pages to render."""

    _API = (
        (b"x-content-type-options", b"nosniff"),
        (b"x-frame-options", b"DENY"),
        (b"referrer-policy", b"no-referrer"),
        (b"cross-origin-opener-policy", b"same-origin"),
        (b"content-security-policy", b"default-src 'none'; frame-ancestors 'none'"),
    )

    def __init__(
        self, app: ASGIApp, *, hsts: bool, page_policies: Sequence[tuple[str, str]] = ()
    ) -> None:
        """`page_policies` pairs a path (or, ending in "/", every path below it) with the
        content security policy of the pages served there, which run in a browser."""
        self.app = app
        transport = ((b"strict-transport-security", b"max-age=31536000"),) if hsts else ()
        self.api_headers = self._API + transport
        # Looked up on every answer: exact paths in a dict, prefixes (few) in a tuple.
        self.exact: dict[str, tuple[tuple[bytes, bytes], ...]] = {}
        self.prefixes: list[tuple[str, tuple[tuple[bytes, bytes], ...]]] = []
        for where, policy in page_policies:
            headers = (*self._API[:-1], (b"content-security-policy", policy.encode()), *transport)
            if where.endswith("/"):
                self.prefixes.append((where, headers))
            else:
                self.exact[where] = headers

    def _headers(self, path: str) -> tuple[tuple[bytes, bytes], ...]:
        found = self.exact.get(path)
        if found is not None:
            return found
        for prefix, headers in self.prefixes:
            if path.startswith(prefix):
                return headers
        return self.api_headers

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        add_response_headers(scope, self._headers(scope["path"]))
        await self.app(scope, receive, send)


class TrustedHostMiddleware:
    """Answer only for the configured host names (`*.example.com` covers subdomains).

    A request naming another host is a 400 problem document: it is either a
    misconfigured proxy or an attempt to poison links built from the Host header.
    """

    def __init__(self, app: ASGIApp, *, allowed_hosts: tuple[str, ...]) -> None:
        self.app = app
        self.exact = frozenset(h.lower() for h in allowed_hosts if not h.startswith("*."))
        self.suffixes = tuple(h[1:].lower() for h in allowed_hosts if h.startswith("*."))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        host = _host_name(header(scope, b"host") or "")
        if host is not None and (
            host in self.exact or (self.suffixes and host.endswith(self.suffixes))
        ):
            await self.app(scope, receive, send)
            return
        response = problem_response(
            scope.get("state", {}).get("request_id"),
            status=400,
            code="invalid_host",
            title="Invalid host",
            detail="This service does not answer for that host name.",
        )
        await response(scope, receive, send)


_HOST = re.compile(
    r"(?P<name>(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)*[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.?"
    r"|\[(?P<ipv6>[0-9a-f:.]+)\])(?::[0-9]{1,5})?"
)


def _host_name(header: str) -> str | None:
    """The name in a Host header, without its port (IPv6 literals without brackets), or
    None when the value is not a host name at all.

    Matching a suffix against anything else would let `evil.com?.example.org` through.
    """
    match = _HOST.fullmatch(header.strip().lower())
    if match is None:
        return None
    ipv6 = match["ipv6"]
    if ipv6 is not None:
        try:
            return str(ipaddress.IPv6Address(ipv6))
        except ValueError:
            return None
    return match["name"].rstrip(".")


class BodyLimitMiddleware:
    """Refuse request bodies over `max_bytes` with a 413 problem document.

    A declared `Content-Length` over the limit is refused before anything is read; a
    body streamed without one is counted as it arrives and cut off at the limit, so no
    client can make the service buffer more than that. The paths in `larger` (an
    upload's, say) have limits of their own.
    """

    def __init__(
        self, app: ASGIApp, *, max_bytes: int, larger: Mapping[str, int] | None = None
    ) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.larger = dict(larger or {})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.larger.get(scope["path"], self.max_bytes)
        declared = header(scope, b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > limit):
            response = problem_response(
                scope.get("state", {}).get("request_id"),
                status=413 if declared.isdigit() else 400,
                code="content_too_large" if declared.isdigit() else "bad_request",
                title="Content too large" if declared.isdigit() else "Bad request",
                detail=f"Request bodies are limited to {limit} bytes."
                if declared.isdigit()
                else "The Content-Length header is not a number.",
            )
            await response(scope, receive, send)
            return
        received = 0

        async def counted_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise HTTPException(413, f"Request bodies are limited to {limit} bytes.")
            return message

        await self.app(scope, counted_receive, send)
