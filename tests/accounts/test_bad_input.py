"""Bad input at the accounts endpoints: a 4xx problem document, never a 500, and nothing
written.

The shared families (`tests.fixtures.bad_input`) run over the endpoints listed here; the
tests below them are the accounts' own rules: registration, login forms, profiles,
passwords and one-time tokens.
"""

from __future__ import annotations

import itertools
from typing import Any

import pytest

from tests.fixtures.bad_input import (
    MEGABYTE,
    Authorization,
    Endpoint,
    JsonBodies,
    Listing,
    Listings,
    PathIds,
    Scene,
    encode,
    label,
)
from tests.fixtures.support import PASSWORD, Account, Api, assert_problem

V1 = "/api/v1"
NEW_PASSWORD = "a brand new passphrase"
WELL_FORMED_TOKEN = "x" * 43  # shaped like an emailed token, but never issued

_members = itertools.count(1)


async def member(api: Api) -> Account:
    """A logged-in user whose username is long enough to be tried as a password."""
    return await api.user(username=f"member-{next(_members):04d}")


REGISTRATION_PROBLEMS = [
    ("email", "not-an-email"),
    ("email", "@example.com"),
    ("email", "user@"),
    ("email", "user@@example.com"),
    ("email", "two words@example.com"),
    ("email", "user@no-dot"),
    ("email", "a\u202eb@example.com"),
    ("email", ""),
    ("email", "a" * 250 + "@example.com"),
    ("username", "ab"),
    ("username", "a" * 33),
    ("username", "-leading-dash"),
    ("username", "with space"),
    ("username", "emoji\U0001f600"),
    ("username", "\u0430dmin"),  # a Cyrillic letter passing for Latin
    ("username", ""),
    ("password", ""),
    ("password", "short"),
    ("password", " " * 12),
    ("password", "x" * 129),
    ("password", "new-comer-42"),  # the username
    ("password", "NEW-COMER-42"),
    ("password", "new@example.com"),  # the email
    ("full_name", ""),
    ("full_name", "   "),
    ("full_name", "x" * 101),
    ("full_name", "e\u0301" * 51),  # 102 code points, though 51 characters to the eye
    ("full_name", "two\nlines"),
    ("full_name", "carriage\rreturn"),
    ("full_name", "tab\tbed"),
    ("full_name", "next\x85line"),
    ("full_name", "line\u2028separator"),
]

REGISTER = Endpoint(
    "register",
    "POST",
    "/auth/register",
    "anonymous",
    lambda s: {
        "email": "new@example.com",
        "username": "new-comer-42",
        "password": PASSWORD,
        "full_name": "New Comer",
    },
    required=("email", "username", "password"),
    text=("email", "username", "full_name"),
    secrets=("password",),
    nullable=("full_name",),
    bad_values=REGISTRATION_PROBLEMS,
)
REFRESH = Endpoint(
    "refresh",
    "POST",
    "/auth/refresh",
    "anonymous",
    lambda s: {"refresh_token": s.caller.refresh_token},
    required=("refresh_token",),
    text=("refresh_token",),
)
LOGOUT = Endpoint(
    "logout",
    "POST",
    "/auth/logout",
    "user",
    lambda s: {"refresh_token": s.caller.refresh_token},
    required=("refresh_token",),
    text=("refresh_token",),
)
RESET_REQUEST = Endpoint(
    "password-reset-request",
    "POST",
    "/auth/password-reset/request",
    "anonymous",
    lambda s: {"email": s.caller.email},
    required=("email",),
    text=("email",),
)
RESET_CONFIRM = Endpoint(
    "password-reset-confirm",
    "POST",
    "/auth/password-reset/confirm",
    "anonymous",
    lambda s: {"token": WELL_FORMED_TOKEN, "new_password": NEW_PASSWORD},
    required=("token", "new_password"),
    text=("token",),
    secrets=("new_password",),
)
VERIFY = Endpoint(
    "verify-email",
    "POST",
    "/auth/verify-email",
    "anonymous",
    lambda s: {"token": WELL_FORMED_TOKEN},
    required=("token",),
    text=("token",),
)
VERIFY_REQUEST = Endpoint(
    "verify-email-request",
    "POST",
    "/auth/verify-email/request",
    "anonymous",
    lambda s: {"email": s.caller.email},
    required=("email",),
    text=("email",),
)
READ_ME = Endpoint("read-me", "GET", "/users/me", "user")
UPDATE_ME = Endpoint(
    "update-me",
    "PATCH",
    "/users/me",
    "user",
    lambda s: {"full_name": "A New Name"},
    text=("email", "username", "full_name", "preferred_provider"),
    nullable=("full_name", "preferred_provider"),
)
DELETE_ME = Endpoint("delete-me", "DELETE", "/users/me", "user")
CHANGE_PASSWORD = Endpoint(
    "change-password",
    "POST",
    "/users/me/password",
    "user",
    lambda s: {"current_password": PASSWORD, "new_password": NEW_PASSWORD},
    required=("current_password", "new_password"),
    secrets=("current_password", "new_password"),
)
LIST_USERS = Endpoint("list-users", "GET", "/users", "admin")
READ_USER = Endpoint("read-user", "GET", "/users/{user_id}", "admin")
ADMIN_FIELD_VALUES = [
    ("is_active", "yes"),
    ("is_active", "true"),
    ("is_active", "false"),
    ("is_active", 0),
    ("is_active", 1),
    ("is_active", [False]),
    ("is_active", None),
    ("role", "ADMIN"),
    ("role", "root"),
    ("role", ""),
    ("role", 2),
    ("role", ["admin"]),
    ("role", None),
    ("tier", "gold"),
    ("tier", "Premium"),
    ("tier", 1),
    ("tier", {"name": "premium"}),
    ("tier", None),
    ("tier", MEGABYTE),
]

