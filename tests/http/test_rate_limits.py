"""Token-bucket limits per caller, answered with RateLimit-* headers and 429 problems."""

from __future__ import annotations

from typing import Any

import pytest

from tests.fixtures.support import Api, assert_problem


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    return {
        "rate_limit_enabled": True,
        "rate_limit_burst": 3,
        "rate_limit_per_minute": 1,
        "auth_rate_limit_per_minute": 2,
        "trusted_proxies": ["203.0.113.0/24"],
    }


def from_address(address: str) -> dict[str, str]:
    return {"X-Forwarded-For": address}


async def test_a_burst_passes_then_429_with_headers(api: Api) -> None:
    answers = [
        await api.client.get("/api/v1/features", headers=from_address("198.51.100.1"))
        for _ in range(4)
    ]
    assert [a.status_code for a in answers] == [200, 200, 200, 429]
    assert [a.headers["ratelimit-remaining"] for a in answers[:3]] == ["2", "1", "0"]
    assert all(a.headers["ratelimit-limit"] == "3" for a in answers)
    refused = answers[3]
    body = assert_problem(refused, 429, "rate_limited")
    assert int(refused.headers["retry-after"]) == 60
    assert int(refused.headers["ratelimit-reset"]) > 0
    assert "60" in body["detail"]


async def test_addresses_have_their_own_buckets(api: Api) -> None:
    for _ in range(3):
        await api.client.get("/api/v1/features", headers=from_address("198.51.100.2"))
    other = await api.client.get("/api/v1/features", headers=from_address("198.51.100.3"))
    assert other.status_code == 200


async def test_an_authenticated_user_is_limited_by_account_not_address(api: Api) -> None:
    account = await api.register()
    await api.login(account)
    for n in range(3):
        response = await api.client.get(
            "/api/v1/users/me", headers={**account.headers, **from_address(f"198.51.100.{10 + n}")}
        )
        assert response.status_code == 200
    moved = await api.client.get(
        "/api/v1/users/me", headers={**account.headers, **from_address("198.51.100.99")}
    )
    assert_problem(moved, 429, "rate_limited")
    # The address itself still has its own, untouched bucket for anonymous calls.
    anonymous = await api.client.get("/api/v1/features", headers=from_address("198.51.100.99"))
    assert anonymous.status_code == 200


async def test_a_forged_token_counts_against_the_address(api: Api) -> None:
    forged = {"Authorization": "Bearer not.a.token", **from_address("198.51.100.20")}
    statuses = [
        (await api.client.get("/api/v1/features", headers=forged)).status_code for _ in range(4)
    ]
    assert statuses[-1] == 429
    plain = await api.client.get("/api/v1/features", headers=from_address("198.51.100.20"))
    assert plain.status_code == 429


async def test_auth_endpoints_share_a_stricter_bucket(api: Api) -> None:
    address = from_address("198.51.100.30")
    first = await api.client.post(
        "/api/v1/auth/login", data={"username": "x", "password": "y"}, headers=address
    )
    second = await api.client.post(
        "/api/v1/auth/password-reset/request", json={"email": "a@example.com"}, headers=address
    )
    third = await api.client.post(
        "/api/v1/auth/register",
        json={"email": "b@example.com", "username": "bbb", "password": "a good long one"},
        headers=address,
    )
    assert (first.status_code, second.status_code) == (401, 202)
    assert_problem(third, 429, "rate_limited")
    assert third.headers["ratelimit-limit"] == "2"


async def test_health_and_metrics_are_never_limited(api: Api) -> None:
    address = from_address("198.51.100.40")
    for path in ("/health", "/health/ready", "/metrics"):
        statuses = {(await api.client.get(path, headers=address)).status_code for _ in range(6)}
        assert statuses == {200}, path
