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
from promptstack.core.errors import AppError
from promptstack.core.ids import IdSource
from promptstack.core.pagination import Page, PageRequest
from promptstack.core.unit_of_work import UnitOfWork, UnitOfWorkFactory

# What a credit divides into: LLM calls cost micro-credits, charged in whole credits.
MICROS_PER_CREDIT = 1_000_000


class InsufficientCredits(AppError):
    status = 402
    code = "insufficient_credits"
    title = "Not enough credits"


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

    async def hold(self, uow: UnitOfWork, user_id: uuid.UUID, amount: int, reference: str) -> int:
        """Set `amount` credits aside for a call about to be made (`reference`): the
        balance left, or `InsufficientCredits`. The hold is a ledger entry like any
        change, and `settle` returns what the call did not use."""
        if amount <= 0:
            raise ValueError("a hold sets at least one credit aside")
        balance = await CreditRepository.of(uow).hold(
            self.ids.new(), user_id, amount, f"{reference}:hold", self.clock.now()
        )
        if balance is None:
            raise InsufficientCredits(
                f"this call may cost up to {amount} credits, more than the balance holds",
                extra={"required": amount},
            )
        return balance

    async def settle(
        self, uow: UnitOfWork, user_id: uuid.UUID, held: int, micros: int, reference: str
    ) -> int:
        """Charge a call's cost, `micros` micro-credits, against the `held` credits, and
        give the rest back: the credits charged.

        Costs are exact: the part of a credit a call does not fill is kept on the
        account and charged by the call that completes it, so a thousand small calls
        cost what they cost, not a thousand credits. A call never costs more than it
        held; what a provider reports beyond that is not charged.
        """
        if held < 0 or micros < 0:
            raise ValueError("a settlement neither holds nor costs less than nothing")
        repository = CreditRepository.of(uow)
        _, carried = await repository.spending(user_id)
        total = carried + micros
        due = total // MICROS_PER_CREDIT
        if due <= held:
            charged, left = due, total - due * MICROS_PER_CREDIT
        else:
            charged, left = held, 0
        if left != carried:
            await repository.set_micros(user_id, left)
        if held > charged:
            await repository.apply(
                self.ids.new(),
                user_id,
                held - charged,
                CreditReason.USAGE,
                f"{reference}:return",
                self.clock.now(),
            )
        return charged

    async def entries(self, user: UserSnapshot, page: PageRequest) -> Page[ShownCreditEntry]:
        """The caller's ledger, newest first."""
        async with self.uow(read_only=True) as uow:
            return await CreditRepository.of(uow).ledger(user.id, page)
