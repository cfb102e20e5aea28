"""The one write path of the usage ledger, and of the credits a call holds and spends.

A call is opened before the provider is asked: its row, and the hold of the most it
can cost, commit together, so concurrent calls (in any process) never spend credits
that are not there. It is closed once, with what the provider reported: the cost is
charged against the hold and the rest returned, in the transaction that completes the
row. A process that dies in between leaves the row open; the sweep closes it as
`abandoned` and returns the hold.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from promptstack.accounts.credits import CreditLedger
from promptstack.ai.llm.models import LlmCall, Outcome
from promptstack.ai.llm.prices import Price
from promptstack.ai.llm.providers.base import Usage
from promptstack.ai.llm.repository import LlmCallRepository
from promptstack.core.clock import Clock
from promptstack.core.ids import IdSource
from promptstack.core.logging import get_logger
from promptstack.core.unit_of_work import UnitOfWorkFactory

log = get_logger(__name__)

# Longer than any call may take: a call open this long belongs to a process that died.
ABANDONED_AFTER = timedelta(minutes=15)
SWEEP_BATCH = 500


@dataclass(frozen=True, slots=True)
class OpenCall:
    id: uuid.UUID
    user_id: uuid.UUID
    held: int
    started: float  # the clock's monotonic reading
    created_at: datetime


@dataclass(frozen=True, slots=True)
class Served:
    """Who answered a call (a fallback, perhaps, rather than the provider asked first)
    and at what price."""

    provider: str
    model: str
    price: Price


@dataclass(frozen=True, slots=True)
class ClosedCall:
    id: uuid.UUID
    cost_micros: int
    credits_charged: int
    created_at: datetime


class UsageLedger:
    def __init__(
        self, uow: UnitOfWorkFactory, credits: CreditLedger, clock: Clock, ids: IdSource
    ) -> None:
        self.uow = uow
        self.credits = credits
        self.clock = clock
        self.ids = ids

    async def open(
        self,
        user_id: uuid.UUID,
        provider: str,
        model: str,
        *,
        held: int,
        streamed: bool,
    ) -> OpenCall:
        """Record the call and hold `held` credits for it (`InsufficientCredits` if the
        balance is short, and then nothing is recorded)."""
        call_id = self.ids.new()
        now = self.clock.now()
        async with self.uow() as uow:
            LlmCallRepository.of(uow).add(
                LlmCall(
                    id=call_id,
                    user_id=user_id,
                    provider=provider,
                    model=model,
                    streamed=streamed,
                    outcome=Outcome.PENDING,
                    prompt_tokens=0,
                    completion_tokens=0,
                    usage_exact=True,
                    cost_micros=0,
                    credits_held=held,
                    credits_charged=0,
                    created_at=now,
                )
            )
            if held:
                await self.credits.hold(uow, user_id, held, str(call_id))
        return OpenCall(call_id, user_id, held, self.clock.monotonic(), now)

    async def close(
        self,
        call: OpenCall,
        served: Served,
        outcome: Outcome,
        usage: Usage,
        *,
        error: str | None = None,
    ) -> ClosedCall:
        """Complete the call with its usage and charge it; a call closed already (by the
        sweep) stays as it was and is charged nothing more."""
        latency_ms = round((self.clock.monotonic() - call.started) * 1000)
        cost = served.price.cost(usage)
        async with self.uow() as uow:
            row = await LlmCallRepository.of(uow).pending(call.id)
            if row is None:
                return ClosedCall(call.id, 0, 0, call.created_at)
            charged = 0
            if row.credits_held:
                charged = await self.credits.settle(
                    uow, row.user_id, row.credits_held, cost, str(call.id)
                )
            row.provider, row.model = served.provider, served.model
            row.outcome = outcome
            row.error = error
            row.prompt_tokens = usage.prompt_tokens
            row.completion_tokens = usage.completion_tokens
            row.usage_exact = usage.exact
            row.cost_micros = cost
            row.credits_charged = charged
            row.latency_ms = latency_ms
            row.finished_at = self.clock.now()
        return ClosedCall(call.id, cost, charged, call.created_at)

    async def sweep(self) -> None:
        """Close the calls a crash left open, charging nothing."""
        cutoff = self.clock.now() - ABANDONED_AFTER
        async with self.uow(read_only=True) as uow:
            stale = await LlmCallRepository.of(uow).stale(cutoff, SWEEP_BATCH)
        for call_id in stale:
            async with self.uow() as uow:
                row = await LlmCallRepository.of(uow).pending(call_id)
                if row is None:
                    continue
                if row.credits_held:
                    await self.credits.settle(uow, row.user_id, row.credits_held, 0, str(call_id))
                row.outcome = Outcome.ABANDONED
                row.finished_at = self.clock.now()
        if stale:
            log.warning("llm_calls_abandoned", count=len(stale))
