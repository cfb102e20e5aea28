"""Notifications: administrators send them, the background delivers an in-app message and an
email once each, and every user reads and marks only their own."""

from __future__ import annotations

import mailbox
import uuid
from datetime import timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from promptstack.accounts.models import Role
from promptstack.audit.models import AuditEntry
from promptstack.core.clock import FrozenClock
from promptstack.core.envelope import Envelope
from promptstack.core.errors import Forbidden
from promptstack.events.models import OutboxMessage
from promptstack.events.outbox import OutboxRepository
from promptstack.notifications.events import NotificationRequested
from promptstack.notifications.models import Notification
from tests.fixtures.support import Account, Api, assert_problem

NOTIFICATIONS = "/api/v1/notifications"
NIL_UUID = "00000000-0000-0000-0000-000000000000"


async def send(
    api: Api, sender: Account, to: str, subject: str = "Maintenance", message: str = "Tonight."
) -> httpx.Response:
    body = {"user_id": to, "subject": subject, "message": message}
    return await api.client.post(NOTIFICATIONS, json=body, headers=sender.headers)


async def sent(api: Api, sender: Account, to: str, subject: str, message: str = "Hi.") -> str:
    response = await send(api, sender, to, subject, message)
    assert response.status_code == 202, response.text
    return str(response.json()["id"])


async def inbox(api: Api, account: Account, **params: Any) -> list[dict[str, Any]]:
    response = await api.client.get(NOTIFICATIONS, params=params, headers=account.headers)
    assert response.status_code == 200, response.text
    items: list[dict[str, Any]] = response.json()["items"]
    return items


async def audit_of(api: Api, action: str) -> list[AuditEntry]:
    async with api.container.uow(read_only=True) as uow:
        query = select(AuditEntry).where(AuditEntry.action == action)
        return list((await uow.session.scalars(query)).all())


async def envelopes(api: Api, type_: str = "notification.requested") -> list[Envelope]:
    async with api.container.uow(read_only=True) as uow:
        query = (
            select(OutboxMessage)
            .where(OutboxMessage.type == type_)
            .order_by(OutboxMessage.position)
        )
        return [row.envelope() for row in (await uow.session.scalars(query)).all()]


async def stored_notifications(api: Api) -> int:
    async with api.container.uow(read_only=True) as uow:
        return int(await uow.session.scalar(select(func.count()).select_from(Notification)) or 0)


async def mails_about(api: Api, address: str, text: str) -> list[str]:
    return [body for body in await api.mails_to(address) if text in body]


def subjects_to(api: Api, address: str) -> list[str]:
    path = api.settings.maildir_path
    if not path.exists():
        return []
    box = mailbox.Maildir(path, create=False)
    return [str(message["Subject"]) for message in box if message["To"] == address]


# --- sending and delivery ----------------------------------------------------------------


async def test_sending_answers_at_once_and_delivers_in_the_background(api: Api) -> None:
    admin, user = await api.admin(), await api.user(full_name="Ada Lovelace")

    response = await send(api, admin, user.id, "Scheduled maintenance", "Down at 22:00.\nSorry!")

    assert response.status_code == 202, response.text
    body = response.json()
    assert body["status"] == "queued"
    # The request is audited in its own transaction; nothing is delivered yet.
    [entry] = await audit_of(api, "notification.sent")
    assert (str(entry.actor_id), str(entry.subject_id)) == (admin.id, user.id)
    assert entry.details == {"notification_id": body["id"], "subject": "Scheduled maintenance"}
    assert await inbox(api, user) == []

    await api.container.events.relay.drain()

    [notification] = await inbox(api, user)
    assert notification["id"] == body["id"]
    assert notification["subject"] == "Scheduled maintenance"
    assert notification["message"] == "Down at 22:00.\nSorry!"
    assert notification["sender_id"] == admin.id
    assert notification["read_at"] is None
    assert notification["created_at"]
    [mail] = await mails_about(api, user.email, "Down at 22:00.")
    assert "Hello Ada Lovelace" in mail
    assert "Scheduled maintenance" in subjects_to(api, user.email)


