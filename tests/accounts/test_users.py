"""One's own account, and administration of others."""

from __future__ import annotations

import uuid

import pytest

from promptstack.accounts.models import Role, User, search_key
from promptstack.accounts.repository import UserRepository
from promptstack.accounts.service import AdminChanges, ProfileChanges
from promptstack.core.errors import NotFound
from tests.fixtures.support import Api, assert_problem

ME = "/api/v1/users/me"


async def test_profile_update(api: Api) -> None:
    account = await api.user(full_name="Old Name")
    response = await api.client.patch(
        ME,
        json={"full_name": "New Name", "preferred_provider": "anthropic", "username": "renamed"},
        headers=account.headers,
    )
    assert response.status_code == 200, response.text
    me = response.json()
    assert (me["full_name"], me["preferred_provider"], me["username"]) == (
        "New Name",
        "anthropic",
        "renamed",
    )
    cleared = await api.client.patch(ME, json={"full_name": None}, headers=account.headers)
    assert cleared.json()["full_name"] is None
    assert cleared.json()["preferred_provider"] == "anthropic"


async def test_new_email_must_be_verified_again(api: Api) -> None:
    account = await api.user()
    response = await api.client.patch(
        ME, json={"email": "moved@example.com"}, headers=account.headers
    )
    assert response.json()["email"] == "moved@example.com"
    assert response.json()["is_verified"] is False
    token = await api.token_from_mail("moved@example.com", "Confirm this address")
    assert (
        await api.client.post("/api/v1/auth/verify-email", json={"token": token})
    ).status_code == 204


async def test_profile_cannot_take_anothers_name(api: Api) -> None:
    taken = await api.register(username="taken-name")
    account = await api.user()
    for body in ({"username": "TAKEN-NAME"}, {"email": taken.email}):
        response = await api.client.patch(ME, json=body, headers=account.headers)
        assert_problem(response, 409, "conflict")
    me = (await api.client.get(ME, headers=account.headers)).json()
    assert me["username"] == account.username


async def test_user_cannot_raise_own_role(api: Api) -> None:
    account = await api.user()
    via_profile = await api.client.patch(ME, json={"role": "admin"}, headers=account.headers)
    assert_problem(via_profile, 422)
    via_admin = await api.client.patch(
        f"/api/v1/users/{account.id}", json={"role": "admin"}, headers=account.headers
    )
    assert_problem(via_admin, 403)
    assert (await api.client.get(ME, headers=account.headers)).json()["role"] == "user"


async def test_delete_me_closes_the_account(api: Api) -> None:
    account = await api.user()
    assert (await api.client.delete(ME, headers=account.headers)).status_code == 204
    assert_problem(await api.client.get(ME, headers=account.headers), 401)
    login = await api.client.post(
        "/api/v1/auth/login", data={"username": account.username, "password": account.password}
    )
    assert_problem(login, 401)
    # The address and the name are free again.
    await api.register(email=account.email, username=account.username)


async def test_users_read_themselves_but_not_others(api: Api) -> None:
    alice, bob = await api.user(), await api.user()
    own = await api.client.get(f"/api/v1/users/{alice.id}", headers=alice.headers)
    assert own.status_code == 200
    assert_problem(await api.client.get(f"/api/v1/users/{bob.id}", headers=alice.headers), 403)
    assert_problem(await api.client.get("/api/v1/users", headers=alice.headers), 403)


async def test_admin_searches_case_insensitively(api: Api) -> None:
    await api.register(email="grace.hopper@navy.example", username="amazing-grace")
    await api.register(full_name="GRACE Kelly")
    await api.register(full_name="Somebody Else")
    admin = await api.admin()
    response = await api.client.get("/api/v1/users", params={"q": "grace"}, headers=admin.headers)
    assert response.status_code == 200
    found = response.json()["items"]
    assert len(found) == 2
    literal = await api.client.get("/api/v1/users", params={"q": "%"}, headers=admin.headers)
    assert literal.json()["items"] == []


async def test_admin_filters_by_role(api: Api) -> None:
    await api.register()
    admin = await api.admin()
    response = await api.client.get(
        "/api/v1/users", params={"role": "admin"}, headers=admin.headers
    )
    assert [u["id"] for u in response.json()["items"]] == [admin.id]


async def test_pages_cover_every_user_once_while_users_are_added(api: Api) -> None:
    admin = await api.admin()
    for _ in range(5):
        await api.register()
    seen: list[str] = []
    cursor = None
    pages = 0
    while True:
        params = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        body = (await api.client.get("/api/v1/users", params=params, headers=admin.headers)).json()
        seen += [u["id"] for u in body["items"]]
        pages += 1
        if pages == 1:
            await api.register()  # a row added mid-way lands after the cursor: seen once
        cursor = body["next_cursor"]
        if cursor is None:
            break
    assert len(seen) == len(set(seen)) == 7
    assert pages == 4


