"""The unit of work commits in one place, and runs after-commit work only after a commit."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from promptstack.accounts.models import User
from promptstack.accounts.repository import AccountTaken, UserRepository
from promptstack.audit.models import AuditEntry
from promptstack.audit.service import Auditor
from promptstack.bootstrap import Container
from promptstack.core.ids import RandomIds
from promptstack.core.unit_of_work import UnitOfWork, UnitOfWorkFactory


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

    async def async_hook() -> None:
        ran.append("async hook")

    async with uow() as work:
        UserRepository.of(work).add(_user(container, "kept"))
        work.after_commit(lambda: ran.append("hook"))
        work.after_commit(async_hook)
        assert ran == []
    assert ran == ["hook", "async hook"]
    async with uow(read_only=True) as work:
        assert await UserRepository.of(work).by_login("kept") is not None


async def test_a_failing_hook_does_not_stop_the_others(container: Container) -> None:
    ran: list[str] = []

    def broken() -> None:
        raise RuntimeError("a hook that fails")

    async with UnitOfWorkFactory(container.database)() as work:
        work.after_commit(broken)
        work.after_commit(lambda: ran.append("after"))
    assert ran == ["after"]


async def test_an_error_rolls_back_and_skips_hooks(container: Container) -> None:
    uow = UnitOfWorkFactory(container.database)
    ran: list[str] = []

    async def change_then_fail() -> None:
        async with uow() as work:
            UserRepository.of(work).add(_user(container, "lost"))
            await UserRepository.of(work).flush()
            work.after_commit(lambda: ran.append("hook"))
            raise RuntimeError("fails after the change")

    with pytest.raises(RuntimeError):
        await change_then_fail()
    assert ran == []
    async with uow(read_only=True) as work:
        assert await UserRepository.of(work).by_login("lost") is None


async def test_a_repository_is_made_once_per_unit_of_work(container: Container) -> None:
    uow = UnitOfWorkFactory(container.database)
    async with uow() as first, uow() as second:
        assert UserRepository.of(first) is UserRepository.of(first)
        assert UserRepository.of(first) is not UserRepository.of(second)
        assert UserRepository.of(first).session is first.session


async def test_only_writing_units_of_work_are_handed_to_on_open(container: Container) -> None:
    uow = UnitOfWorkFactory(container.database)
    opened: list[UnitOfWork] = []
    uow.on_open(opened.append)
    async with uow(read_only=True) as reading, uow() as writing:
        assert opened == [writing]
        assert reading not in opened


async def test_an_unexpected_integrity_error_is_not_turned_into_a_conflict(
    container: Container,
) -> None:
    """Only a repository that expects a violation may say what it means; anything else
    is a bug, and surfaces as one."""
    uow = UnitOfWorkFactory(container.database)
    async with uow() as work:
        UserRepository.of(work).add(_user(container, "twin"))
    with pytest.raises(IntegrityError):
        async with uow() as work:
            UserRepository.of(work).add(_user(container, "twin"))


async def test_a_taken_account_is_named_by_the_user_repository(container: Container) -> None:
    uow = UnitOfWorkFactory(container.database)
    async with uow() as work:
        await UserRepository.of(work).insert(_user(container, "twin"))
    with pytest.raises(AccountTaken):
        async with uow() as work:
            await UserRepository.of(work).insert(_user(container, "twin"))


async def _audit_subjects(container: Container) -> list[uuid.UUID | None]:
    async with container.uow(read_only=True) as work:
        rows = await work.session.execute(select(AuditEntry.subject_id))
        return [subject for (subject,) in rows]


async def test_audit_entries_are_written_as_their_transaction_commits(
    container: Container,
) -> None:
    """Entries are kept until the commit, and both entries of one unit of work arrive
    with it."""
    auditor = Auditor(container.clock, RandomIds())
    user = _user(container, "audited")
    async with container.uow() as work:
        UserRepository.of(work).add(user)
        auditor.record(work, "test.one", actor_id=None, subject_id=user.id)
        auditor.record(work, "test.two", actor_id=None, subject_id=user.id, n=2)
        assert await _audit_subjects(container) == []
    assert await _audit_subjects(container) == [user.id, user.id]


async def test_a_failing_before_commit_hook_rolls_everything_back(container: Container) -> None:
    auditor = Auditor(container.clock, RandomIds())
    user = _user(container, "rolled-back")

    async def refuse() -> None:
        raise RuntimeError("a check at commit that fails")

    async def attempt() -> None:
        async with container.uow() as work:
            UserRepository.of(work).add(user)
            auditor.record(work, "test.lost", actor_id=None, subject_id=user.id)
            work.before_commit(refuse)

    with pytest.raises(RuntimeError):
        await attempt()
    assert await _audit_subjects(container) == []
    async with container.uow(read_only=True) as work:
        assert await UserRepository.of(work).get(user.id) is None
