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
import jwt
import pytest

from promptstack.accounts.models import Role
from promptstack.core.clock import FrozenClock
from tests.fixtures.bad_input import OTHER_KEY, b64url, claims_of
from tests.fixtures.support import PASSWORD, Account, Api, assert_problem

V1 = "/api/v1"
NEW_PASSWORD = "a brand new passphrase"


def assert_unauthorized(response: httpx.Response) -> None:
    assert_problem(response, 401, "not_authenticated")
    assert response.headers["www-authenticate"] == "Bearer"


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def me(api: Api, token: str) -> httpx.Response:
    return await api.client.get(f"{V1}/users/me", headers=bearer(token))


async def refresh(api: Api, token: str) -> httpx.Response:
    return await api.client.post(f"{V1}/auth/refresh", json={"refresh_token": token})


# --- forged and altered tokens -----------------------------------------------------------

Forgery = Callable[[Api, str], str]


def resigned(change: dict[str, Any], *, drop: str | None = None) -> Forgery:
    """The token's claims changed, then signed with the service's own key and algorithm."""

    def forge(api: Api, token: str) -> str:
        claims = {**claims_of(token), **change}
        claims.pop(drop or "", None)
        return jwt.encode(claims, api.settings.secret_key.get_secret_value(), "HS256")

    return forge


def signed_with(key: str | None, algorithm: str) -> Forgery:
    def forge(api: Api, token: str) -> str:
        secret = key or api.settings.secret_key.get_secret_value()
        return jwt.encode(claims_of(token), secret, algorithm)

    return forge


def unsigned(algorithm: str) -> Forgery:
    """Built by hand, as an attacker would: header and payload, and no signature."""

    def forge(api: Api, token: str) -> str:
        header = b64url(json.dumps({"alg": algorithm, "typ": "JWT"}).encode())
        return f"{header}.{b64url(json.dumps(claims_of(token)).encode())}."

    return forge


def tampered(api: Api, token: str) -> str:
    """Another subject in the payload, the original signature kept."""
    header, _, signature = token.split(".")
    claims = {**claims_of(token), "sub": str(uuid.uuid4())}
    return f"{header}.{b64url(json.dumps(claims).encode())}.{signature}"


def stripped(api: Api, token: str) -> str:
    return token.rsplit(".", 1)[0] + "."


FORGERIES = [
    pytest.param(signed_with(OTHER_KEY, "HS256"), id="signed-with-another-key"),
    pytest.param(unsigned("none"), id="alg-none"),
    pytest.param(unsigned("None"), id="alg-None"),
    pytest.param(unsigned("NONE"), id="alg-NONE"),
    pytest.param(
        signed_with(None, "HS512"),
        id="hs512-with-the-real-key",
        # The test settings' key is short for SHA-512; the forger does not care.
        marks=pytest.mark.filterwarnings("ignore::jwt.warnings.InsecureKeyLengthWarning"),
    ),
    pytest.param(signed_with(None, "HS384"), id="hs384-with-the-real-key"),
    pytest.param(tampered, id="payload-changed-signature-kept"),
    pytest.param(stripped, id="signature-removed"),
    pytest.param(resigned({"iss": "Someone Else"}), id="other-issuer"),
    pytest.param(resigned({}, drop="iss"), id="no-issuer"),
    pytest.param(resigned({}, drop="exp"), id="no-expiry"),
    pytest.param(resigned({"exp": "tomorrow"}), id="expiry-as-text"),
    pytest.param(resigned({}, drop="sub"), id="no-subject"),
    pytest.param(resigned({"sub": "not-a-uuid"}), id="subject-not-a-uuid"),
    pytest.param(resigned({"sub": 42}), id="subject-a-number"),
    pytest.param(resigned({"sub": str(uuid.uuid4())}), id="subject-of-nobody"),
    pytest.param(resigned({}, drop="jti"), id="no-token-id"),
    pytest.param(resigned({"jti": 5}), id="token-id-a-number"),
    pytest.param(resigned({}, drop="type"), id="no-type"),
    pytest.param(resigned({"type": "admin"}), id="unknown-type"),
]
ACCESS_FORGERIES = [
    pytest.param(resigned({}, drop="ver"), id="no-session-version"),
    pytest.param(resigned({"ver": "zero"}), id="session-version-as-text"),
    pytest.param(resigned({"ver": [0]}), id="session-version-a-list"),
    pytest.param(resigned({"ver": float("inf")}), id="session-version-infinite"),
    pytest.param(resigned({"ver": 1}), id="session-version-ahead"),
]
REFRESH_FORGERIES = [
    pytest.param(resigned({}, drop="fam"), id="no-family"),
    pytest.param(resigned({"fam": "not-a-uuid"}), id="family-not-a-uuid"),
    pytest.param(resigned({"fam": 123}), id="family-a-number"),
    pytest.param(resigned({"fam": ["x"]}), id="family-a-list"),
]


