"""Bad input at every endpoint: a 4xx problem document, never a 500, and nothing written.

Each JSON endpoint is described once (`Endpoint`) with a body it would accept; the tests
then spoil one part of that body at a time. Every refusal is checked against a snapshot
of what an observing super admin sees (all accounts, the audit log, the outbox) and
against the caller's session, which must still work.
"""

from __future__ import annotations

import base64
import itertools
import mailbox
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import httpx
import pytest

from promptstack.accounts.models import Role
from tests.fixtures.bad_input import MALFORMED_BODIES, NOT_UUIDS, encode, label
from tests.fixtures.support import PASSWORD, Account, Api, assert_problem

V1 = "/api/v1"
JSON = {"content-type": "application/json"}
NEW_PASSWORD = "a brand new passphrase"
WELL_FORMED_TOKEN = "x" * 43  # shaped like an emailed token, but never issued
# Huge for any field, yet inside the 1 MiB body limit (beyond it the answer is a 413).
MEGABYTE = "x" * (512 * 1024)
NIL_UUID = "00000000-0000-0000-0000-000000000000"

Caller = Literal["anonymous", "user", "admin"]
_members = itertools.count(1)


# --- the world a request is sent into, and proof that it did not change ------------------


@dataclass
class Scene:
    api: Api
    observer: Account  # a super admin who looks at everything before and after
    caller: Account  # who sends the request (its token is left out for anonymous calls)
    target: Account  # another user: the subject of administrators' calls
    before: dict[str, Any] = field(default_factory=dict)

    async def snapshot(self) -> dict[str, Any]:
        headers = self.observer.headers
        users = await self.api.client.get(f"{V1}/users?limit=100", headers=headers)
        audit = await self.api.client.get(f"{V1}/admin/audit-log?limit=100", headers=headers)
        assert users.status_code == audit.status_code == 200
        return {"users": users.json(), "audit": audit.json(), "mails": await mail_count(self.api)}

    async def assert_untouched(self) -> None:
        """No account, audit entry or email appeared or changed, and no session ended."""
        assert await self.snapshot() == self.before
        me = await self.api.client.get(f"{V1}/users/me", headers=self.caller.headers)
        assert me.status_code == 200, me.text
        refreshed = await self.api.client.post(
            f"{V1}/auth/refresh", json={"refresh_token": self.caller.refresh_token}
        )
        assert refreshed.status_code == 200, refreshed.text


async def mail_count(api: Api) -> int:
    await api.container.relay.drain()
    path = api.settings.maildir_path
    return len(mailbox.Maildir(path, create=False)) if path.exists() else 0


async def member(api: Api) -> Account:
    """A logged-in user whose username is long enough to be tried as a password."""
    return await api.user(username=f"member-{next(_members):04d}")


async def scene_for(api: Api, caller: Caller) -> Scene:
    observer = await api.admin(Role.SUPER_ADMIN)
    acting = await api.admin() if caller == "admin" else await member(api)
    scene = Scene(api, observer, acting, await member(api))
    scene.before = await scene.snapshot()
    return scene


# --- the JSON endpoints, each with a body it accepts ------------------------------------


@dataclass(frozen=True)
class Endpoint:
    name: str
    method: str
    path: str  # may name {target}, the scene's other user
    caller: Caller
    valid_body: Callable[[Scene], dict[str, Any]]
    required: tuple[str, ...] = ()  # fields that may not be left out
    text: tuple[str, ...] = ()  # free or structured text, where control characters are refused
    secrets: tuple[str, ...] = ()  # passwords: any character but NUL and lone surrogates
    nullable: tuple[str, ...] = ()  # fields where null is a meaningful value
    choices: tuple[str, ...] = ()  # fields that take one of a few values

    def __str__(self) -> str:
        return self.name

    @property
    def strings(self) -> tuple[str, ...]:
        return self.text + self.secrets

    @property
    def fields(self) -> tuple[str, ...]:
        return self.strings + self.choices

    def url(self, scene: Scene) -> str:
        return V1 + self.path.format(target=scene.target.id)

    def headers(self, scene: Scene) -> dict[str, str]:
        return {} if self.caller == "anonymous" else scene.caller.headers


