"""Bearer tokens that must not work, and accounts that must not reach past their rank.

Every token problem is a 401 problem document with `WWW-Authenticate: Bearer`; every
rank problem is a 403. Forged tokens are built from a real token's claims, so each one
differs from a token the service would accept in one way only.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

import httpx
import pytest

from promptstack.accounts.models import Role
from promptstack.core.clock import FrozenClock
from tests.fixtures.bad_input import (
    ACCESS_FORGERIES,
    FORGERIES,
    Forgery,
    assert_unauthorized,
    b64url,
    claims_of,
    resigned,
)
from tests.fixtures.support import PASSWORD, Account, Api, assert_problem

V1 = "/api/v1"
NEW_PASSWORD = "a brand new passphrase"


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def me(api: Api, token: str) -> httpx.Response:
    return await api.client.get(f"{V1}/users/me", headers=bearer(token))


async def refresh(api: Api, token: str) -> httpx.Response:
    return await api.client.post(f"{V1}/auth/refresh", json={"refresh_token": token})


# --- forged and altered tokens -----------------------------------------------------------


def params(*forgeries: dict[str, Forgery]) -> list[Any]:
    return [pytest.param(forge, id=name) for table in forgeries for name, forge in table.items()]


FORGED_ACCESS = params(FORGERIES, ACCESS_FORGERIES)
REFRESH_FORGERIES: dict[str, Forgery] = {
    "no-family": resigned({}, drop="fam"),
    "family-not-a-uuid": resigned({"fam": "not-a-uuid"}),
    "family-a-number": resigned({"fam": 123}),
    "family-a-list": resigned({"fam": ["x"]}),
}
FORGED_REFRESH = params(FORGERIES, REFRESH_FORGERIES)


@pytest.mark.filterwarnings("ignore::jwt.warnings.InsecureKeyLengthWarning")
@pytest.mark.parametrize("forge", FORGED_ACCESS)
async def test_a_forged_access_token_is_refused(api: Api, forge: Forgery) -> None:
    account = await api.user()
    forged = forge(api, account.access_token)

    response = await me(api, forged)

    assert_unauthorized(response)


@pytest.mark.filterwarnings("ignore::jwt.warnings.InsecureKeyLengthWarning")
@pytest.mark.parametrize("forge", FORGED_REFRESH)
async def test_a_forged_refresh_token_is_refused_and_ends_no_session(
    api: Api, forge: Forgery
) -> None:
    account = await api.user()
    forged = forge(api, account.refresh_token)

    response = await refresh(api, forged)

    assert_unauthorized(response)
    assert (await refresh(api, account.refresh_token)).status_code == 200


async def test_a_user_cannot_become_an_admin_by_editing_its_token(api: Api) -> None:
    user, admin = await api.user(), await api.admin()
    header, _, signature = user.access_token.split(".")
    as_admin = {**claims_of(user.access_token), "sub": admin.id}
    forged = f"{header}.{b64url(json.dumps(as_admin).encode())}.{signature}"

    response = await api.client.get(f"{V1}/users", headers=bearer(forged))

    assert_unauthorized(response)


async def test_an_expired_access_token_is_refused(api: Api, clock: FrozenClock) -> None:
    account = await api.user()
    clock.advance(timedelta(minutes=api.settings.access_token_expire_minutes, seconds=1))

    response = await me(api, account.access_token)

    assert_unauthorized(response)


# --- one kind of token where the other is due --------------------------------------------


async def test_a_refresh_token_is_not_an_access_token(api: Api) -> None:
    account = await api.user()

    response = await me(api, account.refresh_token)

    assert_unauthorized(response)


async def test_an_access_token_is_not_a_refresh_token(api: Api) -> None:
    account = await api.user()

    response = await refresh(api, account.access_token)

    assert_unauthorized(response)


async def test_logout_with_an_access_token_for_the_refresh_token_ends_nothing(
    api: Api,
) -> None:
    account = await api.user()

    response = await api.client.post(
        f"{V1}/auth/logout", json={"refresh_token": account.access_token}, headers=account.headers
    )

    assert_unauthorized(response)
    assert (await refresh(api, account.refresh_token)).status_code == 200


@pytest.mark.parametrize("scheme", ["Bearer", "bearer", "BEARER"])
async def test_the_bearer_scheme_is_case_insensitive(api: Api, scheme: str) -> None:
    account = await api.user()

    response = await api.client.get(
        f"{V1}/users/me", headers={"Authorization": f"{scheme} {account.access_token}"}
    )

    assert response.status_code == 200, response.text


# --- sessions that must end at once ------------------------------------------------------

Ending = Callable[[Api, Account], Awaitable[httpx.Response]]


async def delete_self(api: Api, account: Account) -> httpx.Response:
    return await api.client.delete(f"{V1}/users/me", headers=account.headers)


async def deactivated_by_admin(api: Api, account: Account) -> httpx.Response:
    admin = await api.admin()
    return await api.client.patch(
        f"{V1}/users/{account.id}", json={"is_active": False}, headers=admin.headers
    )


async def password_changed(api: Api, account: Account) -> httpx.Response:
    return await api.client.post(
        f"{V1}/users/me/password",
        json={"current_password": PASSWORD, "new_password": NEW_PASSWORD},
        headers=account.headers,
    )


async def password_reset(api: Api, account: Account) -> httpx.Response:
    await api.client.post(f"{V1}/auth/password-reset/request", json={"email": account.email})
    token = await api.token_from_mail(account.email, "reset the password")
    return await api.client.post(
        f"{V1}/auth/password-reset/confirm", json={"token": token, "new_password": NEW_PASSWORD}
    )


ENDINGS = [
    pytest.param(delete_self, id="account-deleted"),
    pytest.param(deactivated_by_admin, id="deactivated-by-admin"),
    pytest.param(password_changed, id="password-changed"),
    pytest.param(password_reset, id="password-reset"),
]


@pytest.mark.parametrize("end", ENDINGS)
async def test_an_access_token_stops_working_at_once_when_the_session_ends(
    api: Api, end: Ending
) -> None:
    account = await api.user()
    ended = await end(api, account)
    assert ended.status_code in (200, 204), ended.text

    response = await me(api, account.access_token)

    assert_unauthorized(response)


@pytest.mark.parametrize("end", ENDINGS)
async def test_a_refresh_token_stops_working_when_the_session_ends(api: Api, end: Ending) -> None:
    account = await api.user()
    ended = await end(api, account)
    assert ended.status_code in (200, 204), ended.text

    response = await refresh(api, account.refresh_token)

    assert_unauthorized(response)


@pytest.mark.parametrize("end", ENDINGS)
async def test_every_other_session_of_the_account_ends_too(api: Api, end: Ending) -> None:
    account = await api.user()
    other_device = await api.login(Account(account.id, account.email, account.username, PASSWORD))
    ended = await end(api, account)
    assert ended.status_code in (200, 204), ended.text

    response = await me(api, other_device.access_token)

    assert_unauthorized(response)


async def test_a_deleted_account_cannot_log_in_again(api: Api) -> None:
    account = await api.user()
    assert (await delete_self(api, account)).status_code == 204

    response = await api.client.post(
        f"{V1}/auth/login", data={"username": account.username, "password": PASSWORD}
    )

    assert_problem(response, 401, "invalid_credentials")


async def test_a_deactivated_account_cannot_log_in(api: Api) -> None:
    account = await api.user()
    assert (await deactivated_by_admin(api, account)).status_code == 200

    response = await api.client.post(
        f"{V1}/auth/login", data={"username": account.username, "password": PASSWORD}
    )

    assert_problem(response, 401, "account_inactive")


async def test_reactivation_does_not_revive_old_tokens(api: Api) -> None:
    admin, account = await api.admin(), await api.user()
    for active in (False, True):
        changed = await api.client.patch(
            f"{V1}/users/{account.id}", json={"is_active": active}, headers=admin.headers
        )
        assert changed.status_code == 200, changed.text

    response = await me(api, account.access_token)

    assert_unauthorized(response)


async def test_a_demoted_admin_loses_its_powers_at_once(api: Api) -> None:
    chief, admin = await api.admin(Role.SUPER_ADMIN), await api.admin()
    demoted = await api.client.patch(
        f"{V1}/users/{admin.id}", json={"role": "user"}, headers=chief.headers
    )
    assert demoted.status_code == 200, demoted.text

    response = await api.client.get(f"{V1}/users", headers=admin.headers)

    assert_problem(response, 403, "forbidden")


# --- other people's accounts -------------------------------------------------------------


@pytest.mark.parametrize("whose", ["someone-else", "nobody"])
async def test_a_user_cannot_read_another_account(api: Api, whose: str) -> None:
    reader, other = await api.user(), await api.user()
    user_id = other.id if whose == "someone-else" else str(uuid.uuid4())

    response = await api.client.get(f"{V1}/users/{user_id}", headers=reader.headers)

    assert_problem(response, 403, "forbidden")  # the same answer: ids cannot be probed


async def test_a_user_can_read_its_own_account_by_id(api: Api) -> None:
    reader = await api.user()

    response = await api.client.get(f"{V1}/users/{reader.id}", headers=reader.headers)

    assert response.status_code == 200, response.text
    assert response.json()["id"] == reader.id


@pytest.mark.parametrize(("method", "path"), [("GET", "/users"), ("GET", "/admin/audit-log")])
async def test_a_user_cannot_use_administrator_lists(api: Api, method: str, path: str) -> None:
    reader = await api.user()

    response = await api.client.request(method, V1 + path, headers=reader.headers)

    assert_problem(response, 403, "forbidden")


async def account_of(api: Api, role: str) -> Account:
    if role == "user":
        return await api.user()
    return await api.admin(Role(role))


REFUSED_CHANGES = [
    ("user", "user", {"tier": "premium"}),
    ("user", "user", {"is_active": False}),
    ("user", "self", {"role": "admin"}),
    ("user", "self", {"tier": "premium"}),
    ("admin", "user", {"role": "super_admin"}),
    ("admin", "user", {"role": "admin"}),
    ("admin", "user", {"tier": "premium", "is_active": False, "role": "admin"}),
    ("admin", "self", {"tier": "premium"}),
    ("admin", "self", {"role": "super_admin"}),
    ("admin", "admin", {"is_active": False}),
    ("admin", "admin", {"role": "user"}),
    ("admin", "admin", {"tier": "premium"}),
    ("admin", "super_admin", {"is_active": False}),
    ("admin", "super_admin", {"role": "user"}),
    ("super_admin", "self", {"is_active": False}),
    ("super_admin", "self", {"role": "user"}),
    ("super_admin", "super_admin", {"is_active": False}),
    ("super_admin", "super_admin", {"role": "admin"}),
]


@pytest.mark.parametrize(
    ("actor_role", "target_role", "change"),
    [
        pytest.param(a, t, c, id=f"{a}-on-{t}-" + ",".join(f"{k}={v}" for k, v in c.items()))
        for a, t, c in REFUSED_CHANGES
    ],
)
async def test_no_one_manages_an_account_at_or_above_its_own_rank(
    api: Api, actor_role: str, target_role: str, change: dict[str, Any]
) -> None:
    observer = await api.admin(Role.SUPER_ADMIN)
    actor = await account_of(api, actor_role)
    target = actor if target_role == "self" else await account_of(api, target_role)
    before = await api.client.get(f"{V1}/users/{target.id}", headers=observer.headers)

    response = await api.client.patch(f"{V1}/users/{target.id}", json=change, headers=actor.headers)

    assert_problem(response, 403, "forbidden")
    after = await api.client.get(f"{V1}/users/{target.id}", headers=observer.headers)
    assert after.json() == before.json()
    assert (await me(api, target.access_token)).status_code == 200


ALLOWED_CHANGES = [
    ("admin", "user", {"tier": "premium"}),
    ("admin", "user", {"is_active": False}),
    ("super_admin", "user", {"role": "admin"}),
    ("super_admin", "admin", {"role": "user"}),
    ("super_admin", "admin", {"tier": "premium"}),
]


@pytest.mark.parametrize(
    ("actor_role", "target_role", "change"),
    [
        pytest.param(a, t, c, id=f"{a}-on-{t}-" + ",".join(f"{k}={v}" for k, v in c.items()))
        for a, t, c in ALLOWED_CHANGES
    ],
)
async def test_accounts_ranked_below_may_be_managed(
    api: Api, actor_role: str, target_role: str, change: dict[str, Any]
) -> None:
    actor, target = await account_of(api, actor_role), await account_of(api, target_role)

    response = await api.client.patch(f"{V1}/users/{target.id}", json=change, headers=actor.headers)

    assert response.status_code == 200, response.text
    assert {key: response.json()[key] for key in change} == change
