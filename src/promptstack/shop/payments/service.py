"""The payment step of the saga: charge a placed order, refund a cancelled one.

Each order has one `Payment` row, and every decision about money is a change of that
row under its lock, so the step's handlers and jobs, in any process and in any order,
agree on what happened. Calls to the processor happen outside any transaction, between
two of them, and always under a key derived from the order (`<order>:charge`,
`<order>:refund`): whatever a crash interrupts, the next run asks again with the same
key and gets the first call's outcome, never a second charge.

The race the customer can start: a cancel that arrives while a charge is in flight
marks the row (`cancel_requested`); the charge, when it lands, is refunded rather than
reported. A charge whose answer was lost and then given up on (the processor stayed
down past the window, or the order was cancelled between attempts) is looked up by its
reference once the processor answers again, and refunded if it was made.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from promptstack.core.clock import Clock
from promptstack.core.logging import get_logger
from promptstack.core.resilience import Backoff
from promptstack.core.unit_of_work import UnitOfWork, UnitOfWorkFactory
from promptstack.jobs.leases import FatalJobError, RetryLater
from promptstack.jobs.service import JobService
from promptstack.shop.payments.events import (
    FailureReason,
    PaymentCompleted,
    PaymentFailed,
    PaymentRefunded,
    Reserve,
)
from promptstack.shop.payments.gateway import (
    GatewayUnavailable,
    PaymentDeclined,
    PaymentGateway,
)
from promptstack.shop.payments.models import UNCERTAIN, Payment, PaymentStatus
from promptstack.shop.payments.repository import PaymentRepository

log = get_logger(__name__)

CHARGE = "payment.charge"
REFUND = "payment.refund"
RECONCILE = "payment.reconcile"
# An order paid for in full by its discount costs nothing and is never sent to be charged.
FREE = "free"
# Waits while the processor is down grow to this, and never stop for a refund.
MAX_WAIT_SECONDS = 60.0


@dataclass(frozen=True, slots=True)
class ToCharge:
    """A placed order, as the payment step needs it."""

    order_id: uuid.UUID
    user_id: uuid.UUID
    amount_cents: int
    currency: str
    token: str
    lines: tuple[Reserve, ...]


class PaymentService:
    def __init__(
        self,
        uow: UnitOfWorkFactory,
        gateway: PaymentGateway,
        jobs: JobService,
        clock: Clock,
        *,
        retry_window_seconds: float,
        retry_base_seconds: float,
    ) -> None:
        self.uow = uow
        self.gateway = gateway
        self.jobs = jobs
        self.clock = clock
        self.window = timedelta(seconds=retry_window_seconds)
        self.backoff = Backoff(
            retry_base_seconds, cap=max(retry_base_seconds, MAX_WAIT_SECONDS), jitter=True
        )

    async def start(self, uow: UnitOfWork, order: ToCharge) -> None:
        """A placed order: note its payment and send it to be charged."""
        now = self.clock.now()
        payment = Payment(
            order_id=order.order_id,
            user_id=order.user_id,
            amount_cents=order.amount_cents,
            currency=order.currency,
            token=order.token,
            lines=[line.model_dump(mode="json") for line in order.lines],
            status=PaymentStatus.PENDING,
            cancel_requested=False,
            refunded_cents=0,
            attempts=0,
            created_at=now,
            updated_at=now,
        )
        if order.amount_cents == 0:
            payment.status, payment.charge_id = PaymentStatus.CHARGED, FREE
        if not await PaymentRepository.of(uow).insert_if_absent(payment):
            return  # cancelled before it was heard of: nothing to charge
        if payment.status is PaymentStatus.CHARGED:
            self._completed(uow, payment)
        else:
            await self.jobs.submit(uow, None, CHARGE, {"order_id": str(order.order_id)})

    async def cancel(self, uow: UnitOfWork, order_id: uuid.UUID, user_id: uuid.UUID) -> None:
        """The order was cancelled: make sure it ends with its money back."""
        payments = PaymentRepository.of(uow)
        payment = await payments.for_update(order_id)
        now = self.clock.now()
        if payment is None:
            # Heard before the order itself: a tombstone the late `start` will find.
            await payments.insert_if_absent(_tombstone(order_id, user_id, now))
            return
        match payment.status:
            case PaymentStatus.PENDING:
                payment.status = PaymentStatus.VOIDED
                if payment.attempts:  # an earlier attempt's answer may have been lost
                    await self._submit(uow, RECONCILE, order_id)
            case PaymentStatus.CHARGING:
                payment.cancel_requested = True
            case PaymentStatus.CHARGED:
                await self._refund_later(uow, payment)
            case _:
                return
        payment.updated_at = now

    async def charge(self, order_id: uuid.UUID) -> dict[str, Any]:
        """One charge attempt (the `payment.charge` job)."""
        async with self.uow() as uow:
            payment = await self._held(uow, order_id)
            if payment.status not in {PaymentStatus.PENDING, PaymentStatus.CHARGING}:
                return {"status": payment.status}
            now = self.clock.now()
            payment.status = PaymentStatus.CHARGING
            payment.attempts += 1
            payment.first_attempt_at = payment.first_attempt_at or now
            payment.updated_at = now
            amount, currency, token = payment.amount_cents, payment.currency, payment.token
        try:
            charge = await self.gateway.charge(
                f"{order_id}:charge",
                amount_cents=amount,
                currency=currency,
                token=token,
                reference=str(order_id),
            )
        except PaymentDeclined as declined:
            return await self._declined(order_id, declined)
        except GatewayUnavailable as down:
            return await self._unavailable(order_id, down)
        async with self.uow() as uow:
            payment = await self._held(uow, order_id)
            if payment.status is not PaymentStatus.CHARGING:
                return {"status": payment.status}
            payment.status, payment.charge_id = PaymentStatus.CHARGED, charge.id
            payment.updated_at = self.clock.now()
            if payment.cancel_requested:
                await self._refund_later(uow, payment)
            else:
                self._completed(uow, payment)
            return {"status": payment.status, "charge_id": charge.id}

    async def _declined(self, order_id: uuid.UUID, declined: PaymentDeclined) -> dict[str, Any]:
        async with self.uow() as uow:
            payment = await self._held(uow, order_id)
            if payment.status is PaymentStatus.CHARGING:
                payment.status, payment.last_error = PaymentStatus.DECLINED, declined.code
                payment.updated_at = self.clock.now()
                uow.record(
                    PaymentFailed(
                        order_id=order_id, reason=FailureReason.DECLINED, detail=declined.code
                    ),
                    aggregate_id=order_id,
                )
            return {"status": payment.status}

    async def _unavailable(self, order_id: uuid.UUID, down: GatewayUnavailable) -> dict[str, Any]:
        """Wait and try again with the same key, until the window has passed."""
        async with self.uow() as uow:
            payment = await self._held(uow, order_id)
            if payment.status is not PaymentStatus.CHARGING:
                return {"status": payment.status}
            now = self.clock.now()
            payment.last_error, payment.updated_at = str(down)[:500], now
            wait = None
            if payment.cancel_requested:
                payment.status = PaymentStatus.VOIDED
            elif _since(payment.first_attempt_at, now) >= self.window:
                payment.status = PaymentStatus.ABANDONED
                uow.record(
                    PaymentFailed(
                        order_id=order_id, reason=FailureReason.UNAVAILABLE, detail=str(down)[:500]
                    ),
                    aggregate_id=order_id,
                )
            else:
                payment.status = PaymentStatus.PENDING
                wait = self.backoff.delay(payment.attempts)
            if wait is None:
                await self._submit(uow, RECONCILE, order_id)
                return {"status": payment.status}
        raise RetryLater(wait, f"payment gateway unavailable: {down}")

    async def refund(self, order_id: uuid.UUID) -> dict[str, Any]:
        """Give the money back (the `payment.refund` job): waits for the processor as
        long as it takes."""
        async with self.uow(read_only=True, primary=True) as uow:
            payment = await PaymentRepository.of(uow).get(order_id)
            if payment is None or payment.status is not PaymentStatus.REFUNDING:
                return {"status": payment.status if payment else None}
            charge_id, amount = payment.charge_id, payment.amount_cents
        assert charge_id is not None
        if charge_id != FREE:
            try:
                await self.gateway.refund(
                    f"{order_id}:refund", charge_id=charge_id, amount_cents=amount
                )
            except GatewayUnavailable as down:
                raise RetryLater(MAX_WAIT_SECONDS, f"payment gateway unavailable: {down}") from down
        return await self._refunded(order_id, charge_id, amount)

    async def reconcile(self, order_id: uuid.UUID) -> dict[str, Any]:
        """Find out whether a charge given up on was made after all, and refund it (the
        `payment.reconcile` job)."""
        try:
            charge = await self.gateway.find_charge(str(order_id))
        except GatewayUnavailable as down:
            raise RetryLater(MAX_WAIT_SECONDS, f"payment gateway unavailable: {down}") from down
        if charge is None:
            return {"charged": False}
        async with self.uow() as uow:
            payment = await self._held(uow, order_id)
            if payment.status not in UNCERTAIN:
                return {"status": payment.status}
            payment.charge_id = charge.id
            await self._refund_later(uow, payment)
            return {"charged": True, "charge_id": charge.id}

    async def _refunded(self, order_id: uuid.UUID, charge_id: str, amount: int) -> dict[str, Any]:
        async with self.uow() as uow:
            payment = await self._held(uow, order_id)
            if payment.status is PaymentStatus.REFUNDING:
                payment.status, payment.refunded_cents = PaymentStatus.REFUNDED, amount
                payment.updated_at = self.clock.now()
                uow.record(
                    PaymentRefunded(order_id=order_id, payment_id=charge_id, amount_cents=amount),
                    aggregate_id=order_id,
                )
            return {"status": payment.status}

    async def _refund_later(self, uow: UnitOfWork, payment: Payment) -> None:
        payment.status = PaymentStatus.REFUNDING
        await self._submit(uow, REFUND, payment.order_id)

    async def _submit(self, uow: UnitOfWork, kind: str, order_id: uuid.UUID) -> None:
        await self.jobs.submit(uow, None, kind, {"order_id": str(order_id)})

    @staticmethod
    def _completed(uow: UnitOfWork, payment: Payment) -> None:
        assert payment.charge_id is not None
        uow.record(
            PaymentCompleted(
                order_id=payment.order_id,
                payment_id=payment.charge_id,
                amount_cents=payment.amount_cents,
                lines=tuple(Reserve.model_validate(line) for line in payment.lines),
            ),
            aggregate_id=payment.order_id,
        )

    @staticmethod
    async def _held(uow: UnitOfWork, order_id: uuid.UUID) -> Payment:
        payment = await PaymentRepository.of(uow).for_update(order_id)
        if payment is None:
            raise FatalJobError(f"no payment for order {order_id}")
        return payment


def _tombstone(order_id: uuid.UUID, user_id: uuid.UUID, now: datetime) -> Payment:
    return Payment(
        order_id=order_id,
        user_id=user_id,
        amount_cents=0,
        currency="",  # nothing is owed, in no currency
        token="",
        lines=[],
        status=PaymentStatus.VOIDED,
        cancel_requested=True,
        refunded_cents=0,
        attempts=0,
        created_at=now,
        updated_at=now,
    )


def _since(moment: datetime | None, now: datetime) -> timedelta:
    return timedelta(0) if moment is None else now - moment