ADMINISTER = Endpoint(
    "administer-user",
    "PATCH",
    "/users/{user_id}",
    "admin",
    # A deactivation in the same body: a refusal must not apply it either.
    lambda s: {"tier": "premium", "is_active": False},
    choices=("role", "is_active", "tier"),
    bad_values=ADMIN_FIELD_VALUES,
)


class TestAccountsBadInput(JsonBodies, PathIds, Listings, Authorization):
    endpoints = (
        REGISTER,
        REFRESH,
        LOGOUT,
        RESET_REQUEST,
        RESET_CONFIRM,
        VERIFY,
        VERIFY_REQUEST,
        READ_ME,
        UPDATE_ME,
        DELETE_ME,
        CHANGE_PASSWORD,
        LIST_USERS,
        READ_USER,
        ADMINISTER,
    )
    listings = (
        Listing(
            "/users",
            "admin",
            (
                {"q": "x" * 101},
                {"q": "x" * 60_000},
                {"q": "a\x00b"},
                {"q": "a\x1bb"},
                {"role": "root"},
                {"role": "ADMIN"},
                {"role": ""},
            ),
        ),
    )

    async def user(self, api: Api) -> Account:
        return await member(api)

    async def prepare(self, scene: Scene) -> None:
        scene.names["user_id"] = scene.target.id


SUITE = TestAccountsBadInput()


async def test_a_lone_surrogate_in_a_field_name_is_refused(api: Api) -> None:
    scene = await SUITE.scene(api, "user")

    response = await UPDATE_ME.send(scene, b'{"\\ud800": "x", "full_name": "Name"}')

    assert_problem(response, 422, "validation_error")
    await scene.assert_untouched()


async def test_a_raw_surrogate_escape_in_full_name_is_refused(api: Api) -> None:
    scene = await SUITE.scene(api, "user")

    response = await UPDATE_ME.send(scene, b'{"full_name": "\\ud800"}')

    assert_problem(response, 422, "validation_error")
    await scene.assert_untouched()


# --- registration ------------------------------------------------------------------------


async def test_every_failing_field_is_reported_at_once_and_by_name(api: Api) -> None:
    body = {"email": "not-an-email", "username": "a", "password": "a", "full_name": " "}

    response = await api.client.post(f"{V1}/auth/register", json=body)

    problem = assert_problem(response, 422, "validation_error")
    fields = [error["loc"] for error in problem["errors"]]
    assert fields == [["body", name] for name in ("email", "username", "password", "full_name")]
    assert problem["detail"] == f"email: {problem['errors'][0]['msg']} (and 3 more)"


