"""The tables orders keep besides their streams: the idempotency keys of placing."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import String, Uuid
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
