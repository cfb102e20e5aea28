"""The catalog through the API: administrators add and change products, anyone browses,
and a change is seen on the next read, in every process."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx

from promptstack.bootstrap import bootstrap
from promptstack.core.settings import Settings
from promptstack.main import create_app
from tests.fixtures.support import Api, assert_problem

PRODUCTS = "/api/v1/products"


def goods(**fields: Any) -> dict[str, Any]:
    body = {
        "sku": "MUG-1",
        "name": "Prompt Stack mug",
        "description": "Holds 350 ml of coffee.",
        "price_cents": 1250,
        "currency": "EUR",
        "stock": 20,
    }
    return {**body, **fields}


async def create(api: Api, body: dict[str, Any]) -> dict[str, Any]:
    admin = await api.admin()
    response = await api.client.post(PRODUCTS, json=body, headers=admin.headers)
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


async def test_an_administrator_adds_goods_and_a_credits_pack(api: Api) -> None:
    mug = await create(api, goods())
    pack = await create(
        api,
        {
            "sku": "credits-1000",
            "name": "1,000 credits",
            "price_cents": 999,
            "currency": "EUR",
            "stock": 1000,
            "kind": "credits",
            "credits": 1000,
        },
    )

    assert {key: mug[key] for key in ("sku", "kind", "credits", "active", "stock")} == {
        "sku": "MUG-1",
        "kind": "goods",
        "credits": None,
        "active": True,
        "stock": 20,
    }
    assert (pack["kind"], pack["credits"], pack["description"]) == ("credits", 1000, "")
    shown = await api.client.get(f"{PRODUCTS}/{pack['id']}")
    assert shown.status_code == 200
    assert shown.json() == pack


async def test_a_sku_is_unique_whatever_its_letter_case(api: Api) -> None:
    await create(api, goods(sku="Mug-1"))
    admin = await api.admin()

    response = await api.client.post(PRODUCTS, json=goods(sku="mUG-1"), headers=admin.headers)

    assert_problem(response, 409, "sku_taken")
    listed = await api.client.get(PRODUCTS)
    assert [item["sku"] for item in listed.json()["items"]] == ["Mug-1"]


async def test_a_user_may_not_change_the_catalog(api: Api) -> None:
    mug = await create(api, goods())
    user = await api.user()

    created = await api.client.post(PRODUCTS, json=goods(sku="X-2"), headers=user.headers)
    patched = await api.client.patch(
        f"{PRODUCTS}/{mug['id']}", json={"price_cents": 1}, headers=user.headers
    )
    anonymous = await api.client.post(PRODUCTS, json=goods(sku="X-3"))

    assert_problem(created, 403, "forbidden")
    assert_problem(patched, 403, "forbidden")
    assert_problem(anonymous, 401, "not_authenticated")
    assert (await api.client.get(f"{PRODUCTS}/{mug['id']}")).json()["price_cents"] == 1250


async def test_anyone_searches_by_name_sku_or_description_regardless_of_case(api: Api) -> None:
    await create(api, goods(sku="MUG-1", name="Mug", description="Ceramic, 350 ml"))
    await create(api, goods(sku="TEE-XL", name="T-shirt", description="Organic cotton"))
    await create(api, goods(sku="CAP_1", name="Cap 100% wool", description=""))

    async def skus(q: str) -> list[str]:
        response = await api.client.get(PRODUCTS, params={"q": q})
        assert response.status_code == 200, response.text
        return [item["sku"] for item in response.json()["items"]]

    assert await skus("mug") == ["MUG-1"]
    assert await skus("tee-x") == ["TEE-XL"]
    assert await skus("CERAMIC") == ["MUG-1"]
    # LIKE's wildcards are matched as themselves.
    assert await skus("100%") == ["CAP_1"]
    assert await skus("_") == ["CAP_1"]
    assert await skus("o") == ["TEE-XL", "CAP_1"]


async def test_the_list_pages_by_cursor_in_the_order_products_were_added(api: Api) -> None:
    for n in range(7):
        await create(api, goods(sku=f"SKU-{n}"))
    seen: list[str] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"limit": 3} | ({"cursor": cursor} if cursor else {})
        page = (await api.client.get(PRODUCTS, params=params)).json()
        seen += [item["sku"] for item in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break

    assert seen == [f"SKU-{n}" for n in range(7)]


async def test_withdrawn_products_are_listed_only_for_administrators_who_ask(api: Api) -> None:
    mug = await create(api, goods())
    await create(api, goods(sku="TEE"))
    admin = await api.admin()
    user = await api.user()
    await api.client.patch(f"{PRODUCTS}/{mug['id']}", json={"active": False}, headers=admin.headers)

    public = await api.client.get(PRODUCTS)
    everything = await api.client.get(
        PRODUCTS, params={"include_inactive": "true"}, headers=admin.headers
    )
    refused = await api.client.get(
        PRODUCTS, params={"include_inactive": "true"}, headers=user.headers
    )
    one = await api.client.get(f"{PRODUCTS}/{mug['id']}")

    assert [item["sku"] for item in public.json()["items"]] == ["TEE"]
    assert [item["sku"] for item in everything.json()["items"]] == ["MUG-1", "TEE"]
    assert_problem(refused, 403, "forbidden")
    assert (one.status_code, one.json()["active"]) == (200, False)


async def test_a_change_is_seen_on_the_next_read(api: Api) -> None:
    mug = await create(api, goods())
    admin = await api.admin()
    url = f"{PRODUCTS}/{mug['id']}"
    assert (await api.client.get(url)).json()["price_cents"] == 1250  # now cached

    patched = await api.client.patch(
        url, json={"price_cents": 1399, "name": "Big mug"}, headers=admin.headers
    )

    assert patched.status_code == 200, patched.text
    shown = (await api.client.get(url)).json()
    assert (shown["price_cents"], shown["name"]) == (1399, "Big mug")
    assert shown["updated_at"] > mug["updated_at"]
    found = (await api.client.get(PRODUCTS, params={"q": "big"})).json()["items"]
    assert [item["id"] for item in found] == [mug["id"]]


async def test_turning_a_credits_pack_into_goods_needs_its_credits_removed(api: Api) -> None:
    pack = await create(api, goods(sku="PACK", kind="credits", credits=500))
    admin = await api.admin()
    url = f"{PRODUCTS}/{pack['id']}"

    kept = await api.client.patch(url, json={"kind": "goods"}, headers=admin.headers)
    turned = await api.client.patch(
        url, json={"kind": "goods", "credits": None}, headers=admin.headers
    )
    back = await api.client.patch(url, json={"kind": "credits"}, headers=admin.headers)

    problem = assert_problem(kept, 422, "validation_error")
    assert problem["errors"][0]["loc"] == ["body", "credits"]
    assert (turned.status_code, turned.json()["credits"]) == (200, None)
    assert_problem(back, 422, "validation_error")
    assert (await api.client.get(url)).json()["kind"] == "goods"


async def test_a_sku_cannot_be_changed_to_another_products(api: Api) -> None:
    await create(api, goods(sku="MUG"))
    tee = await create(api, goods(sku="TEE"))
    admin = await api.admin()

    response = await api.client.patch(
        f"{PRODUCTS}/{tee['id']}", json={"sku": "mug"}, headers=admin.headers
    )
    recased = await api.client.patch(
        f"{PRODUCTS}/{tee['id']}", json={"sku": "tee"}, headers=admin.headers
    )

    assert_problem(response, 409, "sku_taken")
    assert (recased.status_code, recased.json()["sku"]) == (200, "tee")


async def test_every_change_is_audited(api: Api) -> None:
    mug = await create(api, goods())
    admin = await api.admin()
    await api.client.patch(f"{PRODUCTS}/{mug['id']}", json={"stock": 3}, headers=admin.headers)
    # The same value again changes nothing and is not audited.
    await api.client.patch(f"{PRODUCTS}/{mug['id']}", json={"stock": 3}, headers=admin.headers)

    log = await api.client.get("/api/v1/admin/audit-log", headers=admin.headers)

    actions = [(e["action"], e["details"].get("changed")) for e in log.json()["items"]]
    assert ("product.updated", ["stock"]) in actions
    assert [a for a, _ in actions].count("product.updated") == 1
    assert "product.created" in [a for a, _ in actions]


async def test_a_change_in_one_process_is_seen_by_another_on_its_next_read(
    settings: Settings, shared_redis_url: str, cache_namespace: str
) -> None:
    """Two containers share the database and Redis, as two API processes do: one caches
    the product, the other changes it, and the first reads the change next time."""
    shared = settings.model_copy(
        update={"redis_url": shared_redis_url, "cache_namespace": cache_namespace}
    )
    async with serving(shared) as reader, serving(shared) as writer:
        await reader.container.cache.wait_listening()
        mug = await create(writer, goods())
        url = f"{PRODUCTS}/{mug['id']}"
        assert (await reader.client.get(url)).json()["stock"] == 20  # cached by the reader
        admin = await writer.admin()

        changed = await writer.client.patch(url, json={"stock": 7}, headers=admin.headers)

        assert changed.status_code == 200, changed.text
        assert (await reader.client.get(url)).json()["stock"] == 7


@asynccontextmanager
async def serving(settings: Settings) -> AsyncIterator[Api]:
    container = bootstrap(settings)
    app = create_app(container=container)
    transport = httpx.ASGITransport(app=app)
    try:
        container.cache.start()
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
            yield Api(http, container, settings)
    finally:
        await container.aclose()
