"""Addresses that look alike or fold alike: one mailbox, one account.

Non-ASCII characters are written as escapes, so that no look-alike hides in this file.
"""

from __future__ import annotations

import httpx
import pytest

from tests.fixtures.support import PASSWORD, Api, assert_problem

REGISTER = "/api/v1/auth/register"
LOGIN = "/api/v1/auth/login"
RESET = "/api/v1/auth/password-reset/request"
CONFIRM_RESET = "/api/v1/auth/password-reset/confirm"

FULLWIDTH_SAM = "\uff53\uff41\uff4d@example.com"
LONG_S_SAM = "\u017fam@example.com"
CYRILLIC_DOMAIN = "a@\u043f\u0440\u0438\u043c\u0435\u0440.\u0440\u0444"
CYRILLIC_DOMAIN_IN_CAPITALS = "a@\u041f\u0420\u0418\u041c\u0415\u0420.\u0420\u0424"
SHARP_S_DOMAIN = "ulla@stra\u00dfe.de"


async def register(api: Api, email: str, username: str) -> httpx.Response:
    return await api.client.post(
        REGISTER, json={"email": email, "username": username, "password": PASSWORD}
    )


async def account_opened_by(api: Api, login_name: str, password: str = PASSWORD) -> str:
    """The id of the account that logging in as `login_name` opens."""
    response = await api.client.post(LOGIN, data={"username": login_name, "password": password})
    assert response.status_code == 200, response.text
    token = response.json()["access_token"]
    me = await api.client.get("/api/v1/users/me", headers={"Authorization": f"Bearer {token}"})
    return str(me.json()["id"])


@pytest.mark.parametrize(
    ("plain", "twin"),
    [
        pytest.param("sam@example.com", FULLWIDTH_SAM, id="fullwidth"),
        pytest.param("sam@example.com", LONG_S_SAM, id="long-s"),
        pytest.param("sam@example.com", "sam\uff20example\uff0ecom", id="fullwidth-at-and-dot"),
        pytest.param("kate@example.com", "\u212aate@example.com", id="kelvin-sign"),
        pytest.param(CYRILLIC_DOMAIN, CYRILLIC_DOMAIN_IN_CAPITALS, id="cyrillic-domain-capitals"),
        pytest.param(CYRILLIC_DOMAIN, "a@xn--e1afmkfd.xn--p1ai", id="cyrillic-domain-punycode"),
    ],
)
async def test_a_twin_of_a_registered_address_is_a_conflict(
    api: Api, plain: str, twin: str
) -> None:
    await api.register(email=plain, username="first")

    response = await register(api, twin, "second")

    assert_problem(response, 409, "conflict")


async def test_a_long_s_registers_the_plain_address_itself(api: Api) -> None:
    """Typing the long s no longer squats the plain address: the account is the plain
    address's, and only the plain mailbox receives its mail."""
    account = await api.register(email=LONG_S_SAM, username="longs")

    assert account.email == "sam@example.com"
    assert len(await api.mails_to("sam@example.com")) == 2
    assert await api.mails_to(LONG_S_SAM) == []
    assert await account_opened_by(api, "sam@example.com") == account.id


async def test_the_plain_mailbox_recovers_an_account_registered_with_a_look_alike(
    api: Api,
) -> None:
    squatter = await api.register(email=FULLWIDTH_SAM, username="squatter")
    await api.client.post(RESET, json={"email": "sam@example.com"})
    token = await api.token_from_mail("sam@example.com", "reset the password")

    response = await api.client.post(
        CONFIRM_RESET, json={"token": token, "new_password": "the owner's own passphrase"}
    )

    assert response.status_code == 204
    opened = await account_opened_by(api, "sam@example.com", "the owner's own passphrase")
    assert opened == squatter.id


@pytest.mark.parametrize(
    "login_name",
    [
        pytest.param(FULLWIDTH_SAM, id="fullwidth"),
        pytest.param(LONG_S_SAM, id="long-s"),
        pytest.param("SAM@EXAMPLE.COM", id="capitals"),
    ],
)
async def test_login_with_a_variant_opens_the_plain_address_account(
    api: Api, login_name: str
) -> None:
    account = await api.register(email="sam@example.com", username="plainsam")
    await api.register(email="other@example.com", username="sam")

    assert await account_opened_by(api, login_name) == account.id


async def test_login_with_a_cyrillic_domain_in_any_form_opens_its_account(api: Api) -> None:
    account = await api.register(email=CYRILLIC_DOMAIN)

    assert account.email == CYRILLIC_DOMAIN
    for login_name in (CYRILLIC_DOMAIN, CYRILLIC_DOMAIN_IN_CAPITALS, "a@xn--e1afmkfd.xn--p1ai"):
        assert await account_opened_by(api, login_name) == account.id


async def test_sharp_s_and_ss_domains_are_two_accounts(api: Api) -> None:
    """Casefolding would merge them, but they are two domains that two people may own."""
    sharp = await api.register(email=SHARP_S_DOMAIN, username="sharp")
    plain = await api.register(email="ulla@strasse.de", username="plain")

    assert await account_opened_by(api, SHARP_S_DOMAIN) == sharp.id
    assert await account_opened_by(api, "ulla@strasse.de") == plain.id


async def test_changing_to_a_twin_of_another_accounts_address_is_a_conflict(api: Api) -> None:
    await api.register(email="sam@example.com")
    other = await api.user()

    response = await api.client.patch(
        "/api/v1/users/me", json={"email": LONG_S_SAM}, headers=other.headers
    )

    assert_problem(response, 409, "conflict")


@pytest.mark.input_only
@pytest.mark.parametrize(
    ("email", "rule"),
    [
        pytest.param(
            "p\u0430ypal@example.com",
            "must have only ASCII letters, digits and punctuation before the @",
            id="cyrillic-a-in-local-part",
        ),
        pytest.param(
            "stra\u00dfe@example.com",
            "must have only ASCII letters, digits and punctuation before the @",
            id="sharp-s-in-local-part",
        ),
        pytest.param(
            "a@g\u03bfogle.com", "must be written in one script", id="greek-omicron-in-domain"
        ),
        pytest.param(
            "a@pay\u0440al.com", "must be written in one script", id="cyrillic-er-in-domain"
        ),
        pytest.param("a@xn--gogle-rce.com", "must be written in one script", id="punycode"),
    ],
)
async def test_a_look_alike_address_is_refused_naming_the_rule(
    api: Api, email: str, rule: str
) -> None:
    response = await register(api, email, "lookalike")

    body = assert_problem(response, 422, "validation_error")
    error = body["errors"][0]
    assert error["loc"] == ["body", "email"]
    assert rule in error["msg"]
    assert rule in body["detail"]
