"""The account: identity, role, subscription tier and credit balance."""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict
from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Index,
    Integer,
    Row,
    String,
    Uuid,
    false,
)
from sqlalchemy.orm import Mapped, mapped_column

from promptstack.core.database import Base, UTCDateTime, str_enum


class Role(StrEnum):
    USER = "user"
    ADMIN = "admin"
    SUPER_ADMIN = "super_admin"


ROLE_RANK: dict[Role, int] = {Role.USER: 0, Role.ADMIN: 1, Role.SUPER_ADMIN: 2}


class Tier(StrEnum):
    FREE = "free"
    PREMIUM = "premium"


def search_key(*parts: str | None) -> str:
    """What case-insensitive search matches against: every searchable field, casefolded."""
    return " ".join(p.casefold() for p in parts if p)


class User(Base):
    __tablename__ = "users"
    __table_args__ = (
        Index("ix_users_created_at_id", "created_at", "id"),
        CheckConstraint("credits >= 0", name="credits_not_negative"),
        CheckConstraint(
            "credit_micros >= 0 AND credit_micros < 1000000", name="credit_micros_under_a_credit"
        ),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    email: Mapped[str] = mapped_column(String(320))
    email_key: Mapped[str] = mapped_column(String(320), unique=True)
    username: Mapped[str] = mapped_column(String(32))
    username_key: Mapped[str] = mapped_column(String(32), unique=True)
    full_name: Mapped[str | None] = mapped_column(String(100))
    search_key: Mapped[str] = mapped_column(String(512))
    password_hash: Mapped[str] = mapped_column(String(255))
    role: Mapped[Role] = mapped_column(str_enum(Role, "role"), default=Role.USER)
    tier: Mapped[Tier] = mapped_column(str_enum(Tier, "tier"), default=Tier.FREE)
    is_active: Mapped[bool] = mapped_column(Boolean, default=True)
    is_verified: Mapped[bool] = mapped_column(Boolean, default=False)
    # Set by administrators; feature flags can target beta testers. The server default
    # gives accounts that predate the column a value.
    is_beta_tester: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    # Changed only through the credit ledger (accounts/credits.py), one entry per change.
    credits: Mapped[int] = mapped_column(BigInteger, default=0)
    # Micro-credits spent on LLM calls and not charged yet: less than one credit, charged
    # with the call that makes them add up to one (accounts/credits.py).
    credit_micros: Mapped[int] = mapped_column(BigInteger, server_default="0")
    preferred_provider: Mapped[str | None] = mapped_column(String(32))
    # Bumped whenever live sessions must end (password change, deactivation): access
    # tokens carry the version they were issued under and stop working once it moves.
    session_version: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)
    deleted_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    def refresh_search_key(self) -> None:
        self.search_key = search_key(self.email, self.username, self.full_name)


# An account as an administrator's list shows it: a row of the columns UserOut shows,
# read by the same attribute names as a User, with no ORM object behind it.
ShownUser = Row[Any]


class UserSnapshot(BaseModel):
    """An account as read, detached from any session: what authentication caches.

    It carries everything a request needs to know about its caller and nothing secret
    (no password hash), so it can sit in a shared cache. Work that changes an account
    loads the live entity inside its unit of work instead.
    """

    model_config = ConfigDict(frozen=True, from_attributes=True)

    id: uuid.UUID
    email: str
    username: str
    full_name: str | None
    role: Role
    tier: Tier
    is_active: bool
    is_verified: bool
    is_beta_tester: bool
    credits: int
    preferred_provider: str | None
    session_version: int
    created_at: datetime
    updated_at: datetime
    deleted_at: datetime | None
    # Sessions (refresh-token families) ended within an access token's lifetime: their
    # access tokens are refused although their signatures still verify.
    ended_sessions: tuple[uuid.UUID, ...] = ()