async def test_a_super_admin_may_send_and_an_admin_may_write_to_itself(api: Api) -> None:
    boss = await api.admin(Role.SUPER_ADMIN)
    admin = await api.admin()

    await sent(api, boss, admin.id, "From the boss")
    await sent(api, admin, admin.id, "Note to self")
    await api.container.events.relay.drain()

    assert [n["subject"] for n in await inbox(api, admin)] == ["Note to self", "From the boss"]


async def test_text_is_trimmed_of_surrounding_whitespace(api: Api) -> None:
    admin, user = await api.admin(), await api.user()

    await sent(api, admin, user.id, "  Padded subject  ", "\n  A message with margins.  \n")
    await api.container.events.relay.drain()

    [notification] = await inbox(api, user)
    assert notification["subject"] == "Padded subject"
    assert notification["message"] == "A message with margins."


async def test_unicode_text_arrives_intact(api: Api) -> None:
    admin, user = await api.admin(), await api.user()
    subject, message = "שלום 😀 Ame\u0301lie", "Zeile eins\n\tZeile zwei — ✓"

    await sent(api, admin, user.id, subject, message)
    await api.container.events.relay.drain()

    [notification] = await inbox(api, user)
    assert (notification["subject"], notification["message"]) == (subject, message)
    assert await mails_about(api, user.email, "Zeile zwei — ✓")


async def test_the_same_event_delivered_twice_takes_effect_once(api: Api) -> None:
    admin, user = await api.admin(), await api.user()
    notification_id = await sent(api, admin, user.id, "Once only", "Exactly one copy.")
    [envelope] = await envelopes(api)
    container = api.container

    for name in ("notifications.in_app", "notifications.email"):
        consumer = container.events.consumers.get(name)
        assert await container.events.delivery.deliver(consumer, envelope) is True
        assert await container.events.delivery.deliver(consumer, envelope) is False
    await container.events.relay.drain()  # and the relay's own delivery is a third

    assert [n["id"] for n in await inbox(api, user)] == [notification_id]
    assert await stored_notifications(api) == 1
    assert len(await mails_about(api, user.email, "Exactly one copy.")) == 1


async def test_delivering_in_app_again_outside_the_inbox_adds_no_copy(api: Api) -> None:
    """Even without the inbox's guard (a replay under another consumer name, say), the
    in-app delivery finds the notification it made and leaves it as it is."""
    admin, user = await api.admin(), await api.user()
    await sent(api, admin, user.id, "Replayed")
    await api.container.events.relay.drain()
    [read] = await inbox(api, user)
    await api.client.post(f"{NOTIFICATIONS}/{read['id']}/read", headers=user.headers)
    [envelope] = await envelopes(api)

    async with api.container.uow() as uow:
        await api.container.notifications.deliver_in_app(
            uow,
            NotificationRequested.model_validate(envelope.data),
            sent_at=envelope.occurred_at,
        )

    [again] = await inbox(api, user)
    assert again["read_at"] is not None
    assert await stored_notifications(api) == 1


async def test_a_user_who_left_before_delivery_gets_nothing(api: Api) -> None:
    admin, user = await api.admin(), await api.user()
    await sent(api, admin, user.id, "Too late", "Nobody reads this.")
    assert (await api.client.delete("/api/v1/users/me", headers=user.headers)).status_code == 204

    await api.container.events.relay.drain()

    assert await stored_notifications(api) == 0
    assert await mails_about(api, user.email, "Nobody reads this.") == []
    async with api.container.uow(read_only=True) as uow:
        backlog = await OutboxRepository.of(uow).backlog()
    assert (backlog.pending, backlog.parked) == (0, 0)  # handled, not failing


