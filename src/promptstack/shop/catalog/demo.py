"""The sample catalog `promptstack seed-demo` stocks: goods, and a pack of LLM credits."""

from __future__ import annotations

import uuid

from promptstack.shop.catalog.models import ProductKind
from promptstack.shop.catalog.service import NewProduct

DEMO_PRODUCTS = (
    NewProduct(
        sku="DEMO-MUG",
        name="Prompt Stack mug",
        description="Stoneware, 350 ml; survives the dishwasher and long prompts.",
        price_cents=1250,
        currency="EUR",
        stock=40,
    ),
    NewProduct(
        sku="DEMO-TEE",
        name="Prompt Stack T-shirt",
        description="Organic cotton, printed with the saga's sequence diagram.",
        price_cents=2400,
        currency="EUR",
        stock=25,
    ),
    NewProduct(
        sku="DEMO-STICKERS",
        name="Sticker sheet",
        description="Twelve stickers. Only three in stock: try ordering four.",
        price_cents=300,
        currency="EUR",
        stock=3,
    ),
    NewProduct(
        sku="DEMO-CREDITS-1000",
        name="1,000 LLM credits",
        description="Added to your credit balance once the order is confirmed.",
        price_cents=999,
        currency="EUR",
        stock=1_000_000,
        kind=ProductKind.CREDITS,
        credits=1000,
    ),
)

# Fixed, so that the API's examples name products that exist once the demo is seeded.
_NAMESPACE = uuid.UUID("5b0f8a52-3f0e-4c36-9a51-0d6c2f1e7a90")
DEMO_PRODUCT_IDS = {product.sku: uuid.uuid5(_NAMESPACE, product.sku) for product in DEMO_PRODUCTS}
DEMO_MUG_ID = DEMO_PRODUCT_IDS["DEMO-MUG"]
