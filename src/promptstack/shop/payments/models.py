"""The payment step's own state per order, and the sandbox processor's books."""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import JSON, BigInteger, Boolean, Index, Integer, String, Text, Uuid, false
from sqlalchemy.orm import Mapped, mapped_column

from promptstack.core.database import Base, UTCDateTime, str_enum


class PaymentStatus(StrEnum):
    # Waiting for a charge attempt (the first, or the next after an outage).
    PENDING = "pending"
    # A charge call is in flight, or was when its runner stopped: the next run asks
    # the processor again with the same key, which answers what the first call did.
    CHARGING = "charging"
    CHARGED = "charged"
    DECLINED = "declined"
    # The processor stayed unreachable past PAYMENT_RETRY_WINDOW_SECONDS.
    ABANDONED = "abandoned"
    # Cancelled before any charge attempt.
    VOIDED = "voided"
    REFUNDING = "refunding"
    REFUNDED = "refunded"


# No charge was known to succeed, but one may have: a call whose answer was lost.
UNCERTAIN = frozenset({PaymentStatus.ABANDONED, PaymentStatus.VOIDED})


class Payment(Base):
    """One order's payment, as the payment step knows it."""

    __tablename__ = "payments"
    order_id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    user_id: Mapped[uuid.UUID] = mapped_column(Uuid)
    amount_cents: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    token: Mapped[str] = mapped_column(String(128))
    # [{product_id, quantity}], passed on to the inventory step with the payment.
    lines: Mapped[list[dict[str, Any]]] = mapped_column(JSON)
    status: Mapped[PaymentStatus] = mapped_column(str_enum(PaymentStatus, "payment_status"))
    # The customer cancelled while a charge was in flight: refund it once it lands.
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    charge_id: Mapped[str | None] = mapped_column(String(128))
    refunded_cents: Mapped[int] = mapped_column(BigInteger, default=0)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(Text)
    first_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)


class SandboxOperation(Base):
    """The sandbox processor's books: each charge and refund it made, by idempotency
    key. Written in transactions of their own, as a real processor's would be."""

    __tablename__ = "payment_sandbox"
    __table_args__ = (Index("ix_payment_sandbox_reference", "reference"),)

    key: Mapped[str] = mapped_column(String(255), primary_key=True)
    id: Mapped[str] = mapped_column(String(64), unique=True)
    # "charge" or "refund"
    kind: Mapped[str] = mapped_column(String(8))
    # "succeeded" or a decline code
    outcome: Mapped[str] = mapped_column(String(32))
    amount_cents: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    reference: Mapped[str] = mapped_column(String(200))
    charge_id: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
