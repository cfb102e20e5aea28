"""Products from a CSV file: each row checked by the API's own rules, then upserted by
SKU in batches (one statement each).

A row that breaks a rule is reported with its line number and left out; the rest are
imported. The header names the columns, in any order; `sku`, `name`, `price_cents` and
`currency` are required, and an empty cell means the API's default.
"""

from __future__ import annotations

import csv
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import IO, Any

from pydantic import ValidationError

from promptstack.core.errors import readable, where
from promptstack.shop.catalog.rules import sku_key
from promptstack.shop.catalog.schemas import ProductIn
from promptstack.shop.catalog.service import PRODUCT_FIELDS, CatalogService, NewProduct

COLUMNS = PRODUCT_FIELDS
REQUIRED = ("sku", "name", "price_cents", "currency")
_NUMBERS = frozenset({"price_cents", "stock", "credits"})
_TRUTH = {"true": True, "yes": True, "1": True, "false": False, "no": False, "0": False}
BATCH_SIZE = 500


class UnreadableFile(ValueError):
    """The file as a whole cannot be imported: no header, or not the columns we know."""


@dataclass(frozen=True, slots=True)
class Rejected:
    line: int
    reason: str


@dataclass(slots=True)
class ImportReport:
    rows: int = 0
    created: int = 0
    updated: int = 0
    rejected: list[Rejected] = field(default_factory=list)


def read_products(file: IO[str]) -> Iterator[tuple[int, NewProduct | Rejected]]:
    """Each data row of `file` with the line it starts on: a product, or why not."""
    reader = csv.reader(file)
    try:
        header = [name.strip().lower() for name in next(reader)]
    except StopIteration:
        raise UnreadableFile("the file is empty: the first line must name the columns") from None
    unknown = sorted(set(header) - set(COLUMNS))
    if unknown:
        raise UnreadableFile(
            f"unknown column(s) {', '.join(unknown)}; the columns are {', '.join(COLUMNS)}"
        )
    missing = [name for name in REQUIRED if name not in header]
    if missing:
        raise UnreadableFile(f"the header lacks the required column(s) {', '.join(missing)}")
    if len(set(header)) != len(header):
        raise UnreadableFile("a column is named twice in the header")
    start = reader.line_num + 1
    for cells in reader:
        line, start = start, reader.line_num + 1
        if not any(cell.strip() for cell in cells):
            continue
        if len(cells) != len(header):
            yield line, Rejected(line, f"{len(cells)} cells where the header has {len(header)}")
            continue
        yield line, _product(line, dict(zip(header, cells, strict=True)))


def _product(line: int, cells: dict[str, str]) -> NewProduct | Rejected:
    values: dict[str, Any] = {}
    for name, cell in cells.items():
        text = cell.strip() if name != "description" else cell
        if text == "":
            continue
        if name in _NUMBERS:
            try:
                values[name] = int(text, 10)
            except ValueError:
                return Rejected(line, f"{name}: must be a whole number, not {text[:40]!r}")
        elif name == "active":
            if text.lower() not in _TRUTH:
                return Rejected(line, f"active: must be true or false, not {text[:40]!r}")
            values[name] = _TRUTH[text.lower()]
        else:
            values[name] = text
    try:
        return ProductIn.model_validate(values).draft()
    except ValidationError as exc:
        reasons = [
            f"{where(tuple(str(p) for p in error['loc'])) or 'row'}: {readable(error)}"
            for error in exc.errors(include_url=False, include_input=False)
        ]
        return Rejected(line, "; ".join(reasons))


async def import_products(
    catalog: CatalogService,
    file: IO[str],
    *,
    dry_run: bool = False,
    batch_size: int = BATCH_SIZE,
    advanced: Callable[[int], None] = lambda rows: None,
) -> ImportReport:
    """Import the products of `file`; `advanced(n)` is told as each `n` rows are done."""
    report = ImportReport()
    seen: dict[str, int] = {}
    batch: list[NewProduct] = []

    async def flush() -> None:
        if batch:
            done = await catalog.import_products(batch, dry_run=dry_run)
            report.created += done.created
            report.updated += done.updated
            advanced(len(batch))
            batch.clear()

    for line, read in read_products(file):
        report.rows += 1
        product = read
        if isinstance(read, NewProduct):
            key = sku_key(read.sku)
            if key in seen:
                product = Rejected(line, f"sku: {read.sku} is on line {seen[key]} already")
            else:
                seen[key] = line
        if isinstance(product, Rejected):
            report.rejected.append(product)
            advanced(1)
            continue
        batch.append(product)
        if len(batch) >= batch_size:
            await flush()
    await flush()
    return report
