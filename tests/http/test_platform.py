"""Metrics, readiness with a cache, security headers, hosts, CORS and body limits."""

from __future__ import annotations

import re
from typing import Any

import pytest

from tests.fixtures.support import Api, assert_problem


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    return {
        "allowed_hosts": ["testserver", "*.example.com"],
        "cors_origins": ["https://app.example.com"],
        "max_request_body_bytes": 4096,
    }


async def test_metrics_label_routes_by_template(api: Api) -> None:
    account = await api.user()
    await api.client.get(f"/api/v1/users/{account.id}", headers=account.headers)
    await api.client.get("/api/v1/no-such-thing")
    text = (await api.client.get("/metrics")).text
    assert re.search(
        r'promptstack_http_requests_total\{method="GET",route="/api/v1/users/\{user_id\}",'
        r'status_class="2xx"\} [1-9]',
        text,
    )
    assert account.id not in text
    assert 'route="unmatched",status_class="4xx"' in text
    assert "promptstack_http_request_duration_seconds_bucket" in text
    assert "promptstack_http_requests_in_flight" in text
    assert 'promptstack_db_pool_connections_in_use{pool="primary"}' in text


async def test_readiness_reports_the_local_cache(api: Api) -> None:
    body = (await api.client.get("/health/ready")).json()
    assert body["status"] == "healthy"
    assert body["checks"]["cache"] == {"status": "local", "required": False, "error": None}


async def test_api_answers_carry_security_headers(api: Api) -> None:
    response = await api.client.get("/health")
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["x-frame-options"] == "DENY"
    assert response.headers["referrer-policy"] == "no-referrer"
    assert "default-src 'none'" in response.headers["content-security-policy"]
    assert "strict-transport-security" not in response.headers  # only in production


@pytest.mark.parametrize("host", ["evil.example.org", "example.com.evil.org", "localhost"])
async def test_an_unknown_host_is_refused(api: Api, host: str) -> None:
    response = await api.client.get("/health", headers={"Host": host})
    assert_problem(response, 400, "invalid_host")


@pytest.mark.parametrize("host", ["testserver", "api.example.com", "API.Example.com:8443"])
async def test_known_hosts_are_served(api: Api, host: str) -> None:
    assert (await api.client.get("/health", headers={"Host": host})).status_code == 200


async def test_cors_allows_only_configured_origins(api: Api) -> None:
    preflight = {"Access-Control-Request-Method": "POST"}
    allowed = await api.client.options(
        "/api/v1/auth/login", headers={"Origin": "https://app.example.com", **preflight}
    )
    assert allowed.headers["access-control-allow-origin"] == "https://app.example.com"
    refused = await api.client.options(
        "/api/v1/auth/login", headers={"Origin": "https://evil.example.org", **preflight}
    )
    assert "access-control-allow-origin" not in refused.headers


async def test_an_oversized_body_is_a_413_problem(api: Api) -> None:
    body = {"email": "a@example.com", "username": "abc", "password": "x" * 10_000}
    response = await api.client.post("/api/v1/auth/register", json=body)
    assert_problem(response, 413)


async def test_an_oversized_streamed_body_is_a_413_problem(api: Api) -> None:
    async def chunks():  # type: ignore[no-untyped-def]
        for _ in range(10):
            yield b"x" * 1024

    response = await api.client.post(
        "/api/v1/auth/register", content=chunks(), headers={"Content-Type": "application/json"}
    )
    assert_problem(response, 413)
