"""Benchmark reading orders: listing them as the read model grows, loading one as its
stream grows.

Two measurements, each in both modes (`embedded`: a SQLite file in a temporary folder;
`scaleout`: a fresh PostgreSQL database, and Redis as the service's cache):

* list: GET /api/v1/orders, served from the read model (`order_views`, CQRS), with
  10^3, 10^5 and 10^6 orders in it (`--sizes`). Every list is a keyset page over an
  index (shop/orders/repository.py), so its cost should not depend on how many orders
  there are: flat is the goal. The baseline is the smallest size of the same run, and
  the figure reported for each query is p50(size) / p50(smallest) and the same for p99
  (1.0: flat), and the p50 ratio over the control's (below). Five queries, each
  `--requests` times in turn over one keep-alive connection, after a warm-up of 20 each:
  - own: a customer's first page (the default limit, 20);
  - own_page3: that customer's third page, after the cursor the service handed out
    for the second one;
  - admin_all: an administrator's first page of everyone's orders, newest first;
  - admin_status: the same with `?status=shipped`, the rare status here;
  - admin_user: the same with `?user_id=` the customer;
  and, in the same turns, a control that reads no order (GET /api/v1/users/me by the
  customer): on a shared machine every latency drifts from one size to the next, and
  the control's ratio says by how much.

  The rows are written straight into `order_views` with SQLAlchemy Core (10,000 a
  statement, a transaction each), not through the saga, which would take hours for 10^6
  orders and measure nothing more: nothing else writes the read model, and the rows
  are what the projection writes (projection.py `view_row`), their items `OrderLine`s
  dumped as JSON. The bench's own connection writes them (on SQLite with
  synchronous=OFF and a large page cache, which the service's connections do not
  share), a couple of minutes for 10^6. They belong to 10,000 users with no row in
  `users` (order_views has no foreign key), are spread over a year, and are
  `delivered` (70 %), `confirmed` (22 %), `cancelled` (7.9 %) or `shipped` (0.1 %,
  the rare status: an order shipped but not yet delivered is a short state). The
  customer, registered through the API, owns 60 of them from the first size on (three
  full pages) and no more at any size; 25 `shipped` orders of other users are there
  from the start too, so every query answers a full page at every size and only the
  size of the table changes.

  The read model grows in place, size after size; after each growth step the table is
  analyzed (SQLite: ANALYZE; PostgreSQL: VACUUM (ANALYZE)), since the planner of the
  service chooses its index from those statistics, and production tables have them. The
  service (one uvicorn process, as bench/run.py starts it, not pinned) is started
  afresh for each size: a SQLite connection reads the statistics when it opens, so a
  pooled one kept from the smaller size would plan with the old ones. Lists are not
  cached (OrderService.list reads the repository every time), so nothing hides the
  growth. The plan of each query at each size (EXPLAIN QUERY PLAN; on PostgreSQL
  EXPLAIN (ANALYZE, BUFFERS)) is kept in the JSON, and printed for a query whose p50
  grows by more than half beyond the control's.

* load: loading one order (Streams.load, as every command does) whose stream holds 10,
  10^3 and 10^4 events (`--events`), with its snapshot and without (a replay of every
  event). The streams are written through the real append path (Streams.append from
  the container bootstrap() builds, 100 events per unit of work), so the snapshots are
  taken as in production, every ORDER_SNAPSHOT_EVERY (50) events: the first event is
  the `order.created` that domain.place decides, the rest alternate `order.paid` and
  `order.confirmed` (the fold does not check transitions, the commands do; a saga
  that re-delivered these would look the same). Each load runs in a fresh read-only
  unit of work on the primary, as OrderService.history reads: a command opens its own
  too, so the time includes taking a connection from the pool and ending the
  transaction, which one unit of work shared by all the loads would hide. Snapshot
  and replay loads alternate, so a drift of the machine touches both alike. Reported: median and
  p99 of each, replay / snapshot (how many times faster the snapshot makes a load) and
  snapshot(size) / snapshot(smallest size): flat is the goal, since the snapshot
  leaves fewer than 50 events to fold. A stream shorter than 50 events has no snapshot,
  so at 10 events both loads replay; the table says each stream's snapshot version.

Run `python bench/order_reads.py --help`. Needs PostgreSQL (and Redis) for scaleout;
not part of the test suite.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import random
import secrets
import sqlite3
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal, cast

import httpx
from harness import (
    SERVICE_APP,
    BenchError,
    Server,
    add_common_options,
    clean_env,
    cli,
    common_options,
    console,
    create_admin,
    exit_code,
    figures_table,
    fresh_database,
    git_state,
    median,
    out,
    package_versions,
    percentile,
    rounded,
    say,
    uvicorn_command,
    write_json,
)
from run import Account, authorization, bench_user, log_in
from sqlalchemy import Select, Table, event, func, insert, select
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from promptstack.bootstrap import Container, bootstrap
from promptstack.core.envelope import Event
from promptstack.core.pagination import DEFAULT_LIMIT, Cursor, PageRequest
from promptstack.core.settings import Settings
from promptstack.events.models import Snapshot, StoredEvent
from promptstack.events.sourcing import Loaded, Streams
from promptstack.migrations.runner import upgrade
from promptstack.shop.orders import domain
from promptstack.shop.orders.domain import Order, OrderStatus
from promptstack.shop.orders.events import (
    CancelReason,
    OrderConfirmed,
    OrderLine,
    OrderPaid,
)
from promptstack.shop.orders.models import OrderView

# The very statements the service lists with, built once per filter combination.
from promptstack.shop.orders.repository import _LISTS

Mode = Literal["embedded", "scaleout"]
MODES: tuple[Mode, ...] = ("embedded", "scaleout")
Part = Literal["list", "load"]
PARTS: tuple[Part, ...] = ("list", "load")
QueryName = Literal["own", "own_page3", "admin_all", "admin_status", "admin_user"]

ORDERS_PATH = "/api/v1/orders"
ME_PATH = "/api/v1/users/me"
# A request that reads no order, timed in the same turns as the lists: how far the shared
# machine drifted between sizes, which every list's ratio carries too.
CONTROL = "control"
APP_NAME = "Prompt Stack"
VIEWS = cast(Table, OrderView.__table__)

# list: the read model's rows.
CUSTOMER_ORDERS = 3 * DEFAULT_LIMIT  # the customer's third page is a full one
RARE = OrderStatus.SHIPPED
RARE_SHARE = 0.001
RARE_SEEDED = DEFAULT_LIMIT + 5  # a full first page of the rare status at every size
SEEDED = CUSTOMER_ORDERS + RARE_SEEDED
# The share of each other status, the rest being `delivered`.
STATUS_SHARES = ((RARE, RARE_SHARE), (OrderStatus.CANCELLED, 0.079), (OrderStatus.CONFIRMED, 0.22))
# How many events made an order of each status (placed, paid, confirmed, shipped, ...).
VERSIONS = {
    OrderStatus.CONFIRMED: 3,
    OrderStatus.SHIPPED: 4,
    OrderStatus.DELIVERED: 5,
    OrderStatus.CANCELLED: 3,
}
CANCEL_REASONS = (
    CancelReason.PAYMENT_DECLINED,
    CancelReason.OUT_OF_STOCK,
    CancelReason.CUSTOMER_REQUEST,
)
OTHER_USERS = 10_000
PRODUCTS = 40
BASKETS = 500
BATCH_ROWS = 10_000
YEAR_SECONDS = 365 * 24 * 3600.0
WARMUP_REQUESTS = 20
# A query whose p50 grows by more than this factor (drift taken out) has its plans printed.
GROWTH_NOTE = 1.5

# load: how the streams are written.
CHUNK_EVENTS = 100
WARMUP_LOADS = 3

# --------------------------------------------------------------------------- options


@dataclass(frozen=True)
class Options:
    modes: tuple[Mode, ...]
    parts: tuple[Part, ...]
    sizes: tuple[int, ...]
    requests: int
    events: tuple[int, ...]
    loads: int
    json_path: Path | None
    postgres: str
    database: str
    redis_url: str
    seed: int
    settings: dict[str, str]  # --set: for the service's processes (list)


def _counts(text: str) -> tuple[int, ...]:
    """`1000,100_000,1e6` as (1000, 100000, 1000000): ascending, each once."""
    try:
        values = {int(float(item.replace("_", ""))) for item in text.split(",") if item.strip()}
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not a list of counts: {text!r}") from exc
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"not a list of positive counts: {text!r}")
    return tuple(sorted(values))


def parse_args(argv: Sequence[str] | None = None) -> Options:
    parser = argparse.ArgumentParser(
        prog="python bench/order_reads.py",
        description=(
            "Benchmark reading orders: GET /api/v1/orders as the read model grows (list), "
            "and loading an order with and without its snapshot as its stream grows (load)."
        ),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument(
        "--mode",
        dest="modes",
        action="append",
        choices=MODES,
        help="mode to run; repeat for several (default: both)",
    )
    parser.add_argument(
        "--part",
        dest="parts",
        action="append",
        choices=PARTS,
        help="measurement to run in each mode; repeat for several (default: both)",
    )
    parser.add_argument(
        "--sizes",
        type=_counts,
        default=(1000, 100_000, 1_000_000),
        help="list: orders in the read model, one size after another (comma-separated)",
    )
    parser.add_argument(
        "--requests", type=int, default=200, help="list: timed requests per query and size"
    )
    parser.add_argument(
        "--events",
        type=_counts,
        default=(10, 1000, 10_000),
        help="load: events in each order's stream (comma-separated)",
    )
    parser.add_argument(
        "--loads", type=int, default=50, help="load: timed loads per stream, each way"
    )
    add_common_options(parser, database="promptstack_bench_reads")
    parser.add_argument("--seed", type=int, default=1, help="list: seed of the generated rows")
    args = parser.parse_args(argv)
    if args.requests < 1 or args.loads < 1:
        parser.error("--requests and --loads must be at least 1")
    if min(args.sizes) < SEEDED:
        parser.error(f"--sizes must be at least {SEEDED}, the orders there from the start")
    extra = common_options(parser, args)
    return Options(
        modes=tuple(dict.fromkeys(args.modes or MODES)),
        parts=tuple(dict.fromkeys(args.parts or PARTS)),
        sizes=args.sizes,
        requests=args.requests,
        events=args.events,
        loads=args.loads,
        json_path=args.json_path,
        postgres=args.postgres,
        database=args.database,
        redis_url=args.redis_url,
        seed=args.seed,
        settings=extra,
    )


# --------------------------------------------------------------------------- summaries


@dataclass(frozen=True)
class Latency:
    p50_ms: float
    p99_ms: float
    mean_ms: float
    count: int

    @classmethod
    def of(cls, seconds: Sequence[float]) -> Latency:
        ms = [value * 1000 for value in seconds]
        return cls(median(ms), percentile(ms, 0.99), sum(ms) / len(ms), len(ms))


def _ratio(value: float, baseline: float) -> float:
    return value / baseline if baseline > 0 else float("nan")


# --------------------------------------------------------------------------- list: rows


@dataclass(frozen=True)
class Basket:
    """An order's lines as the projection writes them, and the amounts they make."""

    items: list[dict[str, Any]]
    discount_percent: int
    money: domain.Amounts


