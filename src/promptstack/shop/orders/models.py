"""The tables orders keep besides their streams: the idempotency keys of placing, and
the read model that lists and shows orders."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, Index, Integer, Row, String, Uuid, text
from sqlalchemy.orm import Mapped, mapped_column

from promptstack.core.database import Base, UTCDateTime


class OrderRequest(Base):
    """A client's `Idempotency-Key` for placing an order, and the order it placed.

    Written in the transaction that places the order, so a key is bound only to an
    order that exists; a request that failed leaves the key free. `body_hash` tells a
    retry (same body) from a reuse of the key for another order (a different one).
    """

    __tablename__ = "order_requests"

    user_id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    key: Mapped[str] = mapped_column(String(255), primary_key=True)
    body_hash: Mapped[str] = mapped_column(String(64))
    order_id: Mapped[uuid.UUID] = mapped_column(Uuid)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)


# What the saga has not settled yet; the partial index below holds only these.
_UNSETTLED = "status IN ('pending', 'paid')"


class OrderView(Base):
    """An order as its stream made it, up to `version`: the read model (CQRS).

    Kept by the projection (`projection.py`) and rebuilt from the event store at will;
    nothing else writes it, and no command reads it. Its columns are what lists filter
    and sort on, and what an order is shown with.
    """

    __tablename__ = "order_views"
    __table_args__ = (
        Index("ix_order_views_user_created_at_id", "user_id", "created_at", "id"),
        Index("ix_order_views_user_status_created_at_id", "user_id", "status", "created_at", "id"),
        Index("ix_order_views_status_created_at_id", "status", "created_at", "id"),
        Index("ix_order_views_created_at_id", "created_at", "id"),
        Index(
            "ix_order_views_unsettled",
            "updated_at",
            postgresql_where=text(_UNSETTLED),
            sqlite_where=text(_UNSETTLED),
        ),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    user_id: Mapped[uuid.UUID] = mapped_column(Uuid)
    status: Mapped[str] = mapped_column(String(16))
    cancel_reason: Mapped[str | None] = mapped_column(String(32))
    items: Mapped[list[dict[str, Any]]] = mapped_column(JSON)
    currency: Mapped[str] = mapped_column(String(3))
    discount_percent: Mapped[int] = mapped_column(Integer)
    subtotal_cents: Mapped[int] = mapped_column(BigInteger)
    discount_cents: Mapped[int] = mapped_column(BigInteger)
    total_cents: Mapped[int] = mapped_column(BigInteger)
    payment_id: Mapped[str | None] = mapped_column(String(128))
    version: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)


# A view row as lists read it, without an ORM object.
ShownOrder = Row[Any]
