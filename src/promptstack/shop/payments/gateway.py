"""What the payment step needs from a payment processor, whichever one it is.

Every call carries an idempotency key derived from the order, so a call retried after a
timeout, a crash or a duplicated message finds the first call's outcome at the processor
instead of charging or refunding again.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True, slots=True)
class Charge:
    id: str
    amount_cents: int
    currency: str
    reference: str


@dataclass(frozen=True, slots=True)
class Refund:
    id: str
    charge_id: str
    amount_cents: int


class PaymentDeclined(Exception):
    """The processor answered and said no (`code`, such as `card_declined`): final."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


class GatewayUnavailable(Exception):
    """No answer that settles the call (down, timed out, a 5xx): try again later, with
    the same key."""


class PaymentGateway(Protocol):
    async def charge(
        self, key: str, *, amount_cents: int, currency: str, token: str, reference: str
    ) -> Charge:
        """Charge once per `key`; raises `PaymentDeclined` or `GatewayUnavailable`."""
        ...

    async def refund(self, key: str, *, charge_id: str, amount_cents: int) -> Refund:
        """Refund once per `key`; raises `GatewayUnavailable`."""
        ...

    async def find_charge(self, reference: str) -> Charge | None:
        """The successful charge made for `reference`, if any: how a charge whose answer
        was lost during an outage is found once the processor answers again."""
        ...
