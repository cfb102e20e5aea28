"""The links in account emails open pages that do what the email says.

Opening a link changes nothing (mail scanners open links too); the page's form does the
work. Whatever a page is sent, it answers a 4xx page or problem and changes nothing.
"""

from __future__ import annotations

import html
import re
from typing import Any

import pytest

from promptstack.http.pages import PAGE_POLICY
from tests.fixtures.bad_input import stored_state
from tests.fixtures.support import PASSWORD, Account, Api

V1 = "/api/v1"
NEW_PASSWORD = "a brand new passphrase"


async def link_in_mail(api: Api, account: Account, page: str) -> str:
    """The link to `page` in the newest email to the account that has one."""
    for body in reversed(await api.mails_to(account.email)):
        found = re.search(rf"^  (\S+{page}\?token=\S+)$", body, re.MULTILINE)
        if found:
            return found.group(1)
    raise AssertionError(f"no {page} link in the emails to {account.email}")


def path_of(link: str) -> str:
    return link.removeprefix("http://127.0.0.1:8000")


def hidden_token(page: str) -> str:
    found = re.search(r'<input type="hidden" name="token" value="([^"]*)">', page)
    assert found, page
    return html.unescape(found.group(1))


async def is_verified(api: Api, account: Account) -> bool:
    me = await api.client.get(f"{V1}/users/me", headers=account.headers)
    verified: bool = me.json()["is_verified"]
    return verified


async def request_reset(api: Api, account: Account) -> str:
    await api.client.post(f"{V1}/auth/password-reset/request", json={"email": account.email})
    return await link_in_mail(api, account, "/reset-password")


async def test_the_confirmation_link_opens_a_page_whose_button_confirms(api: Api) -> None:
    account = await api.user()
    link = await link_in_mail(api, account, "/verify-email")
    assert link.startswith("http://127.0.0.1:8000/verify-email?token=")

    opened = await api.client.get(path_of(link))
    assert opened.status_code == 200
    assert opened.headers["content-type"].startswith("text/html")
    assert '<form method="post" action="/verify-email">' in opened.text
    assert not await is_verified(api, account)  # opening the link changed nothing

    token = hidden_token(opened.text)
    confirmed = await api.client.post("/verify-email", data={"token": token})
    assert confirmed.status_code == 200
    assert "Your address is confirmed" in confirmed.text
    assert await is_verified(api, account)

    again = await api.client.post("/verify-email", data={"token": token})
    assert again.status_code == 400
    assert "no longer works" in again.text


async def test_the_reset_link_opens_a_form_that_changes_the_password(api: Api) -> None:
    account = await api.user()
    opened = await api.client.get(path_of(await request_reset(api, account)))
    assert opened.status_code == 200
    assert 'autocomplete="new-password"' in opened.text
    token = hidden_token(opened.text)

    form = {"token": token, "new_password": NEW_PASSWORD, "repeat_password": NEW_PASSWORD}
    changed = await api.client.post("/reset-password", data=form)
    assert changed.status_code == 200, changed.text
    assert "Your password is changed" in changed.text

    old_session = await api.client.post(
        f"{V1}/auth/refresh", json={"refresh_token": account.refresh_token}
    )
    assert old_session.status_code == 401
    account.password = NEW_PASSWORD
    await api.login(account)
    assert (await api.client.post("/reset-password", data=form)).status_code == 400


@pytest.mark.parametrize(
    ("new", "repeat", "says"),
    [
        (NEW_PASSWORD, NEW_PASSWORD + "!", "The two passwords differ"),
        ("too short", "too short", "The new password must be at least 10 characters."),
        ("          ", "          ", "The new password must not be blank."),
    ],
)
async def test_a_refused_password_shows_the_form_again_and_keeps_the_link(
    api: Api, new: str, repeat: str, says: str
) -> None:
    account = await api.user()
    token = hidden_token((await api.client.get(path_of(await request_reset(api, account)))).text)
    before = await stored_state(api)

    refused = await api.client.post(
        "/reset-password", data={"token": token, "new_password": new, "repeat_password": repeat}
    )
    assert refused.status_code == 422
    assert html.escape(says) in refused.text
    assert hidden_token(refused.text) == token  # the form is there to try again
    assert await stored_state(api) == before

    form = {"token": token, "new_password": NEW_PASSWORD, "repeat_password": NEW_PASSWORD}
    assert (await api.client.post("/reset-password", data=form)).status_code == 200


