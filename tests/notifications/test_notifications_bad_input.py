"""Bad input at the notification routes: a 4xx problem document, never a 500, and nothing
written (no audit entry, no event in the outbox, no notification, no email)."""

from __future__ import annotations

import json
import mailbox
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import httpx
import jwt
import pytest
from sqlalchemy import func, select

from promptstack.accounts.models import Role
from promptstack.audit.models import AuditEntry
from promptstack.core.clock import FrozenClock
from promptstack.events.models import OutboxMessage
from promptstack.notifications.models import Notification
from tests.fixtures.bad_input import (
    MALFORMED_BODIES,
    NOT_UUIDS,
    OTHER_KEY,
    b64url,
    claims_of,
    encode,
    label,
)
from tests.fixtures.support import Account, Api, assert_problem

NOTIFICATIONS = "/api/v1/notifications"
JSON = {"content-type": "application/json"}
MEGABYTE = "x" * (512 * 1024)  # huge, yet inside the 1 MiB body limit
NIL_UUID = "00000000-0000-0000-0000-000000000000"


@dataclass
class Scene:
    api: Api
    admin: Account
    user: Account  # the addressee, with one notification delivered already
    notification_id: str
    before: dict[str, Any]

    def valid_body(self) -> dict[str, Any]:
        return {"user_id": self.user.id, "subject": "Hello", "message": "A message."}

    async def post(self, content: bytes, headers: dict[str, str] | None = None) -> httpx.Response:
        headers = {**JSON, **(self.admin.headers if headers is None else headers)}
        return await self.api.client.post(NOTIFICATIONS, content=content, headers=headers)

    async def assert_untouched(self) -> None:
        assert await snapshot(self.api) == self.before


async def snapshot(api: Api) -> dict[str, Any]:
    """What a refused request must leave as it was, read from the database itself."""
    await api.container.relay.drain()
    async with api.container.uow(read_only=True) as uow:
        session = uow.session
        audit = (await session.scalars(select(AuditEntry.id).order_by(AuditEntry.id))).all()
        outbox = await session.scalar(select(func.count()).select_from(OutboxMessage))
        rows = (
            await session.execute(select(Notification.id, Notification.read_at).order_by("id"))
        ).all()
    path = api.settings.maildir_path
    mails = len(mailbox.Maildir(path, create=False)) if path.exists() else 0
    return {"audit": list(audit), "outbox": outbox, "notifications": rows, "mails": mails}


async def scene_for(api: Api) -> Scene:
    admin, user = await api.admin(), await api.user()
    body = {"user_id": user.id, "subject": "First", "message": "Delivered before the test."}
    response = await api.client.post(NOTIFICATIONS, json=body, headers=admin.headers)
    assert response.status_code == 202, response.text
    return Scene(api, admin, user, response.json()["id"], await snapshot(api))


# --- bodies that are not JSON objects ------------------------------------------------------


@pytest.mark.input_only
@pytest.mark.parametrize(("content", "status"), MALFORMED_BODIES)
async def test_a_body_that_is_not_a_json_object_is_refused(
    api: Api, content: bytes, status: int
) -> None:
    scene = await scene_for(api)

    response = await scene.post(content)

    assert_problem(response, status)
    await scene.assert_untouched()


@pytest.mark.input_only
async def test_json_sent_as_plain_text_is_refused(api: Api) -> None:
    scene = await scene_for(api)
    headers = {**scene.admin.headers, "content-type": "text/plain"}

    response = await api.client.post(
        NOTIFICATIONS, content=encode(scene.valid_body()), headers=headers
    )

    assert_problem(response, 422, "validation_error")
    await scene.assert_untouched()


# --- one field spoiled at a time -----------------------------------------------------------

FIELDS = ("user_id", "subject", "message")
WRONG_TYPES = [12345, 1.5, True, None, ["text"], {"text": "text"}]


@pytest.mark.input_only
@pytest.mark.parametrize("name", FIELDS)
@pytest.mark.parametrize("value", WRONG_TYPES, ids=label)
async def test_a_field_of_the_wrong_type_is_refused(api: Api, name: str, value: Any) -> None:
    scene = await scene_for(api)

    response = await scene.post(encode({**scene.valid_body(), name: value}))

    problem = assert_problem(response, 422, "validation_error")
    assert name in problem["detail"]
    await scene.assert_untouched()