async def test_a_deactivated_user_is_still_written_to(api: Api) -> None:
    """An administrator may need to tell a suspended account why; the email reaches it."""
    admin, user = await api.admin(), await api.user()
    deactivated = await api.client.patch(
        f"/api/v1/users/{user.id}", json={"is_active": False}, headers=admin.headers
    )
    assert deactivated.status_code == 200, deactivated.text

    await sent(api, admin, user.id, "Your account", "It was suspended for abuse.")

    assert await mails_about(api, user.email, "It was suspended for abuse.")
    assert await stored_notifications(api) == 1


# --- who may send --------------------------------------------------------------------------


async def test_a_plain_user_may_not_send(api: Api) -> None:
    user, other = await api.user(), await api.user()

    response = await send(api, user, other.id)

    assert_problem(response, 403, "forbidden")
    assert await audit_of(api, "notification.sent") == []
    assert await envelopes(api) == []


async def test_the_service_itself_refuses_a_plain_user(api: Api) -> None:
    """The route's AdminUser is not the only guard: a caller of the service (a CLI, a job)
    gets the same refusal."""
    user, other = await api.user(), await api.user()
    actor = await api.container.accounts.auth.snapshots.get(uuid.UUID(user.id))
    assert actor is not None

    with pytest.raises(Forbidden):
        await api.container.notifications.send(actor, uuid.UUID(other.id), "Hi", "Hello.")

    assert await audit_of(api, "notification.sent") == []
    assert await envelopes(api) == []


async def test_every_route_needs_a_session(api: Api) -> None:
    admin, user = await api.admin(), await api.user()
    notification_id = await sent(api, admin, user.id, "Private")
    await api.container.events.relay.drain()
    body = {"user_id": user.id, "subject": "Anonymous", "message": "No."}

    answers = [
        await api.client.post(NOTIFICATIONS, json=body),
        await api.client.get(NOTIFICATIONS),
        await api.client.post(f"{NOTIFICATIONS}/{notification_id}/read"),
        await api.client.post(f"{NOTIFICATIONS}/read-all"),
    ]

    for response in answers:
        assert_problem(response, 401, "not_authenticated")
        assert response.headers["www-authenticate"] == "Bearer"
    assert len(await envelopes(api)) == 1
    [notification] = await inbox(api, user)
    assert notification["read_at"] is None


async def test_an_unknown_user_is_not_found_and_nothing_is_recorded(api: Api) -> None:
    admin = await api.admin()

    response = await send(api, admin, NIL_UUID)

    assert_problem(response, 404, "not_found")
    assert await audit_of(api, "notification.sent") == []
    assert await envelopes(api) == []


async def test_a_deleted_user_is_not_found(api: Api) -> None:
    admin, user = await api.admin(), await api.user()
    assert (await api.client.delete("/api/v1/users/me", headers=user.headers)).status_code == 204

    response = await send(api, admin, user.id)

    assert_problem(response, 404, "not_found")
    assert await audit_of(api, "notification.sent") == []
    assert await envelopes(api) == []


# --- reading and marking -------------------------------------------------------------------


async def test_the_inbox_pages_newest_first_without_gaps_or_repeats(api: Api) -> None:
    admin, user, other = await api.admin(), await api.user(), await api.user()
    ids = [await sent(api, admin, user.id, f"Number {n}") for n in range(7)]
    await sent(api, admin, other.id, "For someone else")
    await api.container.events.relay.drain()

    seen: list[str] = []
    pages = 0
    params: dict[str, Any] = {"limit": 3}
    while True:
        response = await api.client.get(NOTIFICATIONS, params=params, headers=user.headers)
        assert response.status_code == 200, response.text
        page = response.json()
        pages += 1
        seen += [item["id"] for item in page["items"]]
        if page["next_cursor"] is None:
            break
        params["cursor"] = page["next_cursor"]

    assert pages == 3
    assert seen == ids[::-1]


