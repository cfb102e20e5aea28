"""Bad input at the catalog's routes: a 4xx problem document, never a 500, and nothing
written (no product, no audit entry)."""

from __future__ import annotations

import pytest

from promptstack.core.pagination import MAX_LIMIT
from tests.fixtures.bad_input import (
    EXTRAS,
    MEGABYTE,
    NIL_UUID,
    Authorization,
    Endpoint,
    JsonBodies,
    Listing,
    Listings,
    PathIds,
    Scene,
    assert_invalid,
    encode,
    stored_state,
)
from tests.fixtures.support import Api, assert_problem

PRODUCTS = "/api/v1/products"

NUMBERS = ("price_cents", "stock", "credits")
BAD_VALUES = [
    ("sku", ""),
    ("sku", "has space"),
    ("sku", "x" * 65),
    ("sku", "ümlaut"),
    ("sku", "slash/es"),
    ("sku", "MEGA" + MEGABYTE),
    ("name", ""),
    ("name", "   "),
    ("name", "x" * 201),
    ("name", "two\nlines"),
    ("description", "x" * 5001),
    ("currency", "eur"),
    ("currency", "EURO"),
    ("currency", "XXX"),
    ("currency", "XAU"),
    ("currency", ""),
    ("kind", "service"),
    ("kind", "GOODS"),
    ("price_cents", -1),
    ("price_cents", 1_000_000_001),
    ("price_cents", 10**30),
    ("price_cents", 12.5),
    ("price_cents", 12.0),
    ("price_cents", "1250"),
    ("price_cents", True),
    ("price_cents", None),
    ("stock", -1),
    ("stock", 1_000_000_001),
    ("stock", "5"),
    ("stock", 2.5),
    ("active", "yes"),
    ("active", 1),
    ("active", None),
]
CREATE = Endpoint(
    "create",
    "POST",
    "/products",
    "admin",
    lambda s: {
        "sku": "NEW-1",
        "name": "New product",
        "price_cents": 100,
        "currency": "EUR",
        "stock": 5,
    },
    required=("sku", "name", "price_cents", "currency"),
    text=("sku", "name", "description", "currency"),
    choices=("kind", *NUMBERS),
    bad_values=[
        *BAD_VALUES,
        # Goods grant no credits; a credits pack needs a positive number of them.
        ("credits", 100),
    ],
)
PATCH = Endpoint(
    "patch",
    "PATCH",
    "/products/{product_id}",
    "admin",
    lambda s: {"price_cents": 200},
    text=("sku", "name", "description", "currency"),
    nullable=("credits",),
    choices=("kind", *NUMBERS),
    bad_values=[
        *[(name, value) for name, value in BAD_VALUES if value is not None],
        *[(name, None) for name in ("sku", "name", "description", "currency", "stock", "kind")],
        # The stored product is goods: credits do not suit it.
        ("credits", 100),
    ],
)
READ = Endpoint("read", "GET", "/products/{product_id}", "anonymous")


class TestCatalogBadInput(JsonBodies, PathIds, Listings, Authorization):
    endpoints = (CREATE, PATCH, READ)
    listings = (
        Listing(
            "/products",
            "anonymous",
            (
                {"q": ""},
                {"q": "x" * 101},
                {"q": MEGABYTE[:10_000]},
                {"include_inactive": "maybe"},
            ),
        ),
    )
    extras = (
        *[extra for extra in EXTRAS if "credits" not in extra],
        {"sku_key": "new-1"},
        {"search_key": "new"},
        {"updated_at": "2026-01-01T00:00:00Z"},
        {"price": 1.5},
    )

    async def prepare(self, scene: Scene) -> None:
        admin = await scene.api.admin()
        body = {"sku": "OLD-1", "name": "Stored", "price_cents": 500, "currency": "EUR"}
        created = await scene.api.client.post(PRODUCTS, json=body, headers=admin.headers)
        assert created.status_code == 201, created.text
        scene.names["product_id"] = created.json()["id"]


SUITE = TestCatalogBadInput()


async def test_the_largest_values_are_accepted(api: Api) -> None:
    scene = await SUITE.scene(api, "admin")
    body = {
        "sku": "A" * 64,
        "name": "n" * 200,
        "description": "d" * 5000,
        "price_cents": 1_000_000_000,
        "currency": "JPY",
        "stock": 1_000_000_000,
        "kind": "credits",
        "credits": 10_000_000,
    }

    response = await CREATE.send(scene, encode(body))

    assert response.status_code == 201, response.text
    assert {key: response.json()[key] for key in body} == body


async def test_a_user_lists_no_withdrawn_products_and_changes_nothing(api: Api) -> None:
    scene = await SUITE.scene(api, "user")

    listed = await api.client.get(
        PRODUCTS, params={"include_inactive": "true"}, headers=scene.caller.headers
    )
    patched = await api.client.patch(
        f"{PRODUCTS}/{scene.names['product_id']}",
        json={"stock": 0},
        headers=scene.caller.headers,
    )

    assert_problem(listed, 403, "forbidden")
    assert_problem(patched, 403, "forbidden")
    assert await stored_state(api) == scene.before


async def test_the_largest_page_is_served_and_an_unknown_product_is_not_found(api: Api) -> None:
    ok = await api.client.get(PRODUCTS, params={"limit": MAX_LIMIT})
    unknown = await api.client.get(f"{PRODUCTS}/{NIL_UUID}")

    assert ok.status_code == 200
    assert_problem(unknown, 404, "not_found")


@pytest.mark.parametrize("credits", [None, 0, -5, 10_000_001, "10", 1.5, True])
async def test_a_credits_pack_needs_a_positive_whole_number_of_credits(
    api: Api, credits: object
) -> None:
    scene = await SUITE.scene(api, "admin")
    body = {**CREATE.valid_body(scene), "kind": "credits", "credits": credits}

    response = await CREATE.send(scene, encode(body))

    assert_invalid(response, ["body", "credits"])
    assert await stored_state(api) == scene.before
