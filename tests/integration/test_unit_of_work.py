"""The unit of work commits in one place, and runs after-commit work only after a commit."""

from __future__ import annotations

import uuid

import pytest

from promptstack.bootstrap import Container
from promptstack.core.errors import Conflict
from promptstack.models.user import User
from promptstack.repositories.unit_of_work import UnitOfWorkFactory


def _user(container: Container, name: str) -> User:
    now = container.clock.now()
    user = User(
        id=uuid.uuid4(),
        email=f"{name}@example.com",
        email_key=f"{name}@example.com",
        username=name,
        username_key=name,
        password_hash="!",
        created_at=now,
        updated_at=now,
    )
    user.refresh_search_key()
    return user


async def test_commit_on_success_runs_hooks_afterwards(container: Container) -> None:
    uow = UnitOfWorkFactory(container.database)
    ran: list[str] = []
    async with uow() as work:
        work.users.add(_user(container, "kept"))
        work.after_commit(lambda: ran.append("hook"))
        assert ran == []
    assert ran == ["hook"]
    async with uow(read_only=True) as work:
        assert await work.users.by_login("kept") is not None


async def test_an_error_rolls_back_and_skips_hooks(container: Container) -> None:
    uow = UnitOfWorkFactory(container.database)
    ran: list[str] = []

    async def change_then_fail() -> None:
        async with uow() as work:
            work.users.add(_user(container, "lost"))
            await work.users.flush()
            work.after_commit(lambda: ran.append("hook"))
            raise RuntimeError("fails after the change")

    with pytest.raises(RuntimeError):
        await change_then_fail()
    assert ran == []
    async with uow(read_only=True) as work:
        assert await work.users.by_login("lost") is None


async def test_a_unique_violation_is_a_conflict(container: Container) -> None:
    uow = UnitOfWorkFactory(container.database)
    async with uow() as work:
        work.users.add(_user(container, "twin"))
    with pytest.raises(Conflict):
        async with uow() as work:
            work.users.add(_user(container, "twin"))