async def test_admin_changes_tier_role_and_status_with_audit(api: Api) -> None:
    account = await api.user()
    admin = await api.admin(Role.SUPER_ADMIN)
    response = await api.client.patch(
        f"/api/v1/users/{account.id}",
        json={"tier": "premium", "role": "admin"},
        headers=admin.headers,
    )
    assert response.status_code == 200, response.text
    assert (response.json()["tier"], response.json()["role"]) == ("premium", "admin")

    deactivate = await api.client.patch(
        f"/api/v1/users/{account.id}", json={"is_active": False}, headers=admin.headers
    )
    assert deactivate.json()["is_active"] is False
    assert_problem(await api.client.get(ME, headers=account.headers), 401)

    log = await api.client.get(
        "/api/v1/admin/audit-log", params={"subject_id": account.id}, headers=admin.headers
    )
    actions = [entry["action"] for entry in log.json()["items"]]
    assert actions[:3] == ["user.deactivated", "user.tier_changed", "user.role_changed"] or actions[
        :3
    ] == ["user.deactivated", "user.role_changed", "user.tier_changed"]
    assert "auth.login" in actions
    assert "user.registered" in actions


async def test_audit_log_pages_newest_first(api: Api) -> None:
    admin = await api.admin()
    for _ in range(3):
        await api.user()
    first = await api.client.get(
        "/api/v1/admin/audit-log", params={"limit": 3}, headers=admin.headers
    )
    body = first.json()
    assert len(body["items"]) == 3
    times = [entry["at"] for entry in body["items"]]
    assert times == sorted(times, reverse=True)
    rest = await api.client.get(
        "/api/v1/admin/audit-log",
        params={"limit": 100, "cursor": body["next_cursor"]},
        headers=admin.headers,
    )
    assert {e["id"] for e in body["items"]}.isdisjoint({e["id"] for e in rest.json()["items"]})
    assert rest.json()["items"][0]["at"] <= times[-1]


async def test_plain_users_cannot_read_the_audit_log(api: Api) -> None:
    account = await api.user()
    assert_problem(await api.client.get("/api/v1/admin/audit-log", headers=account.headers), 403)
    assert_problem(await api.client.get("/api/v1/admin/audit-log"), 401)


async def _stored(api: Api, user_id: str) -> User:
    async with api.container.uow(read_only=True) as uow:
        user = await UserRepository.of(uow).get(uuid.UUID(user_id))
    assert user is not None
    return user


async def test_a_name_change_made_from_a_stale_snapshot_keeps_the_search_key_right(
    api: Api,
) -> None:
    """A name change writes in one statement from the caller's cached snapshot; when the
    account's username changed since that snapshot was taken, it must not build the
    search key from the old username, nor overwrite the new one."""
    account = await api.user(full_name="Before")
    accounts = api.container.accounts.service
    stale = await api.container.accounts.auth.authenticate(account.access_token)
    await accounts.update_profile(stale, ProfileChanges(username="renamed-meanwhile"))

    shown = await accounts.update_profile(stale, ProfileChanges(full_name="After"))

    stored = await _stored(api, account.id)
    assert (shown.username, shown.full_name) == ("renamed-meanwhile", "After")
    assert (stored.username, stored.full_name) == ("renamed-meanwhile", "After")
    assert stored.search_key == search_key(stored.email, "renamed-meanwhile", "After")


@pytest.mark.parametrize("closing", ["deleted", "deactivated"])
async def test_a_name_change_from_a_closed_accounts_snapshot_writes_nothing(
    api: Api, closing: str
) -> None:
    account = await api.user(full_name="Kept")
    accounts = api.container.accounts.service
    stale = await api.container.accounts.auth.authenticate(account.access_token)
    if closing == "deleted":
        await accounts.delete_self(stale)
    else:
        admin = await api.container.accounts.auth.authenticate((await api.admin()).access_token)
        await accounts.administer(admin, stale.id, AdminChanges(is_active=False))

    with pytest.raises(NotFound):
        await accounts.update_profile(stale, ProfileChanges(full_name="Written anyway"))
    assert (await _stored(api, account.id)).full_name != "Written anyway"


async def test_a_name_change_is_audited_and_searchable(api: Api) -> None:
    account = await api.user()
    admin = await api.admin()
    changed = await api.client.patch(
        ME, json={"full_name": "Grace Hopper", "preferred_provider": None}, headers=account.headers
    )
    assert changed.status_code == 200, changed.text
    found = await api.client.get("/api/v1/users", params={"q": "hopper"}, headers=admin.headers)
    assert [u["id"] for u in found.json()["items"]] == [account.id]
    audit = await api.client.get(
        "/api/v1/admin/audit-log", params={"action": "user.updated"}, headers=admin.headers
    )
    [entry] = [e for e in audit.json()["items"] if e["subject_id"] == account.id]
    assert entry["details"]["fields"] == ["full_name", "preferred_provider"]
