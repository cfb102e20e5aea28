"""The credit ledger: every change of a user's credit balance, with its reason."""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    ForeignKey,
    Index,
    Row,
    String,
    UniqueConstraint,
    Uuid,
)
from sqlalchemy.orm import Mapped, mapped_column

from promptstack.core.database import Base, UTCDateTime, str_enum


class CreditReason(StrEnum):
    # A confirmed order of a credits product; the reference is the order.
    PURCHASE = "purchase"
    # What an LLM call cost; the reference is the call's usage record.
    USAGE = "usage"
    # An administrator's correction; the reference says which.
    ADJUSTMENT = "adjustment"
    # SIGNUP_CREDITS, given once to a new account; the reference is the account.
    SIGNUP = "signup"


class CreditEntry(Base):
    """One change of one balance. (`reason`, `reference`) is unique: the same cause never
    changes a balance twice, however often its message is delivered."""

    __tablename__ = "credit_ledger"
    __table_args__ = (
        UniqueConstraint("reason", "reference"),
        Index("ix_credit_ledger_user_created_at_id", "user_id", "created_at", "id"),
        CheckConstraint("delta <> 0", name="delta_not_zero"),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    user_id: Mapped[uuid.UUID] = mapped_column(Uuid, ForeignKey("users.id", ondelete="CASCADE"))
    delta: Mapped[int] = mapped_column(BigInteger)
    # The balance right after this change.
    balance: Mapped[int] = mapped_column(BigInteger)
    reason: Mapped[CreditReason] = mapped_column(str_enum(CreditReason, "credit_reason"))
    reference: Mapped[str] = mapped_column(String(128))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


# A ledger entry as a list shows it (CreditEntryOut), read without an ORM object.
ShownCreditEntry = Row[Any]
