"""Password reset by emailed single-use token, and password change."""

from __future__ import annotations

from datetime import timedelta

from promptstack.core.clock import FrozenClock
from tests.fixtures.support import Api, assert_problem

REQUEST = "/api/v1/auth/password-reset/request"
CONFIRM = "/api/v1/auth/password-reset/confirm"
NEW_PASSWORD = "a brand new passphrase"


async def test_reset_answers_the_same_for_known_and_unknown_addresses(api: Api) -> None:
    account = await api.register()
    known = await api.client.post(REQUEST, json={"email": account.email})
    unknown = await api.client.post(REQUEST, json={"email": "nobody@example.com"})
    assert known.status_code == unknown.status_code == 202
    assert known.json() == unknown.json()
    assert await api.mails_to("nobody@example.com") == []


async def test_reset_flow_changes_the_password_once(api: Api) -> None:
    account = await api.user()
    await api.client.post(REQUEST, json={"email": account.email.upper()})
    token = await api.token_from_mail(account.email, "reset the password")

    response = await api.client.post(CONFIRM, json={"token": token, "new_password": NEW_PASSWORD})
    assert response.status_code == 204

    old = await api.client.post(
        "/api/v1/auth/login", data={"username": account.username, "password": account.password}
    )
    assert_problem(old, 401)
    account.password = NEW_PASSWORD
    await api.login(account)

    again = await api.client.post(
        CONFIRM, json={"token": token, "new_password": "yet another one!"}
    )
    assert_problem(again, 400, "invalid_token")


async def test_reset_ends_existing_sessions(api: Api) -> None:
    account = await api.user()
    await api.client.post(REQUEST, json={"email": account.email})
    token = await api.token_from_mail(account.email, "reset the password")
    await api.client.post(CONFIRM, json={"token": token, "new_password": NEW_PASSWORD})

    assert_problem(await api.client.get("/api/v1/users/me", headers=account.headers), 401)
    refresh = await api.client.post(
        "/api/v1/auth/refresh", json={"refresh_token": account.refresh_token}
    )
    assert_problem(refresh, 401)


async def test_reset_token_expires(api: Api, clock: FrozenClock) -> None:
    account = await api.register()
    await api.client.post(REQUEST, json={"email": account.email})
    token = await api.token_from_mail(account.email, "reset the password")
    clock.advance(timedelta(minutes=31))
    response = await api.client.post(CONFIRM, json={"token": token, "new_password": NEW_PASSWORD})
    assert_problem(response, 400, "invalid_token")


async def test_a_newer_reset_token_replaces_the_older(api: Api) -> None:
    account = await api.register()
    await api.client.post(REQUEST, json={"email": account.email})
    first = await api.token_from_mail(account.email, "reset the password")
    await api.client.post(REQUEST, json={"email": account.email})
    second = await api.token_from_mail(account.email, "reset the password")
    assert first != second
    stale = await api.client.post(CONFIRM, json={"token": first, "new_password": NEW_PASSWORD})
    assert_problem(stale, 400, "invalid_token")
    fresh = await api.client.post(CONFIRM, json={"token": second, "new_password": NEW_PASSWORD})
    assert fresh.status_code == 204


async def test_weak_new_password_keeps_the_token_usable(api: Api) -> None:
    account = await api.register()
    await api.client.post(REQUEST, json={"email": account.email})
    token = await api.token_from_mail(account.email, "reset the password")
    weak = await api.client.post(CONFIRM, json={"token": token, "new_password": "short"})
    assert_problem(weak, 422)
    same_as_name = await api.client.post(
        CONFIRM, json={"token": token, "new_password": account.email}
    )
    assert_problem(same_as_name, 422)
    ok = await api.client.post(CONFIRM, json={"token": token, "new_password": NEW_PASSWORD})
    assert ok.status_code == 204


async def test_forged_reset_token_is_refused(api: Api) -> None:
    response = await api.client.post(
        CONFIRM, json={"token": "not-a-token-we-issued", "new_password": NEW_PASSWORD}
    )
    assert_problem(response, 400, "invalid_token")


async def test_change_password_needs_the_current_one_and_ends_sessions(api: Api) -> None:
    account = await api.user()
    wrong = await api.client.post(
        "/api/v1/users/me/password",
        json={"current_password": "not my password", "new_password": NEW_PASSWORD},
        headers=account.headers,
    )
    assert_problem(wrong, 401, "invalid_credentials")

    changed = await api.client.post(
        "/api/v1/users/me/password",
        json={"current_password": account.password, "new_password": NEW_PASSWORD},
        headers=account.headers,
    )
    assert changed.status_code == 204
    assert_problem(await api.client.get("/api/v1/users/me", headers=account.headers), 401)
    account.password = NEW_PASSWORD
    await api.login(account)


async def test_verification_can_be_requested_again(api: Api) -> None:
    account = await api.register()
    first = await api.token_from_mail(account.email, "Confirm this address")
    response = await api.client.post(
        "/api/v1/auth/verify-email/request", json={"email": account.email}
    )
    assert response.status_code == 202
    verification_mails = [
        body for body in await api.mails_to(account.email) if "Confirm this address" in body
    ]
    assert len(verification_mails) == 2  # registration's, and the one asked for again
    token = await api.token_from_mail(account.email, "Confirm this address")
    assert token != first
    assert (
        await api.client.post("/api/v1/auth/verify-email", json={"token": token})
    ).status_code == 204
