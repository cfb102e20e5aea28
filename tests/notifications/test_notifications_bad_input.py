"""Bad input at the notification routes: a 4xx problem document, never a 500, and nothing
written (no audit entry, no event in the outbox, no notification, no email).

The shared families (`tests.fixtures.bad_input`) run over the routes listed here; the
tests below them are the notifications' own bounds.
"""

from __future__ import annotations

from promptstack.accounts.models import Role
from tests.fixtures.bad_input import (
    EXTRAS,
    MEGABYTE,
    NIL_UUID,
    Authorization,
    Endpoint,
    JsonBodies,
    Listing,
    Listings,
    PathIds,
    Scene,
    encode,
    stored_state,
)
from tests.fixtures.support import Api, assert_problem

NOTIFICATIONS = "/api/v1/notifications"

BAD_VALUES = [
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

SEND = Endpoint(
    "send",
    "POST",
    "/notifications",
    "admin",
    lambda s: {"user_id": s.target.id, "subject": "Hello", "message": "A message."},
    required=("user_id", "subject", "message"),
    text=("subject", "message"),
    ids=("user_id",),
    bad_values=BAD_VALUES,
)
LIST = Endpoint("list", "GET", "/notifications", "user")
READ = Endpoint("read", "POST", "/notifications/{notification_id}/read", "user")
READ_ALL = Endpoint("read-all", "POST", "/notifications/read-all", "user")


class TestNotificationsBadInput(JsonBodies, PathIds, Listings, Authorization):
    endpoints = (SEND, LIST, READ, READ_ALL)
    listings = (
        Listing(
            "/notifications",
            "user",
            ({"unread": "maybe"}, {"unread": "2"}, {"unread": "x" * 10_000}),
        ),
    )
    extras = (
        *EXTRAS,
        {"sender_id": NIL_UUID},
        {"read_at": "2026-01-01T00:00:00Z"},
        {"user_ids": [NIL_UUID]},
    )

    async def prepare(self, scene: Scene) -> None:
        """One notification delivered to the caller, and one to the target."""
        api = scene.api
        admin = await api.admin()
        for addressee in (scene.target, scene.caller):
            body = {"user_id": addressee.id, "subject": "First", "message": "Delivered before."}
            response = await api.client.post(NOTIFICATIONS, json=body, headers=admin.headers)
            assert response.status_code == 202, response.text
        scene.names["notification_id"] = response.json()["id"]


SUITE = TestNotificationsBadInput()


async def test_the_longest_subject_and_message_are_accepted(api: Api) -> None:
    scene = await SUITE.scene(api, "admin")
    body = {**SEND.valid_body(scene), "subject": "s" * 200, "message": "m" * 10_000}

    response = await SEND.send(scene, encode(body))

    assert response.status_code == 202, response.text
    await api.container.events.relay.drain()
    listed = await api.client.get(NOTIFICATIONS, headers=scene.target.headers)
    [latest, _] = listed.json()["items"]
    assert (len(latest["subject"]), len(latest["message"])) == (200, 10_000)


async def test_a_deactivated_administrator_can_no_longer_send(api: Api) -> None:
    scene = await SUITE.scene(api, "admin")
    boss = await api.admin(Role.SUPER_ADMIN)
    changed = await api.client.patch(
        f"/api/v1/users/{scene.caller.id}", json={"is_active": False}, headers=boss.headers
    )
    assert changed.status_code == 200, changed.text
    before = await stored_state(api)

    response = await SEND.send(scene, SEND.valid_content(scene))

    assert_problem(response, 401)
    assert await stored_state(api) == before