class RowMaker:
    """The read model's rows, from a seeded generator: the same orders in every mode."""

    def __init__(self, seed: int, customer_id: uuid.UUID, end: datetime) -> None:
        self.rng = random.Random(seed)  # noqa: S311 -- test data, not secrets
        self.customer_id = customer_id
        self.start = end - timedelta(seconds=YEAR_SECONDS)
        self.users = [self._uuid() for _ in range(OTHER_USERS)]
        products = [self._product(n) for n in range(PRODUCTS)]
        self.baskets = [self._basket(products) for _ in range(BASKETS)]
        self.made = 0

    def _uuid(self) -> uuid.UUID:
        return uuid.UUID(int=self.rng.getrandbits(128), version=4)

    def _product(self, n: int) -> OrderLine:
        credits = n % 5 == 0  # a fifth of the catalog sells LLM credits
        return OrderLine(
            product_id=self._uuid(),
            sku=f"BENCH-{n:03d}",
            name=f"Bench credits pack {n}" if credits else f"Bench product {n}",
            kind="credits" if credits else "goods",
            credits=1000 if credits else None,
            unit_price_cents=self.rng.randrange(300, 20_000),
            quantity=1,
        )

    def _basket(self, products: list[OrderLine]) -> Basket:
        chosen = self.rng.sample(products, self.rng.choice((1, 1, 1, 2, 2, 3)))
        lines = [line.model_copy(update={"quantity": self.rng.randint(1, 3)}) for line in chosen]
        # model_copy skips validation: check the lines are ones an event could carry.
        lines = [OrderLine.model_validate(line.model_dump()) for line in lines]
        discount = 10 if self.rng.random() < 0.2 else 0
        return Basket(
            items=[line.model_dump(mode="json") for line in lines],
            discount_percent=discount,
            money=domain.amounts(lines, discount),
        )

    def _status(self) -> OrderStatus:
        draw = self.rng.random()
        for status, share in STATUS_SHARES:
            if draw < share:
                return status
            draw -= share
        return OrderStatus.DELIVERED

    def row(self, user_id: uuid.UUID, status: OrderStatus) -> dict[str, Any]:
        """One order as `projection.view_row` writes it."""
        rng = self.rng
        basket = rng.choice(self.baskets)
        created = self.start + timedelta(seconds=rng.random() * YEAR_SECONDS)
        reason: str | None = None
        payment: str | None = f"pay_{rng.getrandbits(64):016x}"
        if status is OrderStatus.CANCELLED:
            reason = str(rng.choice(CANCEL_REASONS))
            if reason == CancelReason.PAYMENT_DECLINED:
                payment = None
        return {
            "id": self._uuid(),
            "user_id": user_id,
            "status": str(status),
            "cancel_reason": reason,
            "items": basket.items,
            "currency": "EUR",
            "discount_percent": basket.discount_percent,
            "subtotal_cents": basket.money.subtotal_cents,
            "discount_cents": basket.money.discount_cents,
            "total_cents": basket.money.total_cents,
            "payment_id": payment,
            "version": VERSIONS[status],
            "created_at": created,
            "updated_at": created + timedelta(seconds=rng.random() * 7 * 24 * 3600),
        }

    def _seeded(self) -> list[dict[str, Any]]:
        """The customer's orders and the rare status's first page, there from the start."""
        mine = [
            self.row(
                self.customer_id, self.rng.choice((OrderStatus.CONFIRMED, OrderStatus.DELIVERED))
            )
            for _ in range(CUSTOMER_ORDERS)
        ]
        rare = [self.row(self.rng.choice(self.users), RARE) for _ in range(RARE_SEEDED)]
        return mine + rare

    def batches(self, size: int) -> Iterator[list[dict[str, Any]]]:
        """The rows that take the read model from the rows made so far to `size`."""
        while self.made < size:
            count = min(BATCH_ROWS, size - self.made)
            batch = self._seeded() if self.made == 0 else []
            batch += [
                self.row(self.rng.choice(self.users), self._status())
                for _ in range(count - len(batch))
            ]
            self.made += len(batch)
            yield batch


