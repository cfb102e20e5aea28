"""Named queries over payments and the sandbox processor's books."""

from __future__ import annotations

import uuid
from typing import cast

from sqlalchemy import Insert, Table, func, select
from sqlalchemy.dialects import postgresql, sqlite

from promptstack.core.repository import Repository
from promptstack.shop.payments.models import Payment, SandboxOperation


def _insert_absent(table: Table, dialect: str) -> Insert:
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    return insert(table).on_conflict_do_nothing()


class PaymentRepository(Repository[Payment]):
    model = Payment

    async def insert_if_absent(self, payment: Payment) -> bool:
        """Store `payment` unless the order has one already (a cancel heard first)."""
        statement = _insert_absent(
            cast(Table, Payment.__table__), self.session.get_bind().dialect.name
        )
        values = {column.key: getattr(payment, column.key) for column in Payment.__table__.c}
        result = await self.session.execute(statement, values)
        return bool(result.rowcount)  # type: ignore[attr-defined]

    async def for_update(self, order_id: uuid.UUID) -> Payment | None:
        return await self.session.get(
            Payment, order_id, with_for_update=True, populate_existing=True
        )


class SandboxRepository(Repository[SandboxOperation]):
    model = SandboxOperation

    async def record(self, operation: SandboxOperation) -> SandboxOperation:
        """Keep the first operation made under its key, and answer it: a later one with
        the same key is a retry, and gets what the first got."""
        statement = _insert_absent(
            cast(Table, SandboxOperation.__table__), self.session.get_bind().dialect.name
        )
        values = {c.key: getattr(operation, c.key) for c in SandboxOperation.__table__.c}
        await self.session.execute(statement, values)
        kept = await self.session.get(SandboxOperation, operation.key, populate_existing=True)
        assert kept is not None
        return kept

    async def by_id(self, operation_id: str) -> SandboxOperation | None:
        return await self.session.scalar(
            select(SandboxOperation).where(SandboxOperation.id == operation_id)
        )

    async def refunded(self, charge_id: str) -> int:
        total = await self.session.scalar(
            select(func.coalesce(func.sum(SandboxOperation.amount_cents), 0)).where(
                SandboxOperation.kind == "refund", SandboxOperation.charge_id == charge_id
            )
        )
        return int(total or 0)

    async def charge_for(self, reference: str) -> SandboxOperation | None:
        return await self.session.scalar(
            select(SandboxOperation).where(
                SandboxOperation.reference == reference,
                SandboxOperation.kind == "charge",
                SandboxOperation.outcome == "succeeded",
            )
        )
