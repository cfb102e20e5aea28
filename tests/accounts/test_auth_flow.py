"""Registration, login, refresh rotation and logout, end to end."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest

from promptstack.core.clock import FrozenClock
from tests.fixtures.support import PASSWORD, Account, Api, assert_problem


async def test_register_then_read_me(api: Api) -> None:
    account = await api.user(email="New.Person@Example.COM", full_name="Zoë Ünicode")
    response = await api.client.get("/api/v1/users/me", headers=account.headers)
    assert response.status_code == 200
    me = response.json()
    assert me["email"] == "New.Person@example.com"
    assert me["full_name"] == "Zoë Ünicode"
    assert me["role"] == "user"
    assert me["tier"] == "free"
    assert me["is_verified"] is False
    assert me["credits"] == 0
    assert "password_hash" not in me


async def test_registration_sends_welcome_and_verification(api: Api) -> None:
    account = await api.register()
    bodies = await api.mails_to(account.email)
    assert len(bodies) == 2
    token = await api.token_from_mail(account.email, "Confirm this address")
    response = await api.client.post("/api/v1/auth/verify-email", json={"token": token})
    assert response.status_code == 204
    await api.login(account)
    me = (await api.client.get("/api/v1/users/me", headers=account.headers)).json()
    assert me["is_verified"] is True
    again = await api.client.post("/api/v1/auth/verify-email", json={"token": token})
    assert_problem(again, 400, "invalid_token")


async def test_duplicates_are_refused_case_insensitively(api: Api) -> None:
    await api.register(email="dup@example.com", username="Dupe")
    for body in (
        {"email": "DUP@example.com", "username": "other1"},
        {"email": "fresh@example.com", "username": "dUPE"},
    ):
        response = await api.client.post(
            "/api/v1/auth/register", json={**body, "password": PASSWORD}
        )
        assert_problem(response, 409, "conflict")


async def test_concurrent_duplicate_registrations_create_one_account(api: Api) -> None:
    body = {"email": "race@example.com", "username": "racer", "password": PASSWORD}
    responses = await asyncio.gather(
        *(api.client.post("/api/v1/auth/register", json=body) for _ in range(5))
    )
    statuses = sorted(r.status_code for r in responses)
    assert statuses == [201, 409, 409, 409, 409]


async def test_login_with_email_or_username(api: Api) -> None:
    account = await api.register(email="both@example.com", username="bothways")
    for name in ("both@example.com", "BOTHWAYS", "Both@Example.com"):
        response = await api.client.post(
            "/api/v1/auth/login", data={"username": name, "password": PASSWORD}
        )
        assert response.status_code == 200, name
        body = response.json()
        assert body["token_type"] == "bearer"
        assert body["expires_in"] == 15 * 60
        assert response.headers["cache-control"] == "no-store"
        me = await api.client.get(
            "/api/v1/users/me", headers={"Authorization": f"Bearer {body['access_token']}"}
        )
        assert me.json()["id"] == account.id, name


async def test_wrong_password_and_unknown_user_look_the_same(api: Api) -> None:
    account = await api.register()
    wrong = await api.client.post(
        "/api/v1/auth/login", data={"username": account.username, "password": "not it at all"}
    )
    unknown = await api.client.post(
        "/api/v1/auth/login", data={"username": "nobody-here", "password": "not it at all"}
    )
    for response in (wrong, unknown):
        body = assert_problem(response, 401, "invalid_credentials")
        assert response.headers["www-authenticate"] == "Bearer"
        # OAuth2 clients (the docs' Authorize dialog among them) read these (RFC 6749, 5.2).
        assert body["error"] == "invalid_grant"
        assert body["error_description"] == body["detail"]
    assert wrong.json() | {"request_id": None} == unknown.json() | {"request_id": None}


@pytest.mark.parametrize(
    "form", [{"username": "ada"}, {"password": "x"}, {}, {"username": "", "password": "x"}]
)
async def test_a_login_form_it_cannot_read_is_oauth2_s_invalid_request(
    api: Api, form: dict[str, str]
) -> None:
    response = await api.client.post("/api/v1/auth/login", data=form)
    body = assert_problem(response, 422, "validation_error")
    assert body["error"] == "invalid_request"
    assert body["error_description"] == body["detail"]
    assert body["errors"]


async def test_other_routes_answer_a_422_without_oauth2_members(api: Api) -> None:
    body = assert_problem(await api.client.post("/api/v1/auth/refresh", json={}), 422)
    assert "error" not in body


async def test_refresh_rotates_and_reuse_revokes_the_family(api: Api) -> None:
    account = await api.user()
    first = account.refresh_token
    rotated = await api.client.post("/api/v1/auth/refresh", json={"refresh_token": first})
    assert rotated.status_code == 200
    second = rotated.json()["refresh_token"]
    assert second != first

    reuse = await api.client.post("/api/v1/auth/refresh", json={"refresh_token": first})
    assert_problem(reuse, 401)
    # The thief's reuse also ended the legitimate holder's session.
    after = await api.client.post("/api/v1/auth/refresh", json={"refresh_token": second})
    assert_problem(after, 401)


async def test_concurrent_refresh_with_one_token_has_one_winner(api: Api) -> None:
    account = await api.user()
    responses = await asyncio.gather(
        *(
            api.client.post("/api/v1/auth/refresh", json={"refresh_token": account.refresh_token})
            for _ in range(4)
        )
    )
    assert sum(r.status_code == 200 for r in responses) == 1
    assert all(r.status_code in (200, 401) for r in responses)


async def test_refresh_token_expires(api: Api, clock: FrozenClock) -> None:
    account = await api.user()
    clock.advance(timedelta(days=14, seconds=1))
    response = await api.client.post(
        "/api/v1/auth/refresh", json={"refresh_token": account.refresh_token}
    )
    assert_problem(response, 401)


async def test_access_token_expires(api: Api, clock: FrozenClock) -> None:
    account = await api.user()
    clock.advance(timedelta(minutes=15, seconds=1))
    response = await api.client.get("/api/v1/users/me", headers=account.headers)
    assert_problem(response, 401, "not_authenticated")


async def test_logout_revokes_the_session(api: Api) -> None:
    account = await api.user()
    response = await api.client.post(
        "/api/v1/auth/logout",
        json={"refresh_token": account.refresh_token},
        headers=account.headers,
    )
    assert response.status_code == 204
    again = await api.client.post(
        "/api/v1/auth/refresh", json={"refresh_token": account.refresh_token}
    )
    assert_problem(again, 401)


async def test_logout_ends_the_sessions_access_tokens_at_once(api: Api) -> None:
    session = await api.user()
    other = await api.login(Account(session.id, session.email, session.username, PASSWORD))
    assert (await api.client.get("/api/v1/users/me", headers=session.headers)).status_code == 200

    await api.client.post(
        "/api/v1/auth/logout",
        json={"refresh_token": session.refresh_token},
        headers=session.headers,
    )

    ended = await api.client.get("/api/v1/users/me", headers=session.headers)
    assert_problem(ended, 401, "not_authenticated")
    # The same account's other login is another session, and stays open.
    assert (await api.client.get("/api/v1/users/me", headers=other.headers)).status_code == 200


async def test_refresh_token_reuse_ends_the_familys_access_tokens(api: Api) -> None:
    victim = await api.user()
    first = victim.refresh_token
    rotated = await api.client.post("/api/v1/auth/refresh", json={"refresh_token": first})
    fresh_access = {"Authorization": f"Bearer {rotated.json()['access_token']}"}
    elsewhere = await api.login(Account(victim.id, victim.email, victim.username, PASSWORD))
    assert (await api.client.get("/api/v1/users/me", headers=fresh_access)).status_code == 200

    reuse = await api.client.post("/api/v1/auth/refresh", json={"refresh_token": first})

    assert_problem(reuse, 401)
    for headers in (victim.headers, fresh_access):
        assert_problem(await api.client.get("/api/v1/users/me", headers=headers), 401)
    assert (await api.client.get("/api/v1/users/me", headers=elsewhere.headers)).status_code == 200


async def test_logout_with_someone_elses_refresh_token_is_refused(api: Api) -> None:
    alice, bob = await api.user(), await api.user()
    response = await api.client.post(
        "/api/v1/auth/logout", json={"refresh_token": bob.refresh_token}, headers=alice.headers
    )
    assert_problem(response, 401)
    still = await api.client.post("/api/v1/auth/refresh", json={"refresh_token": bob.refresh_token})
    assert still.status_code == 200