async def test_a_password_like_the_username_is_refused_in_plain_words(api: Api) -> None:
    body = {"email": "new@example.com", "username": "new-comer-42", "password": "NEW-COMER-42"}

    response = await api.client.post(f"{V1}/auth/register", json=body)

    problem = assert_problem(response, 422, "validation_error")
    [error] = problem["errors"]
    assert error["loc"] == ["body", "password"]
    assert "username" in error["msg"]
    assert problem["detail"] == f"password: {error['msg']}"


@pytest.mark.parametrize("login", ["new-comer-42", "new@example.com"])
async def test_after_a_refused_registration_the_account_cannot_log_in(api: Api, login: str) -> None:
    body = {"email": "new@example.com", "username": "new-comer-42", "password": PASSWORD}
    refused = await api.client.post(f"{V1}/auth/register", json={**body, "role": "admin"})
    assert_problem(refused, 422)

    response = await api.client.post(
        f"{V1}/auth/login", data={"username": login, "password": PASSWORD}
    )

    assert_problem(response, 401, "invalid_credentials")


FREE_TEXT_NAMES = [
    pytest.param("Zoë 😀🚀👩🏽‍💻", id="emoji"),
    pytest.param("שלום עולם", id="hebrew-rtl"),
    pytest.param("مرحبا بالعالم", id="arabic-rtl"),
    pytest.param("Ame\u0301lie Zo\u0308e", id="combining-marks"),
    pytest.param("山田 太郎", id="cjk"),
    pytest.param("a\u200db\u200cc", id="zero-width-joiners"),
    pytest.param("x" * 100, id="100-chars"),
]


@pytest.mark.parametrize("full_name", FREE_TEXT_NAMES)
async def test_registration_keeps_any_unicode_name_as_sent(api: Api, full_name: str) -> None:
    account = await api.user(full_name=full_name)

    me = await api.client.get(f"{V1}/users/me", headers=account.headers)

    assert me.json()["full_name"] == full_name


# --- login (an HTML-style form) ----------------------------------------------------------

LOGIN_PROBLEMS = [
    pytest.param({"password": PASSWORD}, 422, id="no-username"),
    pytest.param({"username": "someone"}, 422, id="no-password"),
    pytest.param({"username": "", "password": PASSWORD}, 422, id="empty-username"),
    pytest.param({"username": "someone", "password": ""}, 422, id="empty-password"),
    pytest.param({"username": "u" * 321, "password": PASSWORD}, 422, id="long-username"),
    pytest.param({"username": "someone", "password": "p" * 129}, 422, id="long-password"),
    pytest.param({"username": "someone", "password": MEGABYTE[:1_000_000]}, 422, id="huge-pwd"),
    pytest.param({"username": MEGABYTE[:1_000_000], "password": PASSWORD}, 422, id="huge-name"),
    pytest.param({"username": "some\x00one", "password": PASSWORD}, 422, id="nul-username"),
    pytest.param({"username": "some\x1bone", "password": PASSWORD}, 422, id="esc-username"),
    pytest.param({"username": "someone", "password": "pass\x00word!!"}, 422, id="nul-password"),
    pytest.param({"username": "someone", "password": "x" * 2_000_000}, 413, id="over-body-limit"),
]


@pytest.mark.parametrize(("form", "status"), LOGIN_PROBLEMS)
async def test_login_refuses_a_malformed_form(api: Api, form: dict[str, str], status: int) -> None:
    response = await api.client.post(f"{V1}/auth/login", data=form)

    assert_problem(response, status)


@pytest.mark.input_only
@pytest.mark.parametrize(
    ("content", "content_type", "status"),
    [
        pytest.param(b'{"username": "a", "password": "b"}', "application/json", 422, id="json"),
        pytest.param(b"", "application/x-www-form-urlencoded", 422, id="empty-form"),
        pytest.param(b"username&password", "application/x-www-form-urlencoded", 422, id="blank"),
        pytest.param(b"\xff\xfe\x00", "application/x-www-form-urlencoded", 422, id="binary"),
        pytest.param(b"anything", "multipart/form-data", 400, id="multipart-without-boundary"),
    ],
)
async def test_login_refuses_a_body_that_is_not_a_form(
    api: Api, content: bytes, content_type: str, status: int
) -> None:
    response = await api.client.post(
        f"{V1}/auth/login", content=content, headers={"content-type": content_type}
    )

    assert_problem(response, status)