REGISTER = Endpoint(
    "register",
    "POST",
    "/auth/register",
    "anonymous",
    lambda s: {"email": "new@example.com", "username": "new-comer-42", "password": PASSWORD},
    required=("email", "username", "password"),
    text=("email", "username", "full_name"),
    secrets=("password",),
    nullable=("full_name",),
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
UPDATE_ME = Endpoint(
    "update-me",
    "PATCH",
    "/users/me",
    "user",
    lambda s: {"full_name": "A New Name"},
    text=("email", "username", "full_name", "preferred_provider"),
    nullable=("full_name", "preferred_provider"),
)
CHANGE_PASSWORD = Endpoint(
    "change-password",
    "POST",
    "/users/me/password",
    "user",
    lambda s: {"current_password": PASSWORD, "new_password": NEW_PASSWORD},
    required=("current_password", "new_password"),
    secrets=("current_password", "new_password"),
)
ADMINISTER = Endpoint(
    "administer-user",
    "PATCH",
    "/users/{target}",
    "admin",
    lambda s: {"tier": "premium"},
    choices=("role", "is_active", "tier"),
)

JSON_ENDPOINTS = [
    REGISTER,
    REFRESH,
    LOGOUT,
    RESET_REQUEST,
    RESET_CONFIRM,
    VERIFY,
    VERIFY_REQUEST,
    UPDATE_ME,
    CHANGE_PASSWORD,
    ADMINISTER,
]


async def send(scene: Scene, endpoint: Endpoint, content: bytes) -> httpx.Response:
    headers = {**JSON, **endpoint.headers(scene)}
    return await scene.api.client.request(
        endpoint.method, endpoint.url(scene), content=content, headers=headers
    )


def cases(build: Callable[[Endpoint], list[tuple[str, Any]]]) -> list[Any]:
    """(endpoint, field, value) for every JSON endpoint, as `build` spoils its fields."""
    return [
        pytest.param(endpoint, name, value, id=f"{endpoint}-{name}-{label(value)}")
        for endpoint in JSON_ENDPOINTS
        for name, value in build(endpoint)
    ]


# --- bodies that are not JSON objects at all ---------------------------------------------


@pytest.mark.input_only
@pytest.mark.parametrize("endpoint", JSON_ENDPOINTS, ids=str)
@pytest.mark.parametrize(("content", "status"), MALFORMED_BODIES)
async def test_a_body_that_is_not_a_json_object_is_refused(
    api: Api, endpoint: Endpoint, content: bytes, status: int
) -> None:
    scene = await scene_for(api, endpoint.caller)

    response = await send(scene, endpoint, content)

    assert_problem(response, status)
    await scene.assert_untouched()


@pytest.mark.input_only
@pytest.mark.parametrize("endpoint", JSON_ENDPOINTS, ids=str)
async def test_json_sent_as_plain_text_is_refused(api: Api, endpoint: Endpoint) -> None:
    scene = await scene_for(api, endpoint.caller)
    headers = {**endpoint.headers(scene), "content-type": "text/plain"}

    response = await api.client.request(
        endpoint.method,
        endpoint.url(scene),
        content=encode(endpoint.valid_body(scene)),
        headers=headers,
    )

    assert_problem(response, 422, "validation_error")
    await scene.assert_untouched()


# --- one field spoiled at a time ---------------------------------------------------------

WRONG_TYPES = [12345, True, ["text"], {"text": "text"}]


def wrong_types(endpoint: Endpoint) -> list[tuple[str, Any]]:
    return [(name, value) for name in endpoint.strings for value in WRONG_TYPES]


def nulls(endpoint: Endpoint) -> list[tuple[str, Any]]:
    return [(name, None) for name in endpoint.strings if name not in endpoint.nullable]


def bad_text(endpoint: Endpoint) -> list[tuple[str, Any]]:
    everywhere = [MEGABYTE, "with\x00nul", "lone\ud800surrogate"]
    not_in_secrets = ["bell\x07", "escape\x1b[31m", "delete\x7f"]
    return [(name, value) for name in endpoint.strings for value in everywhere] + [
        (name, value) for name in endpoint.text for value in not_in_secrets
    ]


@pytest.mark.input_only
@pytest.mark.parametrize(("endpoint", "name", "value"), cases(wrong_types) + cases(nulls))
async def test_a_field_of_the_wrong_type_is_refused(
    api: Api, endpoint: Endpoint, name: str, value: Any
) -> None:
    scene = await scene_for(api, endpoint.caller)
    body = {**endpoint.valid_body(scene), name: value}

    response = await send(scene, endpoint, encode(body))

    problem = assert_problem(response, 422, "validation_error")
    assert name in problem["detail"]
    await scene.assert_untouched()


@pytest.mark.parametrize(("endpoint", "name", "value"), cases(bad_text))
async def test_text_that_no_column_should_hold_is_refused(
    api: Api, endpoint: Endpoint, name: str, value: str
) -> None:
    scene = await scene_for(api, endpoint.caller)
    body = {**endpoint.valid_body(scene), name: value}

    response = await send(scene, endpoint, encode(body))

    assert_problem(response, 422, "validation_error")
    await scene.assert_untouched()


@pytest.mark.input_only
@pytest.mark.parametrize(
    ("endpoint", "name"),
    [
        pytest.param(endpoint, name, id=f"{endpoint}-{name}")
        for endpoint in JSON_ENDPOINTS
        for name in endpoint.required
    ],
)
async def test_a_missing_field_is_refused(api: Api, endpoint: Endpoint, name: str) -> None:
    scene = await scene_for(api, endpoint.caller)
    body = {key: v for key, v in endpoint.valid_body(scene).items() if key != name}

    response = await send(scene, endpoint, encode(body))

    problem = assert_problem(response, 422, "validation_error")
    assert {"loc": ["body", name], "msg": "Field required", "type": "missing"} in problem["errors"]
    await scene.assert_untouched()


EXTRAS = [
    {"role": "super_admin"},
    {"is_verified": True},
    {"credits": 1_000_000},
    {"password_hash": "!"},
    {"\u202eesrever": "right-to-left override in a name"},
]


@pytest.mark.input_only
@pytest.mark.parametrize(
    ("endpoint", "extra"),
    [
        pytest.param(endpoint, extra, id=f"{endpoint}-{label(next(iter(extra)))}")
        for endpoint in JSON_ENDPOINTS
        for extra in EXTRAS
        if not extra.keys() & set(endpoint.fields)
    ],
)
async def test_an_unknown_field_is_refused(
    api: Api, endpoint: Endpoint, extra: dict[str, Any]
) -> None:
    scene = await scene_for(api, endpoint.caller)
    body = {**endpoint.valid_body(scene), **extra}

    response = await send(scene, endpoint, encode(body))

    problem = assert_problem(response, 422, "validation_error")
    assert [error["type"] for error in problem["errors"]] == ["extra_forbidden"]
    await scene.assert_untouched()


async def test_a_lone_surrogate_in_a_field_name_is_refused(api: Api) -> None:
    scene = await scene_for(api, "user")

    response = await send(scene, UPDATE_ME, b'{"\\ud800": "x", "full_name": "Name"}')

    assert_problem(response, 422, "validation_error")
    await scene.assert_untouched()


async def test_a_raw_surrogate_escape_in_full_name_is_refused(api: Api) -> None:
    scene = await scene_for(api, "user")

    response = await send(scene, UPDATE_ME, b'{"full_name": "\\ud800"}')

    assert_problem(response, 422, "validation_error")
    await scene.assert_untouched()


# --- registration ------------------------------------------------------------------------

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


@pytest.mark.parametrize(
    ("name", "value"),
    [
        pytest.param(name, value, id=f"{name}-{label(value)}")
        for name, value in REGISTRATION_PROBLEMS
    ],
)
async def test_registration_refuses_invalid_values_and_creates_no_account(
    api: Api, name: str, value: str
) -> None:
    scene = await scene_for(api, "anonymous")
    body = {**REGISTER.valid_body(scene), "full_name": "New Comer", name: value}

    response = await send(scene, REGISTER, encode(body))

    assert_problem(response, 422, "validation_error")
    await scene.assert_untouched()


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
    scene = await scene_for(api, "user")
    other = scene.target
    body = {
        key: value.format(taken=other.username, taken_email=other.email.upper())
        if isinstance(value, str)
        else value
        for key, value in changes.items()
    }

    response = await send(scene, UPDATE_ME, encode(body))

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
    scene = await scene_for(api, "user")
    new = new.format(username=scene.caller.username, email=scene.caller.email)
    body = {"current_password": current, "new_password": new}

    response = await send(scene, CHANGE_PASSWORD, encode(body))

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
    scene = await scene_for(api, "anonymous")

    response = await send(scene, endpoint, encode(body))

    assert_problem(response, 400, "invalid_token")
    await scene.assert_untouched()


@pytest.mark.parametrize("endpoint", [RESET_CONFIRM, VERIFY], ids=str)
async def test_a_one_time_token_longer_than_any_issued_is_refused(
    api: Api, endpoint: Endpoint
) -> None:
    scene = await scene_for(api, "anonymous")
    body = {**endpoint.valid_body(scene), "token": "x" * 4097}

    response = await send(scene, endpoint, encode(body))

    assert_problem(response, 422, "validation_error")
    await scene.assert_untouched()


@pytest.mark.parametrize("endpoint", [RESET_REQUEST, VERIFY_REQUEST], ids=str)
@pytest.mark.parametrize(
    "email", ["not-an-email", "", "a" * 250 + "@example.com", "user@@example.com"]
)
async def test_a_mail_request_for_an_invalid_address_is_refused(
    api: Api, endpoint: Endpoint, email: str
) -> None:
    scene = await scene_for(api, "anonymous")

    response = await send(scene, endpoint, encode({"email": email}))

    assert_problem(response, 422, "validation_error")
    await scene.assert_untouched()


# --- administering another account -------------------------------------------------------

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


@pytest.mark.parametrize(
    ("name", "value"),
    [pytest.param(n, v, id=f"{n}-{label(v)}") for n, v in ADMIN_FIELD_VALUES],
)
async def test_an_administrator_change_with_a_bad_value_changes_nothing(
    api: Api, name: str, value: Any
) -> None:
    scene = await scene_for(api, "admin")
    body = {**ADMINISTER.valid_body(scene), "is_active": False, name: value}

    response = await send(scene, ADMINISTER, encode(body))

    assert_problem(response, 422, "validation_error")
    await scene.assert_untouched()


@pytest.mark.input_only
@pytest.mark.parametrize("user_id", NOT_UUIDS)
@pytest.mark.parametrize("method", ["GET", "PATCH"])
async def test_a_user_id_that_is_not_a_uuid_is_refused(api: Api, method: str, user_id: str) -> None:
    scene = await scene_for(api, "admin")
    body = encode({"tier": "premium"}) if method == "PATCH" else None

    response = await api.client.request(
        method, f"{V1}/users/{user_id}", content=body, headers={**JSON, **scene.caller.headers}
    )

    problem = assert_problem(response, 422, "validation_error")
    assert problem["errors"][0]["loc"] == ["path", "user_id"]
    await scene.assert_untouched()


@pytest.mark.parametrize("method", ["GET", "PATCH"])
async def test_a_user_id_that_names_nobody_is_not_found(api: Api, method: str) -> None:
    scene = await scene_for(api, "admin")
    body = encode({"tier": "premium"}) if method == "PATCH" else None

    response = await api.client.request(
        method, f"{V1}/users/{NIL_UUID}", content=body, headers={**JSON, **scene.caller.headers}
    )

    assert_problem(response, 404, "not_found")
    await scene.assert_untouched()


# --- lists: ?limit=, ?cursor= and filters ------------------------------------------------


def b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


AT = "2026-01-01T00:00:00+00:00"
PAGINATION_PROBLEMS = [
    pytest.param({"limit": 0}, id="limit-0"),
    pytest.param({"limit": 101}, id="limit-101"),
    pytest.param({"limit": -1}, id="limit-negative"),
    pytest.param({"limit": 10**20}, id="limit-huge"),
    pytest.param({"limit": "ten"}, id="limit-word"),
    pytest.param({"limit": "1.5"}, id="limit-fraction"),
    pytest.param({"limit": "1e3"}, id="limit-exponent"),
    pytest.param({"limit": ""}, id="limit-empty"),
    pytest.param({"cursor": "!!!not base64!!!"}, id="cursor-not-base64"),
    pytest.param({"cursor": "é"}, id="cursor-non-ascii"),
    pytest.param({"cursor": b64(bytes(range(48)))}, id="cursor-random-bytes"),
    pytest.param({"cursor": b64(b"not json")}, id="cursor-not-json"),
    pytest.param({"cursor": b64(b"\xff\xfe")}, id="cursor-invalid-utf8"),
    pytest.param({"cursor": b64(b'{"a": 1}')}, id="cursor-object"),
    pytest.param({"cursor": b64(b"null")}, id="cursor-null"),
    pytest.param({"cursor": b64(b'"ab"')}, id="cursor-string"),
    pytest.param({"cursor": b64(b"[1, 2]")}, id="cursor-numbers"),
    pytest.param({"cursor": b64(b"[{}, {}]")}, id="cursor-objects"),
    pytest.param({"cursor": b64(f'["{AT}"]'.encode())}, id="cursor-one-part"),
    pytest.param({"cursor": b64(f'["{AT}", "{NIL_UUID}", 1]'.encode())}, id="cursor-three"),
    pytest.param({"cursor": b64(f'["{AT}", 5]'.encode())}, id="cursor-id-number"),
    pytest.param({"cursor": b64(f'["{AT}", ["x"]]'.encode())}, id="cursor-id-list"),
    pytest.param({"cursor": b64(f'["{AT}", "not-a-uuid"]'.encode())}, id="cursor-id-word"),
    pytest.param({"cursor": b64(f'[5, "{NIL_UUID}"]'.encode())}, id="cursor-at-number"),
    pytest.param({"cursor": b64(f'["yesterday", "{NIL_UUID}"]'.encode())}, id="cursor-at-word"),
    pytest.param(
        {"cursor": b64(f'["2026-01-01T00:00:00", "{NIL_UUID}"]'.encode())}, id="cursor-naive"
    ),
    pytest.param(
        {"cursor": b64(f'["0001-01-01T00:00:00+01:00", "{NIL_UUID}"]'.encode())},
        id="cursor-before-year-1-in-utc",
    ),
    pytest.param(
        {"cursor": b64(f'["9999-12-31T23:59:59-01:00", "{NIL_UUID}"]'.encode())},
        id="cursor-after-year-9999-in-utc",
    ),
    pytest.param({"cursor": "A" * 513}, id="cursor-too-long"),
]


@pytest.mark.input_only
@pytest.mark.parametrize("path", ["/users", "/admin/audit-log"])
@pytest.mark.parametrize("params", PAGINATION_PROBLEMS)
async def test_a_list_refuses_a_bad_limit_or_cursor(
    api: Api, path: str, params: dict[str, Any]
) -> None:
    admin = await api.admin()

    response = await api.client.get(V1 + path, params=params, headers=admin.headers)

    problem = assert_problem(response, 422, "validation_error")
    assert next(iter(params)) in problem["detail"]


FILTER_PROBLEMS = [
    pytest.param("/users", {"q": "x" * 101}, id="users-q-101-chars"),
    pytest.param("/users", {"q": "x" * 60_000}, id="users-q-60k-chars"),
    pytest.param("/users", {"q": "a\x00b"}, id="users-q-nul"),
    pytest.param("/users", {"q": "a\x1bb"}, id="users-q-escape"),
    pytest.param("/users", {"role": "root"}, id="users-role-unknown"),
    pytest.param("/users", {"role": "ADMIN"}, id="users-role-upper-case"),
    pytest.param("/users", {"role": ""}, id="users-role-empty"),
    pytest.param("/admin/audit-log", {"action": "User.Login"}, id="audit-action-upper"),
    pytest.param("/admin/audit-log", {"action": "a" * 65}, id="audit-action-long"),
    pytest.param("/admin/audit-log", {"action": "a%"}, id="audit-action-wildcard"),
    pytest.param("/admin/audit-log", {"action": "a\x00"}, id="audit-action-nul"),
    pytest.param("/admin/audit-log", {"action": "user.😀"}, id="audit-action-emoji"),
    pytest.param("/admin/audit-log", {"actor_id": "nobody"}, id="audit-actor-word"),
    pytest.param("/admin/audit-log", {"actor_id": "x" * 10_000}, id="audit-actor-10k"),
    pytest.param("/admin/audit-log", {"subject_id": "123"}, id="audit-subject-number"),
    pytest.param("/admin/audit-log", {"subject_id": "%00"}, id="audit-subject-nul"),
]


@pytest.mark.input_only
@pytest.mark.parametrize(("path", "params"), FILTER_PROBLEMS)
async def test_a_list_refuses_a_bad_filter(api: Api, path: str, params: dict[str, str]) -> None:
    admin = await api.admin()

    response = await api.client.get(V1 + path, params=params, headers=admin.headers)

    problem = assert_problem(response, 422, "validation_error")
    assert problem["errors"][0]["loc"] == ["query", next(iter(params))]


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


async def test_unknown_query_parameters_are_ignored(api: Api) -> None:
    admin = await api.admin()

    response = await api.client.get(
        f"{V1}/users?" + "&".join(f"junk{n}=1" for n in range(2000)), headers=admin.headers
    )

    assert response.status_code == 200, response.text
    assert [user["id"] for user in response.json()["items"]] == [admin.id]
