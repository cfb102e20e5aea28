"""Products and their table."""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum

from pydantic import BaseModel, ConfigDict
from sqlalchemy import BigInteger, Boolean, CheckConstraint, Index, Integer, String, Text, Uuid
from sqlalchemy.orm import Mapped, mapped_column

from promptstack.core.database import Base, UTCDateTime, str_enum


class ProductKind(StrEnum):
    GOODS = "goods"
    # Grants `credits` LLM credits per unit once its order is confirmed.
    CREDITS = "credits"


class Product(Base):
    __tablename__ = "products"
    __table_args__ = (
        CheckConstraint("stock >= 0", name="stock_not_negative"),
        CheckConstraint("price_cents >= 0", name="price_not_negative"),
        CheckConstraint(
            "(kind = 'credits' AND credits > 0) OR (kind = 'goods' AND credits IS NULL)",
            name="credits_match_kind",
        ),
        Index("ix_products_created_at_id", "created_at", "id"),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    sku: Mapped[str] = mapped_column(String(64))
    # The SKU in lower case: unique, so SKUs differing in case alone are one product.
    sku_key: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(Text, default="")
    # Every searchable field casefolded, which `?q=` matches against.
    search_key: Mapped[str] = mapped_column(Text)
    price_cents: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    stock: Mapped[int] = mapped_column(Integer, default=0)
    kind: Mapped[ProductKind] = mapped_column(str_enum(ProductKind, "product_kind"))
    credits: Mapped[int | None] = mapped_column(Integer)
    # Inactive products are not sold and not listed, but old orders still name them.
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)


def product_search_key(sku: str, name: str, description: str) -> str:
    return " ".join(part.casefold() for part in (sku, name, description) if part)


class ProductView(BaseModel):
    """A product as read, detached from any session: what the product cache holds."""

    model_config = ConfigDict(frozen=True, from_attributes=True)

    id: uuid.UUID
    sku: str
    name: str
    description: str
    price_cents: int
    currency: str
    stock: int
    kind: ProductKind
    credits: int | None
    active: bool
    created_at: datetime
    updated_at: datetime