# --------------------------------------------------------------------------- list: database


def fill_engine(url: str) -> AsyncEngine:
    """The bench's own connection for writing the rows, past the service. SQLite gets a
    page cache that holds the indexes of 10^6 rows, which keeps random-key inserts fast."""
    engine = create_async_engine(url)
    if engine.dialect.name == "sqlite":

        @event.listens_for(engine.sync_engine, "connect")
        def _on_connect(dbapi_connection: Any, _record: Any) -> None:
            cursor = dbapi_connection.cursor()
            for pragma in (
                "journal_mode=WAL",
                "synchronous=OFF",
                "busy_timeout=30000",
                "cache_size=-2097152",  # KiB: 2 GiB
            ):
                cursor.execute(f"PRAGMA {pragma}")
            cursor.close()

    return engine


@dataclass(frozen=True)
class FillStep:
    size: int
    added: int
    insert_seconds: float
    analyze_seconds: float

    @property
    def rows_per_second(self) -> float:
        return self.added / self.insert_seconds if self.insert_seconds > 0 else float("nan")


async def grow(url: str, maker: RowMaker, size: int) -> FillStep:
    """Insert rows until the read model holds `size`, then refresh the planner's
    statistics, as a table in production has them."""
    engine = fill_engine(url)
    try:
        before = maker.made
        started = time.perf_counter()
        for batch in maker.batches(size):
            async with engine.begin() as connection:
                await connection.execute(insert(VIEWS), batch)
        inserted = time.perf_counter()
        if engine.dialect.name == "sqlite":
            async with engine.connect() as connection:
                await connection.exec_driver_sql("ANALYZE")
                # Fold the write-ahead log into the file: the service starts on a clean one.
                await connection.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
        else:
            async with engine.connect() as connection:
                autocommit = await connection.execution_options(isolation_level="AUTOCOMMIT")
                # VACUUM too: the visibility map and hint bits set, as on a settled table,
                # and no autovacuum of the new rows starting in the middle of the requests.
                await autocommit.exec_driver_sql("VACUUM (ANALYZE) order_views")
        done = time.perf_counter()
    finally:
        await engine.dispose()
    return FillStep(size, maker.made - before, inserted - started, done - inserted)


