"""`promptstack import-products` and `promptstack seed-demo`, run as a shell runs them."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from sqlalchemy import func, select
from typer.testing import CliRunner, Result

from promptstack.accounts.models import User
from promptstack.bootstrap import bootstrap
from promptstack.cli import DEMO_EMAIL, app
from promptstack.core.settings import Settings
from promptstack.shop.catalog.models import Product


@pytest.fixture(autouse=True)
def _in_empty_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    work = tmp_path / "cwd"
    work.mkdir()
    monkeypatch.chdir(work)


def run(settings: Settings, *args: str, environment: str = "test") -> Result:
    env = {
        "DATABASE_URL": settings.database_url,
        "ENVIRONMENT": environment,
        "MAILDIR_PATH": str(settings.maildir_path),
        "LOG_JSON": "false",
        "PASSWORD_HASH_TIME_COST": "1",
        "PASSWORD_HASH_MEMORY_COST": "64",
        "PASSWORD_HASH_PARALLELISM": "1",
        "SECRET_KEY": "a-production-secret-key-that-is-long-enough-0123456789",
    }
    return CliRunner().invoke(app, list(args), env=env)


def said(result: Result) -> str:
    return " ".join(result.output.split())


def products(settings: Settings) -> dict[str, tuple[str, int, int, str, int | None, bool]]:
    async def read() -> dict[str, tuple[str, int, int, str, int | None, bool]]:
        container = bootstrap(settings)
        try:
            async with container.uow(read_only=True) as uow:
                rows = await uow.session.execute(select(Product))
                return {
                    p.sku: (p.name, p.price_cents, p.stock, p.kind.value, p.credits, p.active)
                    for p in rows.scalars()
                }
        finally:
            await container.aclose()

    return asyncio.run(read())


def write(tmp_path: Path, text: str, name: str = "products.csv") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


GOOD = """sku,name,description,price_cents,currency,stock,kind,credits,active
MUG-1,Mug,"Stoneware, 350 ml",1250,EUR,40,,,
PACK-1,"1,000 credits",,999,EUR,100,credits,1000,true
OLD-1,Retired,,500,EUR,0,goods,,false
"""


def test_a_file_is_imported_and_a_second_run_updates_by_sku(
    settings: Settings, tmp_path: Path
) -> None:
    first = run(settings, "import-products", str(write(tmp_path, GOOD)))
    assert first.exit_code == 0, first.output
    assert "3 row(s): 3 product(s) were added, 0 were updated, 0 rejected" in said(first)
    changed = (
        "sku,name,price_cents,currency,stock\nmug-1,Big mug,1300,EUR,7\nTEE,T-shirt,2400,EUR,5\n"
    )

    second = run(settings, "import-products", str(write(tmp_path, changed, "again.csv")))

    assert second.exit_code == 0, second.output
    assert "1 product(s) were added, 1 were updated" in said(second)
    assert products(settings) == {
        "mug-1": ("Big mug", 1300, 7, "goods", None, True),
        "PACK-1": ("1,000 credits", 999, 100, "credits", 1000, True),
        "OLD-1": ("Retired", 500, 0, "goods", None, False),
        "TEE": ("T-shirt", 2400, 5, "goods", None, True),
    }


def test_each_rejected_row_is_named_by_line_and_the_rest_go_in(
    settings: Settings, tmp_path: Path
) -> None:
    text = (
        "sku,name,price_cents,currency,stock,kind,credits\n"
        "OK-1,Fine,100,EUR,1,,\n"
        "BAD 2,Space in SKU,100,EUR,1,,\n"
        "OK-3,Negative price,-5,EUR,1,,\n"
        'OK-4,"Two\nlines in a name",100,EUR,1,,\n'
        "OK-5,Lower currency,100,eur,1,,\n"
        "OK-6,Pack without credits,100,EUR,1,credits,\n"
        "OK-7,Price in words,ten,EUR,1,,\n"
        "ok-1,Repeated SKU,100,EUR,1,,\n"
        "OK-9,Too few cells\n"
        "\n"
        "OK-10,After a blank line,100,EUR,1,,\n"
    )

    result = run(settings, "import-products", str(write(tmp_path, text)))

    assert result.exit_code == 1, result.output
    output = said(result)
    for line, reason in [
        (3, "sku:"),
        (4, "price_cents: Input should be greater than or equal to 0"),
        (5, "name: must be a single line of text"),  # the record starts on line 5
        (7, "currency: must be an ISO 4217 currency code"),
        (8, "credits: a credits product must say how many credits it grants"),
        (9, "price_cents: must be a whole number"),
        (10, "sku: ok-1 is on line 2 already"),
        (11, "2 cells where the header has 7"),
    ]:
        assert f"line {line}: {reason}" in output, (line, output)
    assert "10 row(s): 2 product(s) were added, 0 were updated, 8 rejected" in output
    assert set(products(settings)) == {"OK-1", "OK-10"}


def test_a_dry_run_counts_and_writes_nothing(settings: Settings, tmp_path: Path) -> None:
    path = write(tmp_path, GOOD)
    assert run(settings, "import-products", str(path)).exit_code == 0
    before = products(settings)
    more = GOOD + "NEW-1,New,,1,EUR,1,,,\nBAD,,,1,EUR,1,,,\n"

    result = run(settings, "import-products", "--dry-run", str(write(tmp_path, more, "m.csv")))

    assert result.exit_code == 1, result.output
    assert "1 product(s) would be added, 3 would be updated, 1 rejected" in said(result)
    assert products(settings) == before


@pytest.mark.parametrize(
    ("text", "complaint"),
    [
        ("", "the file is empty"),
        ("sku,name,price\nX,Y,1\n", "unknown column(s) price"),
        ("sku,name,currency\nX,Y,EUR\n", "lacks the required column(s) price_cents"),
        ("sku,name,price_cents,currency,sku\n", "a column is named twice"),
    ],
)
def test_a_file_that_cannot_be_imported_is_refused_whole(
    settings: Settings, tmp_path: Path, text: str, complaint: str
) -> None:
    result = run(settings, "import-products", str(write(tmp_path, text)))

    assert result.exit_code == 2, result.output
    assert complaint in said(result)
    assert products(settings) == {}


def test_a_file_that_is_not_utf8_is_refused(settings: Settings, tmp_path: Path) -> None:
    path = tmp_path / "latin1.csv"
    path.write_bytes("sku,name,price_cents,currency\nX,Café,1,EUR\n".encode("latin-1"))

    result = run(settings, "import-products", str(path))

    assert result.exit_code == 2, result.output
    assert "utf-8" in said(result).lower()
    assert products(settings) == {}


def test_a_large_file_goes_in_by_batches(settings: Settings, tmp_path: Path) -> None:
    lines = "".join(f"SKU-{n},Product {n},{n},EUR,{n % 7}\n" for n in range(1, 1201))
    path = write(tmp_path, "sku,name,price_cents,currency,stock\n" + lines)

    result = run(settings, "import-products", str(path))

    assert result.exit_code == 0, result.output
    stored = products(settings)
    assert len(stored) == 1200
    assert stored["SKU-1200"] == ("Product 1200", 1200, 1200 % 7, "goods", None, True)


def test_seed_demo_twice_changes_nothing(settings: Settings) -> None:
    first = run(settings, "seed-demo")
    assert first.exit_code == 0, first.output
    assert "Added 4 demo product(s)" in said(first)
    assert f"Created the demo user {DEMO_EMAIL}" in said(first)
    stocked = products(settings)
    assert {kind for _, _, _, kind, _, _ in stocked.values()} == {"goods", "credits"}

    second = run(settings, "seed-demo")

    assert second.exit_code == 0, second.output
    assert "Added 0 demo product(s)" in said(second)
    assert "exists already" in said(second)
    assert products(settings) == stocked
    assert users(settings) == 1


def test_seed_demo_is_refused_in_production(settings: Settings) -> None:
    result = run(settings, "seed-demo", environment="production")

    assert result.exit_code == 2, result.output
    assert "not in production" in said(result)
    assert products(settings) == {}


def users(settings: Settings) -> int:
    async def count() -> int:
        container = bootstrap(settings)
        try:
            async with container.uow(read_only=True) as uow:
                return int(await uow.session.scalar(select(func.count()).select_from(User)) or 0)
        finally:
            await container.aclose()

    return asyncio.run(count())
