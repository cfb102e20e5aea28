"""Named queries over the credit ledger and the balances it changes."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import cast

from sqlalchemy import Insert, Table, bindparam, select, update
from sqlalchemy.dialects import postgresql, sqlite

from promptstack.accounts.credit_models import CreditEntry, CreditReason, ShownCreditEntry
from promptstack.accounts.models import User
from promptstack.accounts.repository import changed_users
from promptstack.core.pagination import Page, PageRequest
from promptstack.core.repository import PagedQuery, Repository


def _entry_statement(insert: type[postgresql.Insert] | type[sqlite.Insert]) -> Insert:
    """Write the entry unless its cause was applied already; answer its id if written."""
    table = cast(Table, CreditEntry.__table__)
    columns = ("id", "user_id", "delta", "balance", "reason", "reference", "created_at")
    return (
        insert(table)
        .values({name: bindparam(name, type_=table.c[name].type) for name in columns})
        .on_conflict_do_nothing(index_elements=[table.c.reason, table.c.reference])
        .returning(table.c.id)
    )


_ENTRY = {
    "postgresql": _entry_statement(postgresql.Insert),
    "sqlite": _entry_statement(sqlite.Insert),
}
_ADD = (
    update(User)
    .where(User.id == bindparam("user_id"))
    .values(credits=User.credits + bindparam("delta"))
    .returning(User.credits)
)
_HOLD = (
    update(User)
    .where(User.id == bindparam("user_id"), User.credits >= bindparam("amount"))
    .values(credits=User.credits - bindparam("amount"))
    .returning(User.credits)
)
_SHOWN = select(
    CreditEntry.id,
    CreditEntry.delta,
    CreditEntry.balance,
    CreditEntry.reason,
    CreditEntry.reference,
    CreditEntry.created_at,
).where(CreditEntry.user_id == bindparam("user_id"))
_LEDGER = PagedQuery(_SHOWN, at=CreditEntry.created_at, id_=CreditEntry.id, newest_first=True)


class CreditRepository(Repository[CreditEntry]):
    model = CreditEntry

    async def apply(
        self,
        entry_id: uuid.UUID,
        user_id: uuid.UUID,
        delta: int,
        reason: CreditReason,
        reference: str,
        now: datetime,
    ) -> int | None:
        """Change the balance by `delta` and write the entry, once per cause: the new
        balance, or None when (reason, reference) was applied before.

        The entry goes first: on PostgreSQL a concurrent application of the same cause
        waits on the unique index until the first commits and then does nothing. The
        balance is changed by one statement on the row, so concurrent changes add up.
        """
        session = self.session
        written = await session.execute(
            _ENTRY[session.get_bind().dialect.name],
            {
                "id": entry_id,
                "user_id": user_id,
                "delta": delta,
                "balance": 0,
                "reason": reason,
                "reference": reference,
                "created_at": now,
            },
        )
        if written.scalar_one_or_none() is None:
            return None
        balance = (
            await session.execute(_ADD, {"user_id": user_id, "delta": delta})
        ).scalar_one_or_none()
        if balance is None:
            raise LookupError(f"no user {user_id} to change the credits of")
        await session.execute(
            update(CreditEntry).where(CreditEntry.id == entry_id).values(balance=balance)
        )
        changed_users(session).add(user_id)
        return int(balance)

    async def hold(
        self, entry_id: uuid.UUID, user_id: uuid.UUID, amount: int, reference: str, now: datetime
    ) -> int | None:
        """Take `amount` credits off the balance if it has them, in one conditional
        statement (so concurrent holds never take more than there is): the new balance,
        or None when there is not enough. A hold of a reference made before is refused
        is a mistake, refused."""
        session = self.session
        written = await session.execute(
            _ENTRY[session.get_bind().dialect.name],
            {
                "id": entry_id,
                "user_id": user_id,
                "delta": -amount,
                "balance": 0,
                "reason": CreditReason.USAGE,
                "reference": reference,
                "created_at": now,
            },
        )
        if written.scalar_one_or_none() is None:
            raise ValueError(f"credits were held for {reference} already")
        balance = (
            await session.execute(_HOLD, {"user_id": user_id, "amount": amount})
        ).scalar_one_or_none()
        if balance is None:
            return None  # the caller's unit of work rolls the entry back
        await session.execute(
            update(CreditEntry).where(CreditEntry.id == entry_id).values(balance=balance)
        )
        changed_users(session).add(user_id)
        return int(balance)

    async def spending(self, user_id: uuid.UUID) -> tuple[int, int]:
        """The balance and the uncharged micro-credits, the row locked until commit."""
        row = (
            await self.session.execute(
                select(User.credits, User.credit_micros).where(User.id == user_id).with_for_update()
            )
        ).one()
        return int(row.credits), int(row.credit_micros)

    async def set_micros(self, user_id: uuid.UUID, micros: int) -> None:
        await self.session.execute(
            update(User).where(User.id == user_id).values(credit_micros=micros)
        )

    async def ledger(self, user_id: uuid.UUID, request: PageRequest) -> Page[ShownCreditEntry]:
        return await self.page_rows(_LEDGER, request, {"user_id": user_id})
