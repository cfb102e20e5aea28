"""The account export, end to end through the API, and who may follow a job.

The export runs on the in-process executor once the relay has dispatched its job; the
tests follow it through `GET /api/v1/jobs/{id}`, as a client would.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

from promptstack.jobs.models import UNFINISHED
from promptstack.jobs.repository import JobRepository
from tests.fixtures.support import Account, Api, assert_problem

EXPORT = "/api/v1/users/me/export"
JOBS = "/api/v1/jobs"
DEADLINE_SECONDS = 60.0


async def _export(api: Api, account: Account) -> str:
    response = await api.client.post(EXPORT, headers=account.headers)
    assert response.status_code == 202, response.text
    body = response.json()
    assert set(body) == {"job_id", "status"}
    assert response.headers["location"] == f"{JOBS}/{body['job_id']}"
    return str(body["job_id"])


async def _finished(api: Api, job_id: str, account: Account) -> dict[str, Any]:
    """Dispatch what was submitted, then poll the job until it has ended."""
    await api.container.events.relay.drain()
    loop = asyncio.get_running_loop()
    deadline = loop.time() + DEADLINE_SECONDS
    while True:
        response = await api.client.get(f"{JOBS}/{job_id}", headers=account.headers)
        assert response.status_code == 200, response.text
        job: dict[str, Any] = response.json()
        if job["state"] not in UNFINISHED:
            return job
        assert loop.time() < deadline, f"the job never ended: {job}"
        await asyncio.sleep(0.02)


async def test_an_export_runs_in_the_background_and_its_result_is_the_users_data(
    api: Api,
) -> None:
    account = await api.user(full_name="Ada Export")
    admin = await api.admin()
    sent = await api.client.post(
        "/api/v1/notifications",
        json={"user_id": account.id, "subject": "Hello", "message": "Exported too"},
        headers=admin.headers,
    )
    assert sent.status_code == 202, sent.text
    await api.container.events.relay.drain()
    job_id = await _export(api, account)

    # Nothing has run yet: asking again returns the export already under way.
    assert await _export(api, account) == job_id
    pending = (await api.client.get(f"{JOBS}/{job_id}", headers=account.headers)).json()
    assert pending["state"] == "pending"
    assert (pending["current"], pending["attempts"], pending["result"]) == (0, 0, None)

    job = await _finished(api, job_id, account)

    assert job["state"] == "success", job
    assert job["kind"] == "account.export"
    assert job["attempts"] == 1
    assert job["error"] is None
    assert job["current"] == job["total"] > 1
    assert job["finished_at"] is not None
    export = job["result"]
    assert export["profile"]["id"] == account.id
    assert export["profile"]["email"] == account.email
    assert export["profile"]["full_name"] == "Ada Export"
    actions = {entry["action"] for entry in export["audit_log"]}
    assert {"user.registered", "user.export_requested", "notification.sent"} <= actions
    [notification] = export["notifications"]
    assert (notification["subject"], notification["message"]) == ("Hello", "Exported too")
    assert notification["sender_id"] == admin.id
    assert job["total"] == 1 + len(export["audit_log"]) + len(export["notifications"])
    assert "password" not in json.dumps(export)
    # Once it has finished, asking again starts a new export.
    assert await _export(api, account) != job_id


async def test_an_export_of_a_closed_account_fails_at_once(api: Api) -> None:
    account = await api.user()
    admin = await api.admin()
    job_id = await _export(api, account)
    assert (await api.client.delete("/api/v1/users/me", headers=account.headers)).status_code == 204

    job = await _finished(api, job_id, admin)

    assert job["state"] == "failure"
    assert job["error"] == "The account no longer exists."
    assert job["attempts"] == 1
    assert job["result"] is None


async def test_the_owner_and_administrators_read_a_job_and_others_get_404(api: Api) -> None:
    owner = await api.user()
    stranger = await api.user()
    admin = await api.admin()
    job_id = await _export(api, owner)

    for reader in (owner, admin):
        response = await api.client.get(f"{JOBS}/{job_id}", headers=reader.headers)
        assert response.status_code == 200, response.text
        assert response.json()["id"] == job_id
    hidden = await api.client.get(f"{JOBS}/{job_id}", headers=stranger.headers)
    unknown = await api.client.get(f"{JOBS}/{uuid.uuid4()}", headers=owner.headers)
    # Someone else's job is indistinguishable from one that does not exist.
    hidden_body = assert_problem(hidden, 404, "not_found")
    unknown_body = assert_problem(unknown, 404, "not_found")
    assert hidden_body | {"request_id": None} == unknown_body | {"request_id": None}


async def test_a_job_cannot_be_changed_through_the_api(api: Api) -> None:
    account = await api.user()
    job_id = await _export(api, account)
    for method in ("DELETE", "PATCH", "PUT", "POST"):
        response = await api.client.request(method, f"{JOBS}/{job_id}", headers=account.headers)
        assert_problem(response, 405)
    async with api.container.uow(read_only=True) as uow:
        job = await JobRepository.of(uow).get(uuid.UUID(job_id))
    assert job is not None