@dataclass(frozen=True)
class Query:
    """One list request, and the statement of the repository's that answers it."""

    name: QueryName
    as_admin: bool
    by_user: bool = False  # ?user_id= the customer (an administrator's request)
    status: OrderStatus | None = None
    page: int = 1

    def params(self, customer: Account, cursor: str | None) -> dict[str, str]:
        params: dict[str, str] = {}
        if self.by_user:
            params["user_id"] = customer.id
        if self.status is not None:
            params["status"] = str(self.status)
        if cursor is not None:
            params["cursor"] = cursor
        return params

    def describe(self) -> str:
        """The request, for the report."""
        asked = {"user_id": "<customer>"} if self.by_user else {}
        if self.status is not None:
            asked["status"] = str(self.status)
        if self.page > 1:
            asked["cursor"] = f"<page {self.page}>"
        query = "&".join(f"{name}={value}" for name, value in asked.items())
        who = "an administrator" if self.as_admin else "the customer"
        return f"GET {ORDERS_PATH}{'?' + query if query else ''} by {who}"

    def statement(
        self, customer: Account, cursor: str | None
    ) -> tuple[Select[tuple[Any, ...]], dict[str, Any]]:
        """What OrderViewRepository.page runs for this request (users see their own)."""
        user_id = uuid.UUID(customer.id) if self.by_user or not self.as_admin else None
        status = None if self.status is None else str(self.status)
        listing = _LISTS[(user_id is not None, status is not None)]
        params: dict[str, Any] = {}
        if user_id is not None:
            params["user_id"] = user_id
        if status is not None:
            params["status"] = status
        after = None if cursor is None else Cursor.decode(cursor)
        statement, values = listing.statement(PageRequest(after=after), params)
        return cast(Select[tuple[Any, ...]], statement), values


QUERIES: tuple[Query, ...] = (
    Query("own", as_admin=False),
    Query("own_page3", as_admin=False, page=3),
    Query("admin_all", as_admin=True),
    Query("admin_status", as_admin=True, status=RARE),
    Query("admin_user", as_admin=True, by_user=True),
)


async def explain(
    url: str, queries: Sequence[Query], customer: Account, cursors: dict[QueryName, str | None]
) -> dict[str, list[str]]:
    """Each query's plan on the bench's own connection (same database, same statistics).
    On PostgreSQL the plan is run (ANALYZE), which shows how many rows it touched."""
    engine = create_async_engine(url)
    plans: dict[str, list[str]] = {}
    try:
        async with engine.connect() as connection:
            prefix = (
                "EXPLAIN QUERY PLAN "
                if engine.dialect.name == "sqlite"
                else "EXPLAIN (ANALYZE, BUFFERS) "
            )
            for query in queries:
                statement, values = query.statement(customer, cursors[query.name])
                sql = statement.params(**values).compile(
                    dialect=engine.dialect, compile_kwargs={"literal_binds": True}
                )
                rows = (await connection.exec_driver_sql(prefix + str(sql))).all()
                # SQLite: (id, parent, notused, detail); PostgreSQL: one line a row.
                plans[query.name] = [str(row[-1]) for row in rows]
    finally:
        await engine.dispose()
    return plans


# --------------------------------------------------------------------------- list: service


