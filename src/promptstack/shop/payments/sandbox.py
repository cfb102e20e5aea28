"""The sandbox processor of the embedded default: real bookkeeping, no real money.

It keeps its books in this service's database, each operation in a transaction of its
own (a real processor commits its side whatever happens to ours), keyed by the
idempotency key, so a retry after a crash finds what the first call did, in any
process. The test tokens: `tok_visa` pays, `tok_chargeDeclined` is declined, and
`tok_gatewayError` fails as an unreachable processor does, every time.
"""

from __future__ import annotations

import secrets

from promptstack.core.clock import Clock
from promptstack.core.unit_of_work import UnitOfWorkFactory
from promptstack.shop.payments.gateway import (
    Charge,
    GatewayUnavailable,
    PaymentDeclined,
    Refund,
)
from promptstack.shop.payments.models import SandboxOperation
from promptstack.shop.payments.repository import SandboxRepository

_DECLINES = {"tok_chargeDeclined": "card_declined"}


class SandboxGateway:
    def __init__(self, uow: UnitOfWorkFactory, clock: Clock) -> None:
        self.uow = uow
        self.clock = clock

    async def charge(
        self, key: str, *, amount_cents: int, currency: str, token: str, reference: str
    ) -> Charge:
        if token == "tok_gatewayError":  # noqa: S105 (a test token)
            raise GatewayUnavailable("the sandbox processor is unreachable for this token")
        outcome = "succeeded" if token == "tok_visa" else _DECLINES.get(token, "invalid_token")  # noqa: S105
        async with self.uow() as uow:
            kept = await SandboxRepository.of(uow).record(
                SandboxOperation(
                    key=key,
                    id=f"ch_{secrets.token_hex(12)}",
                    kind="charge",
                    outcome=outcome,
                    amount_cents=amount_cents,
                    currency=currency,
                    reference=reference,
                    created_at=self.clock.now(),
                )
            )
        if kept.outcome != "succeeded":
            raise PaymentDeclined(kept.outcome, f"the card was refused ({kept.outcome})")
        return Charge(kept.id, kept.amount_cents, kept.currency, kept.reference)

    async def refund(self, key: str, *, charge_id: str, amount_cents: int) -> Refund:
        async with self.uow() as uow:
            books = SandboxRepository.of(uow)
            charge = await books.by_id(charge_id)
            if charge is None or charge.kind != "charge" or charge.outcome != "succeeded":
                raise LookupError(f"the sandbox made no charge {charge_id}")
            kept = await books.record(
                SandboxOperation(
                    key=key,
                    id=f"re_{secrets.token_hex(12)}",
                    kind="refund",
                    outcome="succeeded",
                    amount_cents=amount_cents,
                    currency=charge.currency,
                    reference=charge.reference,
                    charge_id=charge_id,
                    created_at=self.clock.now(),
                )
            )
            if await books.refunded(charge_id) > charge.amount_cents:
                raise ValueError(f"refunds of {charge_id} would exceed the charge")
        return Refund(kept.id, charge_id, kept.amount_cents)

    async def find_charge(self, reference: str) -> Charge | None:
        async with self.uow(read_only=True, primary=True) as uow:
            found = await SandboxRepository.of(uow).charge_for(reference)
        return (
            None
            if found is None
            else Charge(found.id, found.amount_cents, found.currency, found.reference)
        )
