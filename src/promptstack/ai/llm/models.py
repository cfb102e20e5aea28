"""The usage ledger: one row per LLM call, whatever became of it."""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum

from sqlalchemy import BigInteger, Boolean, ForeignKey, Index, Integer, String, Uuid, text
from sqlalchemy.orm import Mapped, mapped_column

from promptstack.core.database import Base, UTCDateTime, str_enum


class Outcome(StrEnum):
    # Credits are held and the provider asked; a row left here by a crash is settled
    # as `abandoned` by the sweep, which returns the hold.
    PENDING = "pending"
    SUCCESS = "success"
    ERROR = "error"
    CANCELLED = "cancelled"
    ABANDONED = "abandoned"


class LlmCall(Base):
    """A call as it was billed: written with its credit hold, completed with its usage
    and cost, in one write path (ai/llm/usage.py)."""

    __tablename__ = "llm_calls"
    __table_args__ = (
        Index("ix_llm_calls_user_created_at_id", "user_id", "created_at", "id"),
        Index("ix_llm_calls_created_at_id", "created_at", "id"),
        Index(
            "ix_llm_calls_pending",
            "created_at",
            postgresql_where=text("outcome = 'pending'"),
            sqlite_where=text("outcome = 'pending'"),
        ),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    user_id: Mapped[uuid.UUID] = mapped_column(Uuid, ForeignKey("users.id", ondelete="CASCADE"))
    provider: Mapped[str] = mapped_column(String(32))
    model: Mapped[str] = mapped_column(String(128))
    streamed: Mapped[bool] = mapped_column(Boolean)
    outcome: Mapped[Outcome] = mapped_column(str_enum(Outcome, "llm_outcome"))
    # Why it failed, as the problem document's code said.
    error: Mapped[str | None] = mapped_column(String(64))
    prompt_tokens: Mapped[int] = mapped_column(Integer)
    completion_tokens: Mapped[int] = mapped_column(Integer)
    # False when the provider reported no usage and the tokens were counted here.
    usage_exact: Mapped[bool] = mapped_column(Boolean)
    cost_micros: Mapped[int] = mapped_column(BigInteger)
    credits_held: Mapped[int] = mapped_column(BigInteger)
    credits_charged: Mapped[int] = mapped_column(BigInteger)
    latency_ms: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