@pytest.mark.parametrize(
    "username",
    [
        pytest.param(b"%ED%A0%80", id="encoded-surrogate"),
        pytest.param(b"%FF%FE", id="encoded-invalid-utf8"),
        pytest.param(b"\xff\xfe", id="raw-invalid-utf8"),
        pytest.param("😀".encode(), id="emoji"),
    ],
)
async def test_login_with_an_odd_unknown_name_is_just_a_failed_login(
    api: Api, username: bytes
) -> None:
    response = await api.client.post(
        f"{V1}/auth/login",
        content=b"username=" + username + b"&password=whatever+it+is",
        headers={"content-type": "application/x-www-form-urlencoded"},
    )

    assert_problem(response, 401, "invalid_credentials")


async def test_refused_login_forms_do_not_count_towards_the_lockout(api: Api) -> None:
    account = await api.register()
    for _ in range(api.settings.login_max_failures_per_account + 1):
        refused = await api.client.post(
            f"{V1}/auth/login", data={"username": account.username, "password": "p" * 129}
        )
        assert_problem(refused, 422)

    response = await api.client.post(
        f"{V1}/auth/login", data={"username": account.username, "password": PASSWORD}
    )

    assert response.status_code == 200, response.text


# --- changing one's own profile ----------------------------------------------------------

PROFILE_PROBLEMS = [
    ({"email": None}, 422),
    ({"username": None}, 422),
    ({"email": "not-an-email"}, 422),
    ({"username": "no spaces allowed"}, 422),
    ({"preferred_provider": "chatgpt"}, 422),
    ({"preferred_provider": "OPENAI"}, 422),
    ({"full_name": "   "}, 422),
    ({"full_name": "x" * 101}, 422),
    ({"full_name": "two\nlines"}, 422),
    ({"full_name": "Fine Name", "email": "not-an-email"}, 422),
    ({"full_name": "Fine Name", "preferred_provider": "nope"}, 422),
    ({"full_name": "Fine Name", "role": "admin"}, 422),
    ({"full_name": "Fine Name", "username": "{taken}"}, 409),
    ({"full_name": "Fine Name", "email": "{taken_email}"}, 409),
    ({"email": "new@example.com", "username": "{taken}"}, 409),
]


@pytest.mark.parametrize(
    ("changes", "status"),
    [
        pytest.param(c, s, id=",".join(f"{k}={label(v)}" for k, v in c.items()))
        for c, s in PROFILE_PROBLEMS
    ],
)
async def test_a_refused_profile_change_changes_nothing(
    api: Api, changes: dict[str, Any], status: int
) -> None:
    scene = await SUITE.scene(api, "user")
    other = scene.target
    body = {
        key: value.format(taken=other.username, taken_email=other.email.upper())
        if isinstance(value, str)
        else value
        for key, value in changes.items()
    }

    response = await UPDATE_ME.send(scene, encode(body))

    assert_problem(response, status)
    await scene.assert_untouched()


@pytest.mark.parametrize("full_name", FREE_TEXT_NAMES)
async def test_a_profile_keeps_any_unicode_name_as_sent(api: Api, full_name: str) -> None:
    account = await api.user()

    response = await api.client.patch(
        f"{V1}/users/me", json={"full_name": full_name}, headers=account.headers
    )

    assert response.status_code == 200, response.text
    me = await api.client.get(f"{V1}/users/me", headers=account.headers)
    assert me.json()["full_name"] == full_name


@pytest.mark.parametrize("name", ["full_name", "preferred_provider"])
async def test_null_clears_an_optional_profile_field(api: Api, name: str) -> None:
    account = await api.user(full_name="Someone")
    set_first = {"full_name": "Someone", "preferred_provider": "anthropic"}
    before = await api.client.patch(f"{V1}/users/me", json=set_first, headers=account.headers)
    assert before.json()[name] is not None

    response = await api.client.patch(f"{V1}/users/me", json={name: None}, headers=account.headers)

    assert response.status_code == 200, response.text
    assert response.json()[name] is None


# --- changing one's password -------------------------------------------------------------

PASSWORD_CHANGE_PROBLEMS = [
    pytest.param("wrong current password", NEW_PASSWORD, 401, id="wrong-current"),
    pytest.param(PASSWORD, "short", 422, id="too-short"),
    pytest.param(PASSWORD, " " * 12, 422, id="blank"),
    pytest.param(PASSWORD, "x" * 129, 422, id="too-long"),
    pytest.param(PASSWORD, "{username}", 422, id="the-username"),
    pytest.param(PASSWORD, "{email}", 422, id="the-email"),
]