def service_settings(mode: Mode, options: Options, workdir: Path, url: str) -> dict[str, str]:
    """As bench/run.py sets the service up: limits no run reaches, quiet logs."""
    settings = {
        "SECRET_KEY": secrets.token_urlsafe(48),
        "APP_NAME": APP_NAME,
        # Tokens that outlive the run, across the restarts of the service.
        "ACCESS_TOKEN_EXPIRE_MINUTES": str(24 * 60),
        "LOG_LEVEL": "WARNING",
        "RATE_LIMIT_PER_MINUTE": str(10**9),
        "RATE_LIMIT_BURST": str(10**9),
        "EMAIL_BACKEND": "maildir",
        "MAILDIR_PATH": str(workdir / "mail"),
        "SHUTDOWN_GRACE_SECONDS": "1",
        "DATABASE_URL": url,
    }
    if mode == "scaleout":
        settings["REDIS_URL"] = options.redis_url
        settings["CACHE_NAMESPACE"] = options.database  # keys of their own, never flushed
    return settings | options.settings


def started(name: str, env: dict[str, str], workdir: Path) -> Server:
    server = Server(name, uvicorn_command(SERVICE_APP), env, workdir)
    server.start()
    try:
        server.wait_ready("/health/ready")
    except BaseException:
        server.stop()
        raise
    return server


def _get(client: httpx.Client, token: str, params: dict[str, str]) -> httpx.Response:
    return client.get(ORDERS_PATH, params=params, headers=authorization(token))


def page_three_cursor(client: httpx.Client, customer: Account) -> str:
    """The cursor of the customer's third page, as a client gets it: from the second."""
    cursor: str | None = None
    for _ in range(2):
        answer = _get(client, customer.token, {} if cursor is None else {"cursor": cursor})
        if answer.status_code != 200:
            raise BenchError(f"listing answered {answer.status_code}: {answer.text[:300]}")
        cursor = answer.json().get("next_cursor")
        if cursor is None:
            raise BenchError("the customer's orders ended before the third page")
    assert cursor is not None
    return cursor


def check(query: Query, answer: httpx.Response, customer: Account) -> None:
    """A full page of what the query asks for, newest first: else the figures would
    compare different work."""
    if answer.status_code != 200:
        raise BenchError(f"{query.name} answered {answer.status_code}: {answer.text[:300]}")
    items: list[dict[str, Any]] = answer.json()["items"]
    problems = []
    if len(items) != DEFAULT_LIMIT:
        problems.append(f"{len(items)} orders, not {DEFAULT_LIMIT}")
    if (query.by_user or not query.as_admin) and any(i["user_id"] != customer.id for i in items):
        problems.append("orders of other users")
    if query.status is not None and any(i["status"] != query.status for i in items):
        problems.append(f"orders not {query.status}")
    moments = [(datetime.fromisoformat(i["created_at"]), i["id"]) for i in items]
    if moments != sorted(moments, reverse=True):
        problems.append("orders not newest first")
    if problems:
        raise BenchError(f"{query.name} answered {', '.join(problems)}: {str(items)[:300]}")


@dataclass(frozen=True)
class Call:
    name: str
    path: str
    token: str
    params: dict[str, str]


def measure(
    base_url: str, customer: Account, admin_token: str, requests: int
) -> tuple[dict[str, Latency], dict[QueryName, str | None]]:
    """Each query (and the control) `requests` times, in turn, one request at a time
    over one keep-alive connection: latency alone, without queueing. Taking turns
    spreads a drift of the shared machine over all the queries alike."""
    with httpx.Client(base_url=base_url, timeout=60.0) as client:
        page3 = page_three_cursor(client, customer)
        cursors: dict[QueryName, str | None] = {
            query.name: page3 if query.page == 3 else None for query in QUERIES
        }
        for query in QUERIES:
            token = admin_token if query.as_admin else customer.token
            answer = _get(client, token, query.params(customer, cursors[query.name]))
            check(query, answer, customer)
        calls = [
            Call(
                query.name,
                ORDERS_PATH,
                admin_token if query.as_admin else customer.token,
                query.params(customer, cursors[query.name]),
            )
            for query in QUERIES
        ] + [Call(CONTROL, ME_PATH, customer.token, {})]

        def get(call: Call) -> httpx.Response:
            return client.get(call.path, params=call.params, headers=authorization(call.token))

        for _ in range(WARMUP_REQUESTS):
            for call in calls:
                get(call)
        samples: dict[str, list[float]] = {call.name: [] for call in calls}
        for _ in range(requests):
            for call in calls:
                begin = time.perf_counter()
                answer = get(call)
                elapsed = time.perf_counter() - begin
                if answer.status_code != 200:
                    raise BenchError(f"{call.name} answered {answer.status_code}: {answer.text}")
                samples[call.name].append(elapsed)
    return {name: Latency.of(values) for name, values in samples.items()}, cursors


@dataclass
class ListResult:
    settings: dict[str, str]
    fill: list[FillStep] = field(default_factory=list)
    latency: dict[int, dict[str, Latency]] = field(default_factory=dict)
    plans: dict[int, dict[str, list[str]]] = field(default_factory=dict)
    loadavg: dict[int, tuple[float, float, float]] = field(default_factory=dict)