@pytest.mark.input_only
@pytest.mark.parametrize("name", FIELDS)
async def test_a_missing_field_is_refused(api: Api, name: str) -> None:
    scene = await scene_for(api)
    body = {key: value for key, value in scene.valid_body().items() if key != name}

    response = await scene.post(encode(body))

    problem = assert_problem(response, 422, "validation_error")
    assert {"loc": ["body", name], "msg": "Field required", "type": "missing"} in problem["errors"]
    await scene.assert_untouched()


@pytest.mark.input_only
@pytest.mark.parametrize(
    "extra",
    [
        {"sender_id": NIL_UUID},
        {"id": NIL_UUID},
        {"read_at": "2026-01-01T00:00:00Z"},
        {"created_at": "2026-01-01T00:00:00Z"},
        {"user_ids": [NIL_UUID]},
        {"\u202eesrever": "right-to-left override in a name"},
    ],
    ids=lambda extra: label(next(iter(extra))),
)
async def test_an_unknown_field_is_refused(api: Api, extra: dict[str, Any]) -> None:
    scene = await scene_for(api)

    response = await scene.post(encode({**scene.valid_body(), **extra}))

    problem = assert_problem(response, 422, "validation_error")
    assert [error["type"] for error in problem["errors"]] == ["extra_forbidden"]
    await scene.assert_untouched()


BAD_VALUES = [
    ("user_id", "not-a-uuid"),
    ("user_id", ""),
    ("user_id", "00000000-0000-0000-0000-00000000000g"),
    ("user_id", "x" * 10_000),
    ("user_id", "' OR '1'='1"),
    ("subject", ""),
    ("subject", "   "),
    ("subject", "\n\t "),
    ("subject", "x" * 201),
    ("subject", "e\u0301" * 101),  # 202 code points, though 101 characters to the eye
    ("subject", MEGABYTE),
    ("subject", "two\nlines"),
    ("subject", "carriage\rreturn"),
    ("subject", "tab\tbed"),
    ("subject", "next\x85line"),
    ("subject", "line\u2028separator"),
    ("subject", "Bcc: victim@example.com\r\nX: y"),
    ("message", ""),
    ("message", " \n\n\t "),
    ("message", "x" * 10_001),
    ("message", MEGABYTE),
]
EVERYWHERE = ["with\x00nul", "lone\ud800surrogate", "bell\x07", "escape\x1b[31m", "delete\x7f"]


@pytest.mark.parametrize(
    ("name", "value"),
    [pytest.param(n, v, id=f"{n}-{label(v)}") for n, v in BAD_VALUES]
    + [
        pytest.param(n, v, id=f"{n}-{label(v)}") for n in ("subject", "message") for v in EVERYWHERE
    ],
)
async def test_a_bad_value_is_refused(api: Api, name: str, value: str) -> None:
    scene = await scene_for(api)

    response = await scene.post(encode({**scene.valid_body(), name: value}))

    problem = assert_problem(response, 422, "validation_error")
    assert problem["errors"][0]["loc"] == ["body", name]
    await scene.assert_untouched()


async def test_the_longest_subject_and_message_are_accepted(api: Api) -> None:
    scene = await scene_for(api)
    body = {**scene.valid_body(), "subject": "s" * 200, "message": "m" * 10_000}

    response = await scene.post(encode(body))

    assert response.status_code == 202, response.text
    await api.container.relay.drain()
    [latest, _] = (await api.client.get(NOTIFICATIONS, headers=scene.user.headers)).json()["items"]
    assert (len(latest["subject"]), len(latest["message"])) == (200, 10_000)


# --- ids in paths, and the list's query -----------------------------------------------------


@pytest.mark.input_only
@pytest.mark.parametrize("notification_id", NOT_UUIDS)
async def test_a_notification_id_that_is_not_a_uuid_is_refused(
    api: Api, notification_id: str
) -> None:
    scene = await scene_for(api)

    response = await api.client.post(
        f"{NOTIFICATIONS}/{notification_id}/read", headers=scene.user.headers
    )

    problem = assert_problem(response, 422, "validation_error")
    assert problem["errors"][0]["loc"] == ["path", "notification_id"]
    await scene.assert_untouched()