@pytest.mark.parametrize(("current", "new", "status"), PASSWORD_CHANGE_PROBLEMS)
async def test_a_refused_password_change_keeps_password_and_sessions(
    api: Api, current: str, new: str, status: int
) -> None:
    scene = await SUITE.scene(api, "user")
    new = new.format(username=scene.caller.username, email=scene.caller.email)
    body = {"current_password": current, "new_password": new}

    response = await CHANGE_PASSWORD.send(scene, encode(body))

    assert_problem(response, status)
    await scene.assert_untouched()
    await api.login(scene.caller)  # answers 200: the old password still works


# --- password reset and email verification with real tokens ------------------------------


@pytest.mark.parametrize("new_password", ["short", "{username}", " " * 12])
async def test_a_reset_refused_for_its_password_leaves_the_token_usable(
    api: Api, new_password: str
) -> None:
    account = await member(api)
    await api.client.post(f"{V1}/auth/password-reset/request", json={"email": account.email})
    token = await api.token_from_mail(account.email, "reset the password")
    weak = new_password.format(username=account.username)

    refused = await api.client.post(
        f"{V1}/auth/password-reset/confirm", json={"token": token, "new_password": weak}
    )

    assert_problem(refused, 422, "validation_error")
    await api.login(account)  # answers 200: the old password still works
    accepted = await api.client.post(
        f"{V1}/auth/password-reset/confirm", json={"token": token, "new_password": NEW_PASSWORD}
    )
    assert accepted.status_code == 204, accepted.text


@pytest.mark.parametrize(
    ("endpoint", "body"),
    [
        pytest.param(RESET_CONFIRM, {"token": "no such token", "new_password": NEW_PASSWORD}),
        pytest.param(RESET_CONFIRM, {"token": "x" * 4096, "new_password": NEW_PASSWORD}),
        pytest.param(VERIFY, {"token": "no such token"}),
        pytest.param(VERIFY, {"token": "x" * 4096}),
        pytest.param(VERIFY, {"token": "שלום😀"}),
    ],
    ids=lambda value: str(value) if isinstance(value, Endpoint) else "",
)
async def test_an_unknown_one_time_token_is_refused(
    api: Api, endpoint: Endpoint, body: dict[str, str]
) -> None:
    scene = await SUITE.scene(api, "anonymous")

    response = await endpoint.send(scene, encode(body))

    assert_problem(response, 400, "invalid_token")
    await scene.assert_untouched()


@pytest.mark.parametrize("endpoint", [RESET_CONFIRM, VERIFY], ids=str)
async def test_a_one_time_token_longer_than_any_issued_is_refused(
    api: Api, endpoint: Endpoint
) -> None:
    scene = await SUITE.scene(api, "anonymous")
    body = {**endpoint.valid_body(scene), "token": "x" * 4097}

    response = await endpoint.send(scene, encode(body))

    assert_problem(response, 422, "validation_error")
    await scene.assert_untouched()


@pytest.mark.parametrize("endpoint", [RESET_REQUEST, VERIFY_REQUEST], ids=str)
@pytest.mark.parametrize(
    "email", ["not-an-email", "", "a" * 250 + "@example.com", "user@@example.com"]
)
async def test_a_mail_request_for_an_invalid_address_is_refused(
    api: Api, endpoint: Endpoint, email: str
) -> None:
    scene = await SUITE.scene(api, "anonymous")

    response = await endpoint.send(scene, encode({"email": email}))

    assert_problem(response, 422, "validation_error")
    await scene.assert_untouched()


# --- administering another account -------------------------------------------------------


# --- lists ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("שלום", id="hebrew-rtl"),
        pytest.param("😀🚀", id="emoji"),
        pytest.param("Ame\u0301lie", id="combining-marks"),
        pytest.param("%_\\", id="like-wildcards"),
    ],
)
async def test_a_search_for_unicode_text_finds_it(api: Api, text: str) -> None:
    admin = await api.admin()
    wanted = await api.register(full_name=f"Name {text} Here")
    await api.register(full_name="Somebody Else")

    response = await api.client.get(f"{V1}/users", params={"q": text}, headers=admin.headers)

    assert response.status_code == 200, response.text
    assert [user["id"] for user in response.json()["items"]] == [wanted.id]
