"""The credit ledger: the one way a credit balance changes.

The shop grants credits for a confirmed order and the AI module charges them for calls;
both go through `CreditLedger`, inside their own unit of work, naming the cause of each
change. A cause applies once, so a redelivered message or a retried job never grants
or charges twice, and the ledger's entries always add up to the balance.
"""

from __future__ import annotations

import uuid

from promptstack.accounts.credit_models import CreditReason, ShownCreditEntry
from promptstack.accounts.credit_repository import CreditRepository
from promptstack.accounts.models import UserSnapshot
from promptstack.core.clock import Clock
from promptstack.core.ids import IdSource
from promptstack.core.pagination import Page, PageRequest
from promptstack.core.unit_of_work import UnitOfWork, UnitOfWorkFactory


class CreditLedger:
    def __init__(self, uow: UnitOfWorkFactory, clock: Clock, ids: IdSource) -> None:
        self.uow = uow
        self.clock = clock
        self.ids = ids

    async def grant(
        self, uow: UnitOfWork, user_id: uuid.UUID, amount: int, reason: CreditReason, reference: str
    ) -> int | None:
        """Add `amount` credits in `uow` for the cause (`reason`, `reference`): the new
        balance, or None when that cause was applied already."""
        if amount <= 0:
            raise ValueError("a grant adds at least one credit")
        return await CreditRepository.of(uow).apply(
            self.ids.new(), user_id, amount, reason, reference, self.clock.now()
        )

    async def entries(self, user: UserSnapshot, page: PageRequest) -> Page[ShownCreditEntry]:
        """The caller's ledger, newest first."""
        async with self.uow(read_only=True) as uow:
            return await CreditRepository.of(uow).ledger(user.id, page)