@pytest.mark.parametrize("forge", FORGERIES + ACCESS_FORGERIES)
async def test_a_forged_access_token_is_refused(api: Api, forge: Forgery) -> None:
    account = await api.user()
    forged = forge(api, account.access_token)

    response = await me(api, forged)

    assert_unauthorized(response)


@pytest.mark.parametrize("forge", FORGERIES + REFRESH_FORGERIES)
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


async def test_an_expired_token_is_refused_even_when_freshly_signed(api: Api) -> None:
    account = await api.user()
    past = claims_of(account.access_token)["iat"] - 1
    forged = resigned({"exp": past})(api, account.access_token)

    response = await me(api, forged)

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


# --- Authorization headers that are not a bearer access token ----------------------------

GARBAGE_HEADERS = [
    pytest.param(None, id="no-header"),
    pytest.param("Bearer", id="bearer-alone"),
    pytest.param("Bearer ", id="bearer-and-space"),
    pytest.param("Basic abc", id="basic"),
    pytest.param("Basic " + b64url(f"someone:{PASSWORD}".encode()), id="basic-credentials"),
    pytest.param("Bearer a.b.c", id="three-dotted-parts"),
    pytest.param("Bearer " + "x" * 10_240, id="10KB-token"),
    pytest.param("Bearer " + ".".join(["a" * 5000, "b" * 5000, "c" * 200]), id="10KB-jwt-shape"),
    pytest.param(b"Bearer \xff\xfe\xfd", id="not-ascii"),
    pytest.param("Token {token}", id="real-token-other-scheme"),
    pytest.param("{token}", id="real-token-no-scheme"),
    pytest.param("Bearer {token} {token}", id="real-token-twice"),
]


PROTECTED = [
    pytest.param(method, path, body, id=f"{method}-{path}")
    for method, path, body in [
        ("GET", "/users/me", None),
        ("PATCH", "/users/me", {"full_name": "Taken Over"}),
        ("DELETE", "/users/me", None),
        ("POST", "/users/me/password", {"current_password": PASSWORD, "new_password": "x" * 12}),
        ("POST", "/auth/logout", {"refresh_token": "never read"}),
        ("GET", "/users", None),
        ("GET", "/users/{target}", None),
        ("PATCH", "/users/{target}", {"role": "admin", "is_active": False}),
        ("GET", "/admin/audit-log", None),
    ]
]


@pytest.mark.input_only
@pytest.mark.parametrize(("method", "path", "body"), PROTECTED)
@pytest.mark.parametrize("authorization", GARBAGE_HEADERS)
async def test_every_protected_endpoint_refuses_a_bad_authorization_header(
    api: Api, method: str, path: str, body: dict[str, Any] | None, authorization: str | bytes | None
) -> None:
    owner, target = await api.admin(Role.SUPER_ADMIN), await api.user()
    if isinstance(authorization, str):
        authorization = authorization.format(token=owner.access_token)
    headers = {} if authorization is None else {"Authorization": authorization}
    before = await world(api, owner)

    response = await api.client.request(
        method, V1 + path.format(target=target.id), json=body, headers=headers
    )

    assert_unauthorized(response)
    assert await world(api, owner) == before


async def world(api: Api, observer: Account) -> dict[str, Any]:
    """Every account and audit entry, as a super admin sees them."""
    users = await api.client.get(f"{V1}/users?limit=100", headers=observer.headers)
    audit = await api.client.get(f"{V1}/admin/audit-log?limit=100", headers=observer.headers)
    assert users.status_code == audit.status_code == 200
    return {"users": users.json(), "audit": audit.json()}


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
