"""GET /features for each kind of caller, and the beta-tester switch administrators hold."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import httpx
import pytest

from promptstack.accounts.models import Role
from promptstack.core.clock import FrozenClock
from tests.fixtures.support import Account, Api, assert_problem

FEATURES = "/api/v1/features"
NOTHING_ON = {"advanced_analytics": False, "ai_chat": False, "new_dashboard": False}


async def features_of(api: Api, caller: Account | None = None) -> dict[str, bool]:
    response = await api.client.get(FEATURES, headers=caller.headers if caller else {})
    assert response.status_code == 200, response.text
    flags: dict[str, bool] = response.json()["flags"]
    return flags


async def administer(api: Api, admin: Account, target: Account, **body: Any) -> httpx.Response:
    return await api.client.patch(f"/api/v1/users/{target.id}", json=body, headers=admin.headers)


async def audit_of(api: Api, observer: Account, subject: Account) -> list[dict[str, Any]]:
    response = await api.client.get(
        "/api/v1/admin/audit-log",
        params={"subject_id": subject.id, "action": "user.beta_tester_changed"},
        headers=observer.headers,
    )
    assert response.status_code == 200, response.text
    entries: list[dict[str, Any]] = response.json()["items"]
    return entries


# --- who sees what -------------------------------------------------------------------------


async def test_an_anonymous_caller_gets_every_flag_off_outside_development(api: Api) -> None:
    assert await features_of(api) == NOTHING_ON


async def test_a_signed_in_user_gets_ai_chat(api: Api) -> None:
    assert await features_of(api, await api.user()) == {**NOTHING_ON, "ai_chat": True}


async def test_premium_takes_effect_as_soon_as_an_administrator_grants_it(api: Api) -> None:
    account, admin = await api.user(), await api.admin()
    assert (await administer(api, admin, account, tier="premium")).status_code == 200

    # The same access token: flags read the account as it is now, not as it was at login.
    assert await features_of(api, account) == {
        **NOTHING_ON,
        "ai_chat": True,
        "advanced_analytics": True,
    }


async def test_an_administrator_makes_a_beta_tester_and_unmakes_one(api: Api) -> None:
    account, admin = await api.user(), await api.admin()

    made = await administer(api, admin, account, is_beta_tester=True)

    assert made.status_code == 200, made.text
    assert made.json()["is_beta_tester"] is True
    assert await features_of(api, account) == {**NOTHING_ON, "ai_chat": True, "new_dashboard": True}
    me = await api.client.get("/api/v1/users/me", headers=account.headers)
    assert me.json()["is_beta_tester"] is True

    unmade = await administer(api, admin, account, is_beta_tester=False)

    assert unmade.json()["is_beta_tester"] is False
    assert await features_of(api, account) == {**NOTHING_ON, "ai_chat": True}
    entries = await audit_of(api, admin, account)
    assert [(e["actor_id"], e["details"]) for e in entries] == [
        (admin.id, {"before": True, "after": False}),
        (admin.id, {"before": False, "after": True}),
    ]


async def test_setting_the_beta_flag_it_already_has_records_nothing(api: Api) -> None:
    account, admin = await api.user(), await api.admin()
    await administer(api, admin, account, is_beta_tester=True)

    again = await administer(api, admin, account, is_beta_tester=True, tier="free")

    assert again.status_code == 200
    assert len(await audit_of(api, admin, account)) == 1


async def test_new_accounts_are_not_beta_testers(api: Api) -> None:
    me = await api.client.get("/api/v1/users/me", headers=(await api.user()).headers)
    assert me.json()["is_beta_tester"] is False


@pytest.mark.parametrize("settings_overrides", [{"environment": "development"}])
async def test_the_new_dashboard_is_on_for_everyone_in_development(api: Api) -> None:
    assert await features_of(api) == {**NOTHING_ON, "new_dashboard": True}
    assert await features_of(api, await api.user()) == {
        **NOTHING_ON,
        "new_dashboard": True,
        "ai_chat": True,
    }


@pytest.mark.parametrize(
    "settings_overrides",
    [
        {
            "feature_flags": {
                "ai_chat": {"enabled": False},
                "admin_console": {"roles": ["admin", "super_admin"]},
                "status_banner": {"percentage": 100},
            }
        }
    ],
)
async def test_configured_flags_join_and_override_the_built_ins(api: Api) -> None:
    configured_off = {**NOTHING_ON, "admin_console": False, "status_banner": True}
    assert await features_of(api) == configured_off
    assert await features_of(api, await api.user()) == configured_off
    assert await features_of(api, await api.admin()) == {**configured_off, "admin_console": True}


# --- tokens that do not work are refused, never taken for anonymous ------------------------


def assert_unauthorized(response: httpx.Response) -> None:
    assert_problem(response, 401, "not_authenticated")
    assert response.headers["www-authenticate"] == "Bearer"


@pytest.mark.input_only
@pytest.mark.parametrize(
    "authorization",
    [
        pytest.param("Bearer not-a-token", id="garbage"),
        pytest.param("Bearer ", id="empty-bearer"),
        pytest.param("Basic dXNlcjpwYXNz", id="another-scheme"),
        pytest.param("", id="empty-header"),
        pytest.param("Bearer " + "x" * 5000, id="oversized"),
    ],
)
async def test_an_authorization_header_that_is_not_a_token_is_a_401(
    api: Api, authorization: str
) -> None:
    response = await api.client.get(FEATURES, headers={"Authorization": authorization})
    assert_unauthorized(response)


async def test_an_expired_token_is_a_401(api: Api, clock: FrozenClock) -> None:
    account = await api.user()
    clock.advance(timedelta(minutes=api.settings.access_token_expire_minutes, seconds=1))
    assert_unauthorized(await api.client.get(FEATURES, headers=account.headers))


async def test_a_deactivated_accounts_token_is_a_401(api: Api) -> None:
    account, admin = await api.user(), await api.admin()
    await administer(api, admin, account, is_active=False)
    assert_unauthorized(await api.client.get(FEATURES, headers=account.headers))


# --- who may set the beta flag, and with what ----------------------------------------------


async def test_beta_testing_follows_the_rank_rules(api: Api) -> None:
    user, admin, other_admin = await api.user(), await api.admin(), await api.admin()
    super_admin = await api.admin(Role.SUPER_ADMIN)

    assert_problem(await administer(api, user, user, is_beta_tester=True), 403, "forbidden")
    assert_problem(await administer(api, admin, admin, is_beta_tester=True), 403, "forbidden")
    assert_problem(await administer(api, admin, other_admin, is_beta_tester=True), 403)
    assert (await administer(api, super_admin, other_admin, is_beta_tester=True)).json()[
        "is_beta_tester"
    ] is True
    assert await features_of(api, admin) == {**NOTHING_ON, "ai_chat": True}
    assert await features_of(api, user) == {**NOTHING_ON, "ai_chat": True}


@pytest.mark.parametrize(
    "value",
    [
        pytest.param("true", id="string-true"),
        pytest.param("yes", id="yes"),
        pytest.param(1, id="one"),
        pytest.param(0, id="zero"),
        pytest.param(None, id="null"),
        pytest.param([True], id="list"),
        pytest.param({"value": True}, id="object"),
    ],
)
async def test_a_beta_flag_that_is_not_a_boolean_is_refused(api: Api, value: Any) -> None:
    account, admin = await api.user(), await api.admin()

    response = await administer(api, admin, account, is_beta_tester=value, tier="premium")

    problem = assert_problem(response, 422, "validation_error")
    assert "is_beta_tester" in str(problem["errors"])  # the error names the field
    me = (await api.client.get("/api/v1/users/me", headers=account.headers)).json()
    assert (me["is_beta_tester"], me["tier"]) == (False, "free")  # nothing half-applied
    assert await audit_of(api, admin, account) == []
