"""Guessing passwords gets slow: failed logins lock an account or an address for a while."""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import timedelta
from typing import Any

import httpx
import pytest

from promptstack.bootstrap import Container
from promptstack.core.clock import FrozenClock
from promptstack.main import create_app
from tests.fixtures.support import Api, assert_problem

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
    # OAuth2 clients read these members (RFC 6749, 5.2).
    assert body["error"] == "temporarily_unavailable"
    assert body["error_description"] == body["detail"]


async def test_lock_lifts_when_the_window_passes(api: Api, clock: FrozenClock) -> None:
    account = await api.register()
    for _ in range(3):
        await _fail(api, account.username)
    clock.advance(timedelta(minutes=9, seconds=59))
    assert await _fail(api, account.username) == 429  # still locked just before the end
    clock.advance(timedelta(seconds=2))
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


async def test_success_does_not_reset_the_account_count(api: Api) -> None:
    """Logging in releases only its own guess: a guesser gets no fresh allowance from it."""
    account = await api.register()
    for _ in range(2):
        await _fail(api, account.username)
    await api.login(account)
    assert [await _fail(api, account.username) for _ in range(2)] == [401, 429]


class CountingVerifications:
    """Records the passwords the service actually verified (real and decoy checks)."""

    def __init__(self, container: Container, monkeypatch: pytest.MonkeyPatch) -> None:
        self.passwords: list[str] = []
        hasher = container.accounts.auth.hasher
        verify, decoy = hasher.verify, hasher.verify_decoy

        async def counted_verify(password: str, hashed: str) -> tuple[bool, str | None]:
            self.passwords.append(password)
            return await verify(password, hashed)

        async def counted_decoy(password: str) -> None:
            self.passwords.append(password)
            await decoy(password)

        monkeypatch.setattr(hasher, "verify", counted_verify)
        monkeypatch.setattr(hasher, "verify_decoy", counted_decoy)

    @property
    def count(self) -> int:
        return len(self.passwords)

    def of(self, password: str) -> int:
        return self.passwords.count(password)


async def _login_at_once(api: Api, attempts: list[tuple[str, str, str]]) -> Counter[int]:
    """Send every (username, password, address) login concurrently; count the statuses."""

    async def one(username: str, password: str, address: str) -> int:
        response = await api.client.post(
            LOGIN,
            data={"username": username, "password": password},
            headers={"X-Forwarded-For": address},
        )
        return response.status_code

    return Counter(await asyncio.gather(*(one(*attempt) for attempt in attempts)))


async def test_concurrent_guesses_verify_at_most_the_account_limit(
    api: Api, container: Container, monkeypatch: pytest.MonkeyPatch
) -> None:
    account = await api.register()
    verified = CountingVerifications(container, monkeypatch)
    attempts = [(account.username, "wrong password!", f"198.51.100.{n}") for n in range(19)]
    attempts.insert(10, (account.username, account.password, "198.51.100.200"))

    statuses = await _login_at_once(api, attempts)

    # A right password gives its place back, so it may let one more guess through; the
    # wrong ones verified never exceed the limit.
    assert verified.of("wrong password!") <= 3
    assert statuses[401] == verified.of("wrong password!")
    assert statuses[200] == verified.of(account.password) <= 1
    assert statuses[429] == 20 - verified.count


async def test_concurrent_guesses_after_earlier_failures_get_only_what_is_left(
    api: Api, container: Container, monkeypatch: pytest.MonkeyPatch
) -> None:
    account = await api.register()
    assert [await _fail(api, account.username) for _ in range(2)] == [401, 401]
    verified = CountingVerifications(container, monkeypatch)

    statuses = await _login_at_once(
        api, [(account.email, "wrong password!", f"198.51.100.{n}") for n in range(20)]
    )

    assert verified.count == 1
    assert statuses == Counter({429: 19, 401: 1})


async def test_concurrent_guesses_verify_at_most_the_address_limit(
    api: Api, container: Container, monkeypatch: pytest.MonkeyPatch
) -> None:
    verified = CountingVerifications(container, monkeypatch)

    statuses = await _login_at_once(
        api, [(f"ghost{n}", "wrong password!", "198.51.100.9") for n in range(20)]
    )

    assert verified.count == 5
    assert statuses == Counter({401: 5, 429: 15})


async def test_a_guess_left_pending_by_a_crash_still_counts(
    api: Api, container: Container, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A process that dies while verifying leaves its reservation: it counts as a failure."""
    account = await api.register()

    async def crash(password: str, hashed: str) -> tuple[bool, str | None]:
        raise RuntimeError("the process died here")

    monkeypatch.setattr(container.accounts.auth.hasher, "verify", crash)
    for _ in range(3):
        with pytest.raises(RuntimeError):
            await container.accounts.auth.login(account.username, "wrong password!", "198.51.100.1")
    monkeypatch.undo()

    locked = await api.client.post(
        LOGIN, data={"username": account.username, "password": account.password}
    )
    assert_problem(locked, 429, "login_locked")


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