def run_list(mode: Mode, options: Options, workdir: Path, url: str) -> ListResult:
    settings = service_settings(mode, options, workdir, url)
    result = ListResult(settings={k: v for k, v in settings.items() if k != "SECRET_KEY"})
    env = clean_env(settings)
    cli(env, workdir, "migrate")
    admin_email, admin_password = create_admin(env, workdir)
    # The customer registers through the API, before any order is in: its orders are
    # among the first rows.
    server = started("service-setup", env, workdir)
    try:
        customer = bench_user(server.url)
        with httpx.Client(base_url=server.url, timeout=60.0) as client:
            admin_token = log_in(client, admin_email, admin_password)
    finally:
        server.stop()
    maker = RowMaker(options.seed, uuid.UUID(customer.id), datetime.now(UTC))
    for size in options.sizes:
        say(f"{mode} list: filling the read model up to {size:,} orders")
        step = asyncio.run(grow(url, maker, size))
        result.fill.append(step)
        say(
            f"{mode} list: {step.added:,} rows in {step.insert_seconds:.1f} s "
            f"({step.rows_per_second:,.0f}/s), statistics in {step.analyze_seconds:.1f} s"
        )
        server = started(f"service-{size}", env, workdir)
        try:
            latency, cursors = measure(server.url, customer, admin_token, options.requests)
        except BenchError as exc:
            raise BenchError(f"{exc}\n--- service log ---\n{server.log_tail()}") from exc
        finally:
            server.stop()
        result.latency[size] = latency
        result.loadavg[size] = os.getloadavg()
        result.plans[size] = asyncio.run(explain(url, QUERIES, customer, cursors))
        say(
            f"{mode} list {size:,}: "
            + ", ".join(f"{name} {figures.p50_ms:.2f}" for name, figures in latency.items())
            + " ms p50"
        )
    return result


def summarize_list(result: ListResult) -> dict[str, Any]:
    sizes = sorted(result.latency)
    baseline = result.latency[sizes[0]] if sizes else {}
    requests: dict[str, str] = {query.name: query.describe() for query in QUERIES}
    requests[CONTROL] = f"GET {ME_PATH} by the customer (reads no order: the control)"
    queries: dict[str, Any] = {}
    for name, request in requests.items():
        per_size = {}
        for size in sizes:
            figures, base = result.latency[size][name], baseline[name]
            control, control_base = result.latency[size][CONTROL], baseline[CONTROL]
            p50_ratio = _ratio(figures.p50_ms, base.p50_ms)
            per_size[str(size)] = asdict(figures) | {
                "p50_ratio": p50_ratio,
                "p99_ratio": _ratio(figures.p99_ms, base.p99_ms),
                # The machine's drift taken out, as far as it slows every request alike.
                "p50_ratio_over_control": _ratio(
                    p50_ratio, _ratio(control.p50_ms, control_base.p50_ms)
                ),
            }
        queries[name] = {"request": request, "sizes": per_size}
    return {
        "settings": result.settings,
        "baseline_size": sizes[0] if sizes else None,
        "fill": [asdict(step) | {"rows_per_second": step.rows_per_second} for step in result.fill],
        "queries": queries,
        "plans": {str(size): plans for size, plans in result.plans.items()},
        "loadavg_after": {str(size): load for size, load in result.loadavg.items()},
    }


def print_list(mode: Mode, summary: dict[str, Any], requests: int) -> None:
    fill_rows = [
        (
            f"{step['size']:,}",
            f"{step['added']:,}",
            f"{step['insert_seconds']:.1f}",
            f"{step['rows_per_second']:,.0f}",
            f"{step['analyze_seconds']:.1f}",
        )
        for step in summary["fill"]
    ]
    out.print(
        figures_table(
            f"{mode} list: filling order_views",
            ("orders", "rows added", "insert s", "rows/s", "analyze s"),
            fill_rows,
        )
    )
    rows = []
    for name, query in summary["queries"].items():
        for size, figures in query["sizes"].items():
            rows.append(
                (
                    name,
                    f"{int(size):,}",
                    f"{figures['p50_ms']:.2f}",
                    f"{figures['p99_ms']:.2f}",
                    f"{figures['p50_ratio']:.2f}",
                    f"{figures['p99_ratio']:.2f}",
                    "" if name == CONTROL else f"{figures['p50_ratio_over_control']:.2f}",
                )
            )
    baseline = summary["baseline_size"]
    out.print(
        figures_table(
            f"{mode} list: GET {ORDERS_PATH}, {requests} requests per query and size",
            (
                "query",
                "orders",
                "p50 ms",
                "p99 ms",
                "p50/base",
                "p99/base",
                "/control",
            ),
            rows,
        )
    )
    out.print(
        f"base: {baseline:,} orders (1.00 = flat). {CONTROL}: GET {ME_PATH}, timed in the "
        "same turns; it reads no order, so its p50/base is how far the machine drifted "
        "between sizes. /control: a list's p50/base over the control's, that drift taken out.",
        highlight=False,
    )
    largest = max(summary["plans"], key=int, default=None)
    for name, query in summary["queries"].items():
        figures = query["sizes"].get(largest) if largest else None
        grown = None if figures is None else figures["p50_ratio_over_control"]
        if name != CONTROL and grown is not None and grown > GROWTH_NOTE:
            out.print(
                f"[yellow]{name}: p50 grew {grown:.2f}x beyond the control; its plans:[/yellow]"
            )
            for size, plans in summary["plans"].items():
                out.print(f"  at {int(size):,} orders:", highlight=False)
                for line in plans[name]:
                    out.print(f"    {line}", markup=False, highlight=False, soft_wrap=True)


# --------------------------------------------------------------------------- load


