"""What the inventory step holds per order."""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import JSON, Uuid
from sqlalchemy.orm import Mapped, mapped_column

from promptstack.core.database import Base, UTCDateTime, str_enum


class ReservationStatus(StrEnum):
    RESERVED = "reserved"
    # Not enough stock: nothing was taken.
    REFUSED = "refused"
    # Given back (the order was cancelled), or never taken (cancelled first).
    RELEASED = "released"


class Reservation(Base):
    __tablename__ = "reservations"

    order_id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    # [{product_id, quantity}] as taken from stock, to give back the same.
    lines: Mapped[list[dict[str, Any]]] = mapped_column(JSON)
    status: Mapped[ReservationStatus] = mapped_column(
        str_enum(ReservationStatus, "reservation_status")
    )
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)
