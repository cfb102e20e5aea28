"""Guessing passwords gets slow: failed logins lock an account or an address for a while."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import httpx
import pytest

from promptstack.bootstrap import Container
from promptstack.core.clock import FrozenClock
from promptstack.main import create_app
from tests.support import Api, assert_problem

LOGIN = "/api/v1/auth/login"


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    return {
        "login_max_failures_per_account": 3,
        "login_max_failures_per_address": 5,
        "login_lockout_minutes": 10,
        "trusted_proxies": ["203.0.113.0/24"],
    }


async def _fail(api: Api, username: str, client_ip: str = "198.51.100.1") -> int:
    response = await api.client.post(
        LOGIN,
        data={"username": username, "password": "wrong password!"},
        headers={"X-Forwarded-For": client_ip},
    )
    return response.status_code


async def test_account_locks_after_its_failure_limit(api: Api) -> None:
    account = await api.register()
    assert [await _fail(api, account.username) for _ in range(3)] == [401, 401, 401]

    # Even the right password is refused while the lock holds, from any address.
    locked = await api.client.post(
        LOGIN,
        data={"username": account.email, "password": account.password},
        headers={"X-Forwarded-For": "198.51.100.99"},
    )
    body = assert_problem(locked, 429, "login_locked")
    assert int(locked.headers["retry-after"]) == 600
    assert body["detail"]


async def test_lock_lifts_when_the_window_passes(api: Api, clock: FrozenClock) -> None:
    account = await api.register()
    for _ in range(3):
        await _fail(api, account.username)
    clock.advance(timedelta(minutes=10, seconds=1))
    await api.login(account)


async def test_retry_after_counts_down(api: Api, clock: FrozenClock) -> None:
    account = await api.register()
    for _ in range(3):
        await _fail(api, account.username)
    clock.advance(timedelta(minutes=4))
    locked = await api.client.post(
        LOGIN, data={"username": account.username, "password": account.password}
    )
    assert_problem(locked, 429)
    assert int(locked.headers["retry-after"]) == 360


async def test_success_resets_the_account_count(api: Api) -> None:
    account = await api.register()
    for _ in range(2):
        await _fail(api, account.username)
    await api.login(account)
    assert [await _fail(api, account.username) for _ in range(2)] == [401, 401]
    await api.login(account)


async def test_address_locks_across_accounts(api: Api) -> None:
    statuses = [await _fail(api, f"ghost{n}", client_ip="198.51.100.7") for n in range(5)]
    assert statuses == [401] * 5
    assert await _fail(api, "someone-else", client_ip="198.51.100.7") == 429
    # Another address is not affected.
    assert await _fail(api, "someone-else", client_ip="198.51.100.8") == 401


async def test_forwarded_for_from_an_untrusted_peer_is_ignored(container: Container) -> None:
    """A client cannot dodge the address lock by inventing X-Forwarded-For values."""
    transport = httpx.ASGITransport(app=create_app(container=container), client=("192.0.2.50", 1))
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as direct:
        statuses = [
            (
                await direct.post(
                    LOGIN,
                    data={"username": f"ghost{n}", "password": "wrong password!"},
                    headers={"X-Forwarded-For": f"10.0.0.{n}"},
                )
            ).status_code
            for n in range(6)
        ]
    assert statuses == [401] * 5 + [429]


async def test_unknown_names_lock_like_real_ones(api: Api) -> None:
    """Locking only real accounts would reveal which names exist."""
    assert [await _fail(api, "no-such-user") for _ in range(3)] == [401] * 3
    assert await _fail(api, "no-such-user", client_ip="198.51.100.200") == 429


async def test_failed_logins_are_audited(api: Api) -> None:
    account = await api.register()
    await _fail(api, account.username, client_ip="198.51.100.33")
    admin = await api.admin()
    response = await api.client.get(
        "/api/v1/admin/audit-log",
        params={"action": "auth.login_failed", "subject_id": account.id},
        headers=admin.headers,
    )
    entries = response.json()["items"]
    assert len(entries) == 1
    assert entries[0]["address"] == "198.51.100.33"
    assert entries[0]["actor_id"] is None
