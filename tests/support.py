"""Helpers that keep tests at the level of what a client does."""

from __future__ import annotations

import asyncio
import inspect
import itertools
import mailbox
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import httpx

from promptstack.accounts.models import Role
from promptstack.accounts.service import NewAccount
from promptstack.bootstrap import Container
from promptstack.core.settings import Settings

PASSWORD = "correct horse battery"

_serial = itertools.count(1)


@dataclass
class Account:
    id: str
    email: str
    username: str
    password: str
    access_token: str = ""
    refresh_token: str = ""

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.access_token}"}


def assert_problem(
    response: httpx.Response, status: int, code: str | None = None
) -> dict[str, Any]:
    """The answer is an RFC 9457 problem document with this status (and code)."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body: dict[str, Any] = response.json()
    assert body["status"] == status
    assert {"type", "title", "detail", "code", "request_id"} <= body.keys()
    assert body["request_id"] == response.headers["x-request-id"]
    if code is not None:
        assert body["code"] == code, body
    return body


class Api:
    def __init__(self, client: httpx.AsyncClient, container: Container, settings: Settings) -> None:
        self.client = client
        self.container = container
        self.settings = settings

    async def register(self, **fields: Any) -> Account:
        n = next(_serial)
        body = {"email": f"user{n}@example.com", "username": f"user{n}", "password": PASSWORD}
        body.update(fields)
        response = await self.client.post("/api/v1/auth/register", json=body)
        assert response.status_code == 201, response.text
        data = response.json()
        return Account(data["id"], data["email"], data["username"], body["password"])

    async def login(self, account: Account) -> Account:
        response = await self.client.post(
            "/api/v1/auth/login", data={"username": account.username, "password": account.password}
        )
        assert response.status_code == 200, response.text
        tokens = response.json()
        account.access_token = tokens["access_token"]
        account.refresh_token = tokens["refresh_token"]
        return account

    async def user(self, **fields: Any) -> Account:
        """A registered, logged-in user."""
        return await self.login(await self.register(**fields))

    async def admin(self, role: Role = Role.ADMIN) -> Account:
        n = next(_serial)
        user = await self.container.accounts.register(
            NewAccount(email=f"admin{n}@example.com", username=f"admin{n}", password=PASSWORD),
            role=role,
        )
        return await self.login(Account(str(user.id), user.email, user.username, PASSWORD))

    async def mails_to(self, address: str) -> list[str]:
        """Bodies of the emails delivered to `address`, once the events that send them
        have been relayed to their consumers."""
        await self.container.relay.drain()
        path = self.settings.maildir_path
        if not path.exists():
            return []
        box = mailbox.Maildir(path, create=False)
        found = []
        for key in sorted(box.keys(), key=_delivery_order):
            message = box[key]
            if message["To"] == address:
                payload = message.get_payload(decode=True)
                assert isinstance(payload, bytes)
                found.append(payload.decode())
        return found

    async def token_from_mail(self, address: str, subject_word: str) -> str:
        bodies = [body for body in await self.mails_to(address) if subject_word in body]
        assert bodies, f"no email about {subject_word!r} to {address}"
        match = re.search(r"token=([A-Za-z0-9_-]+)", bodies[-1])
        assert match
        return match.group(1)


def _delivery_order(key: str) -> tuple[int, int, int]:
    """Maildir names start `seconds.Mmicroseconds...Qcounter`; oldest first."""
    match = re.match(r"(\d+)\.M(\d+)P\d+Q(\d+)", key)
    assert match, key
    return int(match[1]), int(match[2]), int(match[3])


async def eventually(
    check: Callable[[], Awaitable[Any] | Any], *, within: float = 30.0, what: str = "condition"
) -> Any:
    """Poll `check` (plain or async) until it returns something truthy; fail after
    `within` seconds. A deadline for waiting on other tasks and processes, never a
    measurement."""
    deadline = time.monotonic() + within
    last: Any = None
    while time.monotonic() < deadline:
        last = check()
        if inspect.isawaitable(last):
            last = await last
        if last:
            return last
        await asyncio.sleep(0.05)  # polling the database, broker or process, not timing
    raise AssertionError(f"timed out waiting for {what} (last: {last!r})")
