"""On SQLite, writing transactions of one process take turns on a lock as they begin,
instead of polling the file lock: none of them ever meets a locked database.

SQLite's busy timeout is set to 0 here, so a writer that reached the file lock while
another held it would fail at once with "database is locked".
"""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event, text

from promptstack.bootstrap import Container, bootstrap
from tests.conftest import make_settings
from tests.fixtures.support import eventually


@pytest.fixture
async def container(sqlite_template: Path, tmp_path: Path) -> AsyncIterator[Container]:
    path = tmp_path / "writers.db"
    shutil.copyfile(sqlite_template, path)
    built = bootstrap(make_settings(f"sqlite+aiosqlite:///{path}", tmp_path))

    @event.listens_for(built.database.engine.sync_engine, "connect")
    def _no_waiting(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.execute("PRAGMA busy_timeout=0")

    yield built
    await built.aclose()


@dataclass
class Turns:
    """Who got to write, in order; `first` is set when the first one is in."""

    entered: list[int] = field(default_factory=list)
    first: asyncio.Event = field(default_factory=asyncio.Event)

    async def write(self, container: Container, n: int, hold: asyncio.Event) -> None:
        async with container.uow() as uow:
            await uow.session.execute(text("SELECT 1"))  # BEGIN IMMEDIATE: the turn is taken
            self.entered.append(n)
            self.first.set()
            await hold.wait()  # keep the turn while the others arrive


def _released() -> asyncio.Event:
    done = asyncio.Event()
    done.set()
    return done


async def test_concurrent_writers_each_get_a_turn_and_never_collide(container: Container) -> None:
    turns, hold = Turns(), asyncio.Event()
    holder = asyncio.create_task(turns.write(container, 0, hold))
    await turns.first.wait()
    others = [asyncio.create_task(turns.write(container, n, _released())) for n in range(1, 12)]
    pool = container.database.engine.sync_engine.pool

    def all_at_the_door() -> bool:
        # Each has its connection and stands at BEGIN: queued, or already refused.
        return pool.checkedout() == 12 or any(task.done() for task in others)  # type: ignore[attr-defined]

    await eventually(all_at_the_door, what="every writer to reach BEGIN")
    hold.set()
    await asyncio.gather(holder, *others)  # with a busy timeout of 0 a collision raises
    assert sorted(turns.entered) == list(range(12))


async def _fail_inside_a_write(container: Container) -> None:
    async with container.uow() as uow:
        await uow.session.execute(text("SELECT 1"))
        raise RuntimeError("boom")


async def test_a_failed_writer_gives_up_its_turn(container: Container) -> None:
    with pytest.raises(RuntimeError, match="boom"):
        await _fail_inside_a_write(container)
    turns = Turns()
    await turns.write(container, 1, _released())
    assert turns.entered == [1]


async def test_a_writer_cancelled_while_waiting_leaves_the_queue_working(
    container: Container,
) -> None:
    turns, hold = Turns(), asyncio.Event()
    holder = asyncio.create_task(turns.write(container, 0, hold))
    await turns.first.wait()
    waiter = asyncio.create_task(turns.write(container, 1, _released()))
    await asyncio.sleep(0)
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    hold.set()
    await holder
    await turns.write(container, 2, _released())
    assert turns.entered == [0, 2]


async def test_readers_do_not_wait_for_a_writer(container: Container) -> None:
    turns, hold = Turns(), asyncio.Event()
    writer = asyncio.create_task(turns.write(container, 0, hold))
    await turns.first.wait()
    async with container.uow(read_only=True) as uow:
        assert (await uow.session.execute(text("SELECT 1"))).scalar() == 1
    hold.set()
    await writer