def order_events(order_id: uuid.UUID, user_id: uuid.UUID, size: int) -> list[Event]:
    """`size` events of one order: placed as domain.place decides, then paid and
    confirmed over and over (the fold takes them; no command would)."""
    line = OrderLine(
        product_id=uuid.uuid4(),
        sku="BENCH-MUG",
        name="Bench mug",
        kind="goods",
        unit_price_cents=1250,
        quantity=2,
    )
    events: list[Event] = list(
        domain.place(
            Order(id=order_id),
            user_id=user_id,
            lines=[line],
            currency="EUR",
            discount_percent=0,
            payment_token="tok_visa",  # noqa: S106 -- the sandbox's test token
        )
    )
    for n in range(1, size):
        if n % 2:
            events.append(OrderPaid(order_id=order_id, payment_id=f"pay_{n}", amount_cents=2500))
        else:
            events.append(OrderConfirmed(order_id=order_id, user_id=user_id))
    return events


@dataclass(frozen=True)
class LoadFigures:
    events: int
    snapshot_version: int | None
    build_seconds: float
    snapshot: Latency
    replay: Latency


async def build_stream(container: Container, streams: Streams[Order], size: int) -> str:
    """An order's stream of `size` events, appended as the service appends, a chunk per
    unit of work; checked to hold them all, and the snapshot Streams.append took."""
    order_id = uuid.uuid4()
    stream = str(order_id)
    events = order_events(order_id, uuid.uuid4(), size)
    loaded: Loaded[Order] = Loaded(streams.fold.initial(stream), 0)
    for first in range(0, size, CHUNK_EVENTS):
        async with container.uow() as uow:
            loaded = await streams.append(uow, stream, loaded, events[first : first + CHUNK_EVENTS])
    if loaded.version != size:
        raise BenchError(f"the stream reached version {loaded.version}, not {size}")
    return stream


async def stored(container: Container, stream: str) -> tuple[int, int | None]:
    """The stream's events in the store, and its snapshot's version (None: none)."""
    async with container.database.read_sessions() as session:
        count = await session.scalar(
            select(func.count()).select_from(StoredEvent).where(StoredEvent.stream == stream)
        )
        version = await session.scalar(select(Snapshot.version).where(Snapshot.stream == stream))
    return int(count or 0), version


async def timed_load(
    container: Container, streams: Streams[Order], stream: str, *, use_snapshot: bool
) -> tuple[float, Loaded[Order]]:
    begin = time.perf_counter()
    async with container.uow(read_only=True, primary=True) as uow:
        loaded = await streams.load(uow, stream, use_snapshot=use_snapshot)
    return time.perf_counter() - begin, loaded


async def measure_stream(
    container: Container, streams: Streams[Order], size: int, loads: int, mode: Mode
) -> LoadFigures:
    begin = time.perf_counter()
    stream = await build_stream(container, streams, size)
    build_seconds = time.perf_counter() - begin
    events, snapshot_version = await stored(container, stream)
    expected = size // streams.snapshot_every * streams.snapshot_every or None
    if events != size or snapshot_version != expected:
        raise BenchError(
            f"the stream of {size} events holds {events}, its snapshot is at version "
            f"{snapshot_version} (expected {expected})"
        )
    _, with_snapshot = await timed_load(container, streams, stream, use_snapshot=True)
    _, replayed = await timed_load(container, streams, stream, use_snapshot=False)
    if with_snapshot != replayed or replayed.version != size:
        raise BenchError(
            f"the snapshot and the replay disagree at {size} events:\n{with_snapshot}\n{replayed}"
        )
    for _ in range(WARMUP_LOADS):
        for use_snapshot in (True, False):
            await timed_load(container, streams, stream, use_snapshot=use_snapshot)
    samples: dict[bool, list[float]] = {True: [], False: []}
    for _ in range(loads):
        for use_snapshot in (True, False):
            seconds, _ = await timed_load(container, streams, stream, use_snapshot=use_snapshot)
            samples[use_snapshot].append(seconds)
    figures = LoadFigures(
        size,
        snapshot_version,
        build_seconds,
        Latency.of(samples[True]),
        Latency.of(samples[False]),
    )
    say(
        f"{mode} load {size:,} events: snapshot {figures.snapshot.p50_ms:.2f} ms, "
        f"replay {figures.replay.p50_ms:.2f} ms p50 (built in {build_seconds:.1f} s)"
    )
    return figures


@dataclass
class LoadResult:
    snapshot_every: int
    streams: list[LoadFigures] = field(default_factory=list)


async def run_load(mode: Mode, options: Options, url: str) -> LoadResult:
    settings = Settings(
        _env_file=None,
        database_url=url,
        secret_key=secrets.token_urlsafe(48),  # the default would be warned about
        log_level="WARNING",
        log_json=False,
        email_backend="console",
    )
    await asyncio.to_thread(upgrade, settings)
    container = bootstrap(settings)
    try:
        # The Streams[Order] bootstrap() built for the order service: its fold and its
        # ORDER_SNAPSHOT_EVERY.
        streams = container.shop.orders.streams
        result = LoadResult(snapshot_every=streams.snapshot_every)
        for size in options.events:
            result.streams.append(
                await measure_stream(container, streams, size, options.loads, mode)
            )
        return result
    finally:
        await container.aclose()