@pytest.mark.parametrize("settings_overrides", [{"frontend_url": "https://app.example.com/"}])
async def test_links_point_at_the_frontend_when_one_is_set(api: Api) -> None:
    account = await api.register()
    link = await link_in_mail(api, account, "/verify-email")
    assert link.startswith("https://app.example.com/verify-email?token=")


@pytest.mark.parametrize("page", ["/verify-email", "/reset-password"])
async def test_pages_admit_no_script_and_are_not_stored(api: Api, page: str) -> None:
    response = await api.client.get(page, params={"token": "x"})
    assert response.headers["content-security-policy"] == PAGE_POLICY
    assert "script-src" not in PAGE_POLICY
    assert response.headers["cache-control"] == "no-store"
    assert "<script" not in response.text


@pytest.mark.parametrize("page", ["/verify-email", "/reset-password"])
async def test_a_token_in_the_link_is_never_markup(api: Api, page: str) -> None:
    forged = '"><script>alert(1)</script>'
    response = await api.client.get(page, params={"token": forged})
    assert "<script>" not in response.text
    assert hidden_token(response.text) == forged


BAD_POSTS: list[tuple[str, dict[str, Any], int]] = [
    ("/verify-email", {}, 400),
    ("/verify-email", {"token": ""}, 400),
    ("/verify-email", {"token": "not-a-token-we-issued"}, 400),
    ("/verify-email", {"token": "x" * 5000}, 422),
    ("/reset-password", {"new_password": NEW_PASSWORD, "repeat_password": NEW_PASSWORD}, 400),
    (
        "/reset-password",
        {"token": "forged", "new_password": NEW_PASSWORD, "repeat_password": NEW_PASSWORD},
        400,
    ),
    ("/reset-password", {"token": "forged"}, 422),
    (
        "/reset-password",
        {"token": "forged", "new_password": "nul\x00inside!", "repeat_password": "x"},
        422,
    ),
    (
        "/reset-password",
        {"token": "forged", "new_password": "x" * 200, "repeat_password": "x" * 200},
        422,
    ),
]


@pytest.mark.parametrize(("page", "form", "status"), BAD_POSTS)
async def test_a_bad_form_is_a_4xx_and_changes_nothing(
    api: Api, page: str, form: dict[str, Any], status: int
) -> None:
    account = await api.user()
    await request_reset(api, account)
    before = await stored_state(api)

    response = await api.client.post(page, data=form)

    assert response.status_code == status, response.text
    assert await stored_state(api) == before
    assert await is_verified(api, account) is False
    await api.login(Account(account.id, account.email, account.username, PASSWORD))


@pytest.mark.parametrize("page", ["/verify-email", "/reset-password"])
async def test_a_link_with_a_token_too_long_to_be_ours_is_refused(api: Api, page: str) -> None:
    before = await stored_state(api)
    response = await api.client.get(page, params={"token": "x" * 5000})
    assert response.status_code == 422
    assert response.headers["content-type"].startswith("application/problem+json")
    assert await stored_state(api) == before


@pytest.mark.parametrize("page", ["/verify-email", "/reset-password"])
async def test_a_link_without_its_token_says_so(api: Api, page: str) -> None:
    response = await api.client.get(page)
    assert response.status_code == 400
    assert "This link is incomplete" in response.text


async def test_a_json_post_is_refused_without_a_change(api: Api) -> None:
    before = await stored_state(api)
    response = await api.client.post("/verify-email", json={"token": "x"})
    assert response.status_code == 400
    assert await stored_state(api) == before


@pytest.mark.parametrize(
    "settings_overrides", [{"rate_limit_enabled": True, "auth_rate_limit_per_minute": 2}]
)
async def test_the_pages_share_the_login_s_stricter_quota(api: Api) -> None:
    answers = [
        (await api.client.post("/reset-password", data={"token": "guess"})).status_code
        for _ in range(3)
    ]
    assert answers == [422, 422, 429]