async def test_the_unread_filter_and_marking_everything_read(api: Api) -> None:
    admin, user = await api.admin(), await api.user()
    first, second, third = [await sent(api, admin, user.id, f"N{n}") for n in range(3)]
    await api.container.events.relay.drain()

    read = await api.client.post(f"{NOTIFICATIONS}/{second}/read", headers=user.headers)
    assert read.status_code == 200, read.text

    assert [n["id"] for n in await inbox(api, user, unread="true")] == [third, first]
    assert [n["id"] for n in await inbox(api, user, unread="false")] == [third, second, first]
    everything = await api.client.post(f"{NOTIFICATIONS}/read-all", headers=user.headers)
    assert everything.status_code == 200, everything.text
    assert everything.json() == {"marked_read": 2}
    assert await inbox(api, user, unread="true") == []
    again = await api.client.post(f"{NOTIFICATIONS}/read-all", headers=user.headers)
    assert again.json() == {"marked_read": 0}
    assert all(n["read_at"] for n in await inbox(api, user))


async def test_marking_read_twice_keeps_the_first_time(api: Api, clock: FrozenClock) -> None:
    admin, user = await api.admin(), await api.user()
    notification_id = await sent(api, admin, user.id, "Read me")
    await api.container.events.relay.drain()
    url = f"{NOTIFICATIONS}/{notification_id}/read"

    first = await api.client.post(url, headers=user.headers)
    clock.advance(timedelta(minutes=5))
    second = await api.client.post(url, headers=user.headers)
    everything = await api.client.post(f"{NOTIFICATIONS}/read-all", headers=user.headers)

    assert first.status_code == second.status_code == 200, (first.text, second.text)
    assert first.json()["id"] == notification_id
    assert first.json()["read_at"] is not None
    assert second.json() == first.json()
    assert everything.json() == {"marked_read": 0}
    [listed] = await inbox(api, user)
    assert listed == first.json()


async def test_another_users_notification_is_invisible(api: Api) -> None:
    admin, alice, bob = await api.admin(), await api.user(), await api.user()
    for_alice = await sent(api, admin, alice.id, "For Alice only")
    await api.container.events.relay.drain()

    assert await inbox(api, bob) == []
    stolen = await api.client.post(f"{NOTIFICATIONS}/{for_alice}/read", headers=bob.headers)
    assert_problem(stolen, 404, "not_found")
    # Not even the administrator who sent it reads it through another's inbox.
    by_sender = await api.client.post(f"{NOTIFICATIONS}/{for_alice}/read", headers=admin.headers)
    assert_problem(by_sender, 404, "not_found")
    everything = await api.client.post(f"{NOTIFICATIONS}/read-all", headers=bob.headers)
    assert everything.json() == {"marked_read": 0}
    [notification] = await inbox(api, alice)
    assert notification["read_at"] is None


async def test_an_unknown_notification_is_not_found(api: Api) -> None:
    user = await api.user()

    response = await api.client.post(f"{NOTIFICATIONS}/{NIL_UUID}/read", headers=user.headers)

    assert_problem(response, 404, "not_found")


# --- the published contract ----------------------------------------------------------------


@pytest.mark.input_only
async def test_every_route_documents_its_problems(api: Api) -> None:
    paths = (await api.client.get("/openapi.json")).json()["paths"]
    expected = {
        (NOTIFICATIONS, "post"): {"202", "401", "403", "404", "422"},
        (NOTIFICATIONS, "get"): {"200", "401", "422"},
        (f"{NOTIFICATIONS}/read-all", "post"): {"200", "401"},
        (NOTIFICATIONS + "/{notification_id}/read", "post"): {"200", "401", "404", "422"},
    }

    for (path, method), statuses in expected.items():
        responses = paths[path][method]["responses"]
        assert statuses <= responses.keys(), (path, method, sorted(responses))
        for status in statuses - {"200", "202"}:
            assert "application/problem+json" in responses[status]["content"], (path, status)