def summarize_load(result: LoadResult) -> dict[str, Any]:
    smallest = result.streams[0].snapshot.p50_ms if result.streams else float("nan")
    return {
        "snapshot_every": result.snapshot_every,
        "streams": {
            str(figures.events): {
                "snapshot_version": figures.snapshot_version,
                "events_after_snapshot": figures.events - (figures.snapshot_version or 0),
                "build_seconds": figures.build_seconds,
                "snapshot": asdict(figures.snapshot),
                "replay": asdict(figures.replay),
                "replay_over_snapshot_p50": _ratio(figures.replay.p50_ms, figures.snapshot.p50_ms),
                "replay_over_snapshot_p99": _ratio(figures.replay.p99_ms, figures.snapshot.p99_ms),
                "snapshot_over_smallest_p50": _ratio(figures.snapshot.p50_ms, smallest),
            }
            for figures in result.streams
        },
    }


def print_load(mode: Mode, summary: dict[str, Any], loads: int) -> None:
    rows = [
        (
            f"{int(size):,}",
            "none" if figures["snapshot_version"] is None else f"{figures['snapshot_version']:,}",
            f"{figures['snapshot']['p50_ms']:.2f}",
            f"{figures['snapshot']['p99_ms']:.2f}",
            f"{figures['replay']['p50_ms']:.2f}",
            f"{figures['replay']['p99_ms']:.2f}",
            f"{figures['replay_over_snapshot_p50']:.1f}",
            f"{figures['snapshot_over_smallest_p50']:.2f}",
        )
        for size, figures in summary["streams"].items()
    ]
    smallest = min(summary["streams"], key=int, default="?")
    out.print(
        figures_table(
            f"{mode} load: Streams.load of one order, ms; {loads} loads each way, "
            f"a snapshot every {summary['snapshot_every']} events",
            (
                "events",
                "snap at",
                "snap p50",
                "snap p99",
                "replay p50",
                "replay p99",
                "replay / snap",
                "snap / first",
            ),
            rows,
        )
    )
    out.print(
        "snap: from the snapshot and the events after it; replay: every event; "
        f"snap / first: the snapshot load's p50 over the {int(smallest):,}-event stream's.",
        highlight=False,
    )


# --------------------------------------------------------------------------- modes


def postgres_version(url: str) -> str | None:
    async def ask() -> str | None:
        engine = create_async_engine(url)
        try:
            async with engine.connect() as connection:
                found = await connection.exec_driver_sql("SHOW server_version")
                return str(found.scalar())
        finally:
            await engine.dispose()

    return asyncio.run(ask())


def run_mode(mode: Mode, options: Options, report: dict[str, Any]) -> None:
    """Each part on a database of its own, made and thrown away around it."""
    summary: dict[str, Any] = report["modes"].setdefault(mode, {})
    for part in options.parts:
        with tempfile.TemporaryDirectory(prefix=f"promptstack-bench-reads-{mode}-") as tmp:
            workdir = Path(tmp)
            if mode == "scaleout":
                with fresh_database(options.postgres, options.database) as url:
                    summary.setdefault("postgres", postgres_version(url))
                    run_part(mode, part, options, workdir, url, summary)
            else:
                url = f"sqlite+aiosqlite:///{workdir / f'{part}.db'}"
                summary.setdefault("sqlite", sqlite3.sqlite_version)
                run_part(mode, part, options, workdir, url, summary)


def run_part(
    mode: Mode, part: Part, options: Options, workdir: Path, url: str, summary: dict[str, Any]
) -> None:
    if part == "list":
        listed = summarize_list(run_list(mode, options, workdir, url))
        summary["list"] = listed
        print_list(mode, listed, options.requests)
    else:
        loaded = summarize_load(asyncio.run(run_load(mode, options, url)))
        summary["load"] = loaded
        print_load(mode, loaded, options.loads)


def metadata_of(options: Options) -> dict[str, Any]:
    versions = package_versions(
        ("promptstack", "fastapi", "uvicorn", "sqlalchemy", "asyncpg", "aiosqlite", "httpx")
    )
    return {
        "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "host": platform.node(),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "git": git_state(),
        "versions": versions,
        "options": {
            "modes": options.modes,
            "parts": options.parts,
            "sizes": options.sizes,
            "requests": options.requests,
            "warmup_requests": WARMUP_REQUESTS,
            "events": options.events,
            "loads": options.loads,
            "warmup_loads": WARMUP_LOADS,
            "database": options.database,
            "seed": options.seed,
            "customer_orders": CUSTOMER_ORDERS,
            "rare_status": str(RARE),
            "rare_share": RARE_SHARE,
            "rare_seeded": RARE_SEEDED,
            "other_users": OTHER_USERS,
            "batch_rows": BATCH_ROWS,
            "chunk_events": CHUNK_EVENTS,
        },
    }


def main(argv: Sequence[str] | None = None) -> int:
    options = parse_args(argv)
    report: dict[str, Any] = {"meta": metadata_of(options), "modes": {}}

    def run_modes() -> None:
        for mode in options.modes:
            run_mode(mode, options, report)

    try:
        return exit_code(run_modes)
    finally:
        if options.json_path is not None and report["modes"]:
            write_json(options.json_path, rounded(report))
            console.print(f"Results written to {options.json_path}")


if __name__ == "__main__":
    sys.exit(main())