@pytest.mark.input_only
@pytest.mark.parametrize(
    "params",
    [
        pytest.param({"unread": "maybe"}, id="unread-word"),
        pytest.param({"unread": "2"}, id="unread-number"),
        pytest.param({"unread": "x" * 10_000}, id="unread-10k"),
        pytest.param({"limit": 0}, id="limit-0"),
        pytest.param({"limit": 101}, id="limit-101"),
        pytest.param({"limit": "ten"}, id="limit-word"),
        pytest.param({"cursor": "!!!not base64!!!"}, id="cursor-not-base64"),
        pytest.param({"cursor": "A" * 513}, id="cursor-too-long"),
    ],
)
async def test_the_list_refuses_a_bad_query(api: Api, params: dict[str, Any]) -> None:
    scene = await scene_for(api)

    response = await api.client.get(NOTIFICATIONS, params=params, headers=scene.user.headers)

    problem = assert_problem(response, 422, "validation_error")
    assert next(iter(params)) in problem["detail"]


# --- tokens that must not work ----------------------------------------------------------


def forged_tokens(api: Api, admin: Account, user: Account) -> dict[str, str]:
    """Tokens a forger might try, each wrong in one way; most claim to be the admin."""
    token = admin.access_token
    header, _, signature = user.access_token.split(".")
    as_admin = {**claims_of(user.access_token), "sub": admin.id}
    none_header = b64url(json.dumps({"alg": "none", "typ": "JWT"}).encode())
    return {
        "signed-with-another-key": jwt.encode(claims_of(token), OTHER_KEY, "HS256"),
        "alg-none": f"{none_header}.{b64url(json.dumps(claims_of(token)).encode())}.",
        "user-token-edited-into-admin": f"{header}.{b64url(json.dumps(as_admin).encode())}"
        f".{signature}",
        "signature-removed": token.rsplit(".", 1)[0] + ".",
        "expired-but-freshly-signed": jwt.encode(
            {**claims_of(token), "exp": claims_of(token)["iat"] - 1},
            api.settings.secret_key.get_secret_value(),
            "HS256",
        ),
        "refresh-token-as-access": admin.refresh_token,
        "garbage": "not.a.token",
        "huge": "x" * 5000,
    }


async def requests_with(scene: Scene, token: str) -> list[tuple[str, httpx.Response]]:
    """(route, answer) for a call of every notification route with `token`."""
    headers = {"Authorization": f"Bearer {token}"}
    read = f"{NOTIFICATIONS}/{scene.notification_id}/read"
    client = scene.api.client
    return [
        ("send", await scene.post(encode(scene.valid_body()), headers)),
        ("list", await client.get(NOTIFICATIONS, headers=headers)),
        ("read", await client.post(read, headers=headers)),
        ("read-all", await client.post(f"{NOTIFICATIONS}/read-all", headers=headers)),
    ]


async def test_forged_tokens_are_refused_everywhere(api: Api) -> None:
    scene = await scene_for(api)

    for name, token in forged_tokens(api, scene.admin, scene.user).items():
        for route, response in await requests_with(scene, token):
            problem = assert_problem(response, 401, "not_authenticated")
            assert response.headers["www-authenticate"] == "Bearer", (name, route, problem)
    await scene.assert_untouched()


async def test_expired_tokens_are_refused_everywhere(api: Api, clock: FrozenClock) -> None:
    scene = await scene_for(api)
    clock.advance(timedelta(minutes=api.settings.access_token_expire_minutes, seconds=1))

    for token in (scene.admin.access_token, scene.user.access_token):
        for _route, response in await requests_with(scene, token):
            assert_problem(response, 401, "not_authenticated")
    await scene.assert_untouched()


async def test_a_deactivated_administrator_can_no_longer_send(api: Api) -> None:
    scene = await scene_for(api)
    boss = await api.admin(Role.SUPER_ADMIN)
    changed = await api.client.patch(
        f"/api/v1/users/{scene.admin.id}", json={"is_active": False}, headers=boss.headers
    )
    assert changed.status_code == 200, changed.text
    scene.before = await snapshot(api)

    response = await scene.post(encode(scene.valid_body()))

    assert_problem(response, 401)
    await scene.assert_untouched()
