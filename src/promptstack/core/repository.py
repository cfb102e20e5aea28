"""The typed base every repository extends with its own named queries."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any, Generic, Protocol, Self, TypeVar

from sqlalchemy import Row, Select, and_, or_
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import InstrumentedAttribute

from promptstack.core.database import Base
from promptstack.core.pagination import Cursor, Page, PageRequest

ModelT = TypeVar("ModelT", bound=Base)
T = TypeVar("T")
R = TypeVar("R", bound="SessionRepository")


class RepositoryScope(Protocol):
    """What repositories are made from: a unit of work, which keeps one of each."""

    def repository(self, kind: type[R]) -> R: ...


class SessionRepository:
    """A repository: named queries over the session of one unit of work.

    Made from the unit of work (`UserRepository.of(uow)`), which builds each kind once
    and hands the same one back, so the unit of work itself knows no repository.
    """

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    @classmethod
    def of(cls, uow: RepositoryScope) -> Self:
        return uow.repository(cls)


class Repository(SessionRepository, Generic[ModelT]):
    """The typed base for one table's repository."""

    model: type[ModelT]

    async def get(self, id_: uuid.UUID) -> ModelT | None:
        return await self.session.get(self.model, id_)

    def add(self, entity: ModelT) -> ModelT:
        self.session.add(entity)
        return entity

    async def flush(self) -> None:
        await self.session.flush()

    async def page(
        self,
        query: Select[ModelT],
        request: PageRequest,
        *,
        at: InstrumentedAttribute[datetime],
        id_: InstrumentedAttribute[uuid.UUID],
        newest_first: bool = False,
    ) -> Page[ModelT]:
        """One page of `query`'s entities in (at, id) order, after the request's cursor."""
        ordered = _ordered(query, request, at, id_, newest_first)
        items: list[ModelT] = list((await self.session.scalars(ordered)).all())
        return _cut(items, request, at, id_)

    async def page_rows(
        self,
        query: Select[*tuple[Any, ...]],
        request: PageRequest,
        *,
        at: InstrumentedAttribute[datetime],
        id_: InstrumentedAttribute[uuid.UUID],
        newest_first: bool = False,
    ) -> Page[Row[Any]]:
        """The same as `page` for a query of columns: plain rows, which a list that is
        only shown needs. Loading ORM objects (each with its state in the session's
        identity map) was half the time of a 20-row list; a row has the same attributes
        for the response model to read."""
        ordered = _ordered(query, request, at, id_, newest_first)
        items: list[Row[Any]] = list((await self.session.execute(ordered)).all())
        return _cut(items, request, at, id_)


def _ordered(
    query: Select[*tuple[Any, ...]],
    request: PageRequest,
    at: InstrumentedAttribute[datetime],
    id_: InstrumentedAttribute[uuid.UUID],
    newest_first: bool,
) -> Select[*tuple[Any, ...]]:
    if request.after is not None:
        query = query.where(_after(at, id_, request.after, newest_first=newest_first))
    order: Sequence[Any] = (at.desc(), id_.desc()) if newest_first else (at.asc(), id_.asc())
    return query.order_by(*order).limit(request.limit + 1)


def _cut(
    items: list[T],
    request: PageRequest,
    at: InstrumentedAttribute[datetime],
    id_: InstrumentedAttribute[uuid.UUID],
) -> Page[T]:
    """The page, and a cursor after its last item when one more row came back."""
    if len(items) <= request.limit:
        return Page(items=items, next_cursor=None)
    items = items[: request.limit]
    last = items[-1]
    cursor = Cursor(at=getattr(last, at.key), id=getattr(last, id_.key))
    return Page(items=items, next_cursor=cursor.encode())


def _after(
    at: InstrumentedAttribute[datetime],
    id_: InstrumentedAttribute[uuid.UUID],
    cursor: Cursor,
    *,
    newest_first: bool,
) -> Any:
    if newest_first:
        return or_(at < cursor.at, and_(at == cursor.at, id_ < cursor.id))
    return or_(at > cursor.at, and_(at == cursor.at, id_ > cursor.id))


def escape_like(text: str) -> str:
    """A LIKE pattern that matches `text` literally anywhere."""
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"
