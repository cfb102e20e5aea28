"""Personal API keys: shown once, stored hashed, good for the AI endpoints only, and
stopped by deletion, expiry or a deactivated account."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest
from sqlalchemy import select

from promptstack.accounts.api_key_models import ApiKey
from promptstack.accounts.api_keys import MAX_KEYS_PER_ACCOUNT
from promptstack.core.clock import FrozenClock
from promptstack.core.security import hash_token
from tests.fixtures.support import Account, Api, assert_problem

KEYS = "/api/v1/api-keys"
PROVIDERS = "/api/v1/llm/providers"


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


async def new_key(api: Api, user: Account, **body: object) -> dict[str, object]:
    made = await api.client.post(KEYS, json={"name": "notebook", **body}, headers=user.headers)
    assert made.status_code == 201, made.text
    shown: dict[str, object] = made.json()
    return shown


async def stored_keys(api: Api) -> list[ApiKey]:
    async with api.container.uow(read_only=True) as uow:
        return list(await uow.session.scalars(select(ApiKey)))


async def test_a_key_is_shown_once_and_kept_only_as_a_hash(api: Api) -> None:
    user = await api.user()

    made = await api.client.post(
        KEYS, json={"name": "  notebook  ", "expires_in_days": 30}, headers=user.headers
    )
    listed = await api.client.get(KEYS, headers=user.headers)

    assert made.status_code == 201, made.text
    assert made.headers["Cache-Control"] == "no-store"
    key = made.json()
    secret = str(key["key"])
    assert secret.startswith("psk_")
    assert len(secret) >= 4 + 43  # 256 random bits
    assert (key["name"], key["prefix"]) == ("notebook", secret[:12])
    assert key["last_used_at"] is None
    assert key["expires_at"] is not None
    [shown] = listed.json()["items"]
    assert "key" not in shown
    assert shown["id"] == key["id"]
    [row] = await stored_keys(api)
    assert row.key_hash == hash_token(secret)
    assert secret not in repr([getattr(row, c.key) for c in ApiKey.__table__.columns])


async def test_keys_are_different_every_time(api: Api) -> None:
    user = await api.user()

    first, second = await new_key(api, user), await new_key(api, user)

    assert first["key"] != second["key"]
    assert first["prefix"] != second["prefix"]


async def test_a_key_calls_the_ai_endpoints_and_its_use_is_recorded(api: Api) -> None:
    user = await api.user()
    key = str((await new_key(api, user))["key"])

    listed = await api.client.get(PROVIDERS, headers=bearer(key))
    answer = await api.client.post(
        "/api/v1/llm/generate", json={"prompt": "Hi"}, headers=bearer(key)
    )

    assert listed.status_code == 200, listed.text
    assert answer.status_code == 200, answer.text
    [shown] = (await api.client.get(KEYS, headers=user.headers)).json()["items"]
    assert shown["last_used_at"] is not None


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("GET", "/api/v1/users/me", None),
        ("PATCH", "/api/v1/users/me", {"full_name": "Mallory"}),
        ("POST", "/api/v1/users/me/password", {"current_password": "x", "new_password": "y"}),
        ("DELETE", "/api/v1/users/me", None),
        ("POST", KEYS, {"name": "another"}),
        ("GET", KEYS, None),
    ],
)
async def test_a_key_never_manages_the_account(
    api: Api, method: str, path: str, body: dict[str, str] | None
) -> None:
    user = await api.user()
    key = str((await new_key(api, user))["key"])

    response = await api.client.request(method, path, json=body, headers=bearer(key))

    problem = assert_problem(response, 401, "not_authenticated")
    assert "AI endpoints only" in problem["detail"]
    me = await api.client.get("/api/v1/users/me", headers=user.headers)
    assert me.json()["full_name"] is None
    assert len(await stored_keys(api)) == 1


async def test_a_deleted_key_stops_at_once(api: Api) -> None:
    user = await api.user()
    key = await new_key(api, user)

    deleted = await api.client.delete(f"{KEYS}/{key['id']}", headers=user.headers)
    used = await api.client.get(PROVIDERS, headers=bearer(str(key["key"])))

    assert deleted.status_code == 204
    assert_problem(used, 401, "not_authenticated")
    assert (await api.client.get(KEYS, headers=user.headers)).json()["items"] == []


async def test_another_users_key_cannot_be_seen_or_deleted(api: Api) -> None:
    owner, other = await api.user(), await api.user()
    key = await new_key(api, owner)

    deleted = await api.client.delete(f"{KEYS}/{key['id']}", headers=other.headers)
    listed = await api.client.get(KEYS, headers=other.headers)
    still = await api.client.get(PROVIDERS, headers=bearer(str(key["key"])))

    assert_problem(deleted, 404, "not_found")
    assert listed.json()["items"] == []
    assert still.status_code == 200


async def test_a_deactivated_users_keys_stop(api: Api) -> None:
    user = await api.user()
    admin = await api.admin()
    key = str((await new_key(api, user))["key"])
    assert (await api.client.get(PROVIDERS, headers=bearer(key))).status_code == 200

    changed = await api.client.patch(
        f"/api/v1/users/{user.id}", json={"is_active": False}, headers=admin.headers
    )
    used = await api.client.get(PROVIDERS, headers=bearer(key))

    assert changed.status_code == 200, changed.text
    assert_problem(used, 401, "not_authenticated")


async def test_an_expired_key_stops(api: Api, clock: FrozenClock) -> None:
    user = await api.user()
    key = str((await new_key(api, user, expires_in_days=1))["key"])
    clock.advance(timedelta(hours=23))
    assert (await api.client.get(PROVIDERS, headers=bearer(key))).status_code == 200

    clock.advance(timedelta(hours=1))
    used = await api.client.get(PROVIDERS, headers=bearer(key))

    assert_problem(used, 401, "not_authenticated")


async def test_making_and_deleting_keys_is_audited_without_the_secret(api: Api) -> None:
    user = await api.user()
    admin = await api.admin()
    key = await new_key(api, user)
    await api.client.delete(f"{KEYS}/{key['id']}", headers=user.headers)

    log = await api.client.get(
        "/api/v1/admin/audit-log", params={"subject_id": user.id}, headers=admin.headers
    )

    entries = [e for e in log.json()["items"] if e["action"].startswith("api_key.")]
    assert [e["action"] for e in entries] == ["api_key.deleted", "api_key.created"]
    assert {e["details"]["prefix"] for e in entries} == {key["prefix"]}
    assert str(key["key"]) not in log.text


async def test_concurrent_creations_stop_at_the_limit(api: Api) -> None:
    user = await api.user()
    await asyncio.gather(*(new_key(api, user) for _ in range(MAX_KEYS_PER_ACCOUNT - 5)))

    answers = await asyncio.gather(
        *(api.client.post(KEYS, json={"name": f"k{n}"}, headers=user.headers) for n in range(20))
    )

    statuses = sorted(a.status_code for a in answers)
    assert statuses == [201] * 5 + [409] * 15
    assert_problem(next(a for a in answers if a.status_code == 409), 409, "api_key_limit")
    assert len(await stored_keys(api)) == MAX_KEYS_PER_ACCOUNT


async def test_docs_offer_a_key_for_the_ai_endpoints_only(api: Api) -> None:
    document = (await api.client.get("/openapi.json")).json()

    assert document["components"]["securitySchemes"]["PersonalApiKey"]["scheme"] == "bearer"
    paths = document["paths"]
    for path, method in (("/api/v1/llm/generate", "post"), ("/v1/chat/completions", "post")):
        schemes = {name for req in paths[path][method]["security"] for name in req}
        assert "PersonalApiKey" in schemes, path
    for path, method in (("/api/v1/users/me", "get"), ("/api/v1/api-keys", "post")):
        schemes = {name for req in paths[path][method]["security"] for name in req}
        assert "PersonalApiKey" not in schemes, path
