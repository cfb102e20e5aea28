"""Products as the API shows and accepts them."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated

from pydantic import (
    AfterValidator,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    StringConstraints,
    ValidationInfo,
    field_validator,
)

from promptstack.http.schemas import Input, Output, clean_text, not_null, one_line
from promptstack.shop.catalog.models import ProductKind
from promptstack.shop.catalog.rules import (
    DESCRIPTION_MAX_LENGTH,
    MAX_CREDITS,
    MAX_PRICE_CENTS,
    MAX_STOCK,
    NAME_MAX_LENGTH,
    SKU_PATTERN,
    check_currency,
    check_sku,
    credits_problem,
)
from promptstack.shop.catalog.service import NewProduct, ProductChanges

Sku = Annotated[
    str,
    StringConstraints(max_length=64),
    AfterValidator(check_sku),
    Field(
        json_schema_extra={"minLength": 1, "pattern": SKU_PATTERN.pattern},
        description="1 to 64 of A-Z, a-z, 0-9, '.', '_' and '-'; unique regardless of case.",
    ),
]
Name = Annotated[
    str,
    StringConstraints(min_length=1, max_length=NAME_MAX_LENGTH, strip_whitespace=True),
    AfterValidator(clean_text),
    AfterValidator(one_line),
]
Description = Annotated[
    str, StringConstraints(max_length=DESCRIPTION_MAX_LENGTH), AfterValidator(clean_text)
]
PriceCents = Annotated[
    StrictInt,
    Field(ge=0, le=MAX_PRICE_CENTS, description="In the currency's minor units (cents)."),
]
Currency = Annotated[
    str,
    StringConstraints(min_length=3, max_length=3),
    AfterValidator(check_currency),
    Field(description="An ISO 4217 code in upper case.", examples=["EUR"]),
]
Stock = Annotated[StrictInt, Field(ge=0, le=MAX_STOCK)]
Credits = Annotated[
    StrictInt,
    Field(ge=1, le=MAX_CREDITS, description="Credits granted per unit (credits products)."),
]


class ProductOut(Output):
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


class ProductIn(Input):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "sku": "CREDITS-1000",
                    "name": "1,000 LLM credits",
                    "price_cents": 999,
                    "currency": "EUR",
                    "stock": 1000000,
                    "kind": "credits",
                    "credits": 1000,
                }
            ]
        }
    )

    sku: Sku
    name: Name
    description: Description = ""
    price_cents: PriceCents
    currency: Currency
    stock: Stock = 0
    kind: ProductKind = ProductKind.GOODS
    credits: Annotated[Credits | None, Field(validate_default=True)] = None
    active: StrictBool = True

    @field_validator("credits")
    @classmethod
    def _credits_match_kind(cls, credits: int | None, info: ValidationInfo) -> int | None:
        kind = info.data.get("kind")
        # A kind that failed its own check is reported there alone.
        problem = None if kind is None else credits_problem(kind.value, credits)
        if problem is not None:
            raise ValueError(problem)
        return credits

    def draft(self) -> NewProduct:
        return NewProduct(**self.model_dump())


class ProductPatch(Input):
    """Changes to a product; a field left out stays as it is. `credits: null` removes the
    credits (when the product becomes goods)."""

    model_config = ConfigDict(json_schema_extra={"examples": [{"price_cents": 1299, "stock": 250}]})

    sku: Annotated[Sku | None, not_null()] = None
    name: Annotated[Name | None, not_null()] = None
    description: Annotated[Description | None, not_null()] = None
    price_cents: Annotated[PriceCents | None, not_null()] = None
    currency: Annotated[Currency | None, not_null()] = None
    stock: Annotated[Stock | None, not_null()] = None
    kind: Annotated[ProductKind | None, not_null()] = None
    credits: Credits | None = None
    active: Annotated[StrictBool | None, not_null()] = None

    def changes(self) -> ProductChanges:
        values = self.model_dump(exclude_unset=True)
        clear = "credits" in values and values["credits"] is None
        if clear:
            del values["credits"]
        return ProductChanges(**values, clear_credits=clear)
