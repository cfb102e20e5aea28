"""Benchmark the shop's saga: orders settled end to end per second, against orders accepted.

For each mode this starts the service, has an administrator made with the CLI stock one
product through the API (a stock no run can sell out), registers and logs in a few
buyers, and then, round after round against the same processes, places `--orders`
orders of one unit each through POST /api/v1/orders as fast as `--concurrency` clients
can. Each is answered 202 while still `pending`; the saga settles it in the background:
order.created -> the payment step charges the sandbox's `tok_visa` in a job -> the
inventory step reserves the unit -> the order is confirmed (and mailed to the buyer).

- `embedded`: SQLite in a temporary folder and one uvicorn process, which relays its
  outbox to the in-process bus and runs the jobs itself (the default without AMQP_URL
  and CELERY_BROKER_URL), so the saga shares the process and its core with intake.
- `scaleout`: PostgreSQL, Redis and RabbitMQ, and three processes: the API (with
  EMBEDDED_RELAY=false it only accepts), `promptstack relay` (the outbox's relay and
  every event consumer) and `promptstack worker --concurrency 2` (Celery, which runs
  the payment jobs).

Measured per round: accepted/s, the orders over the time from the first request to the
last 202; settled/s, the orders over the time from the first request until the read
model (`order_views`, polled in the database every 50 ms) shows every one of them
confirmed; the drain time after the last 202; the backlog over time (accepted, not yet
settled) and where it waits (not yet in the read model, pending payment, paid but not
yet reserved); each order's latency from being placed to being confirmed (the read
model's `updated_at - created_at`, the times of its first and last event, both on the
service's clock); and the CPU each service process used. Any order cancelled, or
missing from the read model, ends the run.

The baseline is intake itself, measured in the same round: settled/s over accepted/s is
the share of the rate orders come in at that the saga keeps up with. At 1.0 the last
order is confirmed as soon as it is accepted; below it a backlog builds up during intake
and drains after it. Both rates come from the same seconds on the same machine (the
clients share its CPUs with the service in both), so their ratio holds up on a noisy
machine far better than either rate alone. Unlike `bench/run.py` nothing is pinned to a
CPU: the saga runs in up to three processes, and pinning them would measure the pins.
A warm-up of `--warmup` orders, settled before the first round and not counted, fills
the caches and shows that every process is up and taking its part.

Settings that differ from the service's defaults, and why (see `service_settings`):

- RATE_LIMIT_PER_MINUTE, RATE_LIMIT_BURST and AUTH_RATE_LIMIT_PER_MINUTE are 10**9:
  every request comes from 127.0.0.1, and a burst of orders (or the buyers' sign-ups)
  would soon be refused. The limiter stays on, as its cost is part of every request.
  Nothing else would refuse a burst: core/settings.py has no quota of orders.
- ACCESS_TOKEN_EXPIRE_MINUTES is a day, so the buyers' tokens outlive any run.
- LOG_LEVEL is WARNING (and the worker's --loglevel too): a line per request or task
  would be measured as well. Whatever the processes log is reported after the tables.
- EMAIL_BACKEND=maildir into the temporary folder: the saga mails every confirmation.
- scaleout: AMQP_NAMESPACE, CACHE_NAMESPACE and CELERY_QUEUE of the run's own. Unlike
  tests/shop/test_saga_scale_out.py, OUTBOX_POLL_SECONDS, the retry delays and
  DATABASE_POOL_SIZE keep their defaults: on PostgreSQL a NOTIFY wakes the relay at
  every commit, so its poll is a fallback, and with `tok_visa` nothing is retried.

Whatever happens, every process is stopped and the temporary folder removed; in
scaleout the database is dropped and the run's RabbitMQ namespace deleted (each
consumer's queue, retry queues and dead-letter queue, the events exchange, the Celery
queue and its exchange). The run's Redis keys (cache entries, rate-limit buckets) all
have a TTL and expire on their own.

Run `python bench/shop.py --help`. This is not part of the test suite.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import platform
import re
import secrets
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import aio_pika
import httpx
from harness import (
    SERVICE_APP,
    BenchError,
    Process,
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
    promptstack_command,
    rounded,
    say,
    spread,
    uvicorn_command,
    write_json,
)
from run import Account, authorization, bench_product, bench_user
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from events import _delete_namespace as delete_event_namespace  # bench/events.py
from promptstack.bootstrap import bootstrap
from promptstack.core.settings import Settings
from promptstack.shop.orders.domain import OrderStatus
from promptstack.shop.orders.models import OrderView

Mode = Literal["embedded", "scaleout"]
MODES: tuple[Mode, ...] = ("embedded", "scaleout")
ORDERS_PATH = "/api/v1/orders"
POLL_SECONDS = 0.05
# The relay's shutdown flushes the outbox within SHUTDOWN_GRACE_SECONDS (10 s by default)
# and Celery finishes its jobs first: more than harness.Server allows a server.
DAEMON_STOP_SECONDS = 30.0
REQUEST_TIMEOUT_SECONDS = 60.0
IDS_PER_QUERY = 1000  # well under the bind parameter limits of SQLite and asyncpg
WORKER_CONCURRENCY = 2
TROUBLE = re.compile(r"warn|error|exception|traceback|critical|fail|refused", re.IGNORECASE)
# Where an accepted order can be while the saga works on it.
UNSETTLED = (OrderStatus.PENDING, OrderStatus.PAID)
SETTLED = (OrderStatus.CONFIRMED, OrderStatus.CANCELLED)

# --------------------------------------------------------------------------- options


@dataclass(frozen=True)
class Options:
    modes: tuple[Mode, ...]
    orders: int
    concurrency: int
    rounds: int
    warmup: int
    buyers: int
    timeout: float
    json_path: Path | None
    postgres: str
    database: str
    redis_url: str
    amqp_url: str
    settings: dict[str, str]


def parse_args(argv: Sequence[str] | None = None) -> Options:
    parser = argparse.ArgumentParser(
        prog="python bench/shop.py",
        description=(
            "Benchmark orders settled end to end by the shop's saga (payment, stock, "
            "confirmation) against orders accepted by POST /api/v1/orders, in the same "
            "rounds: settled/s over accepted/s is the share of intake the saga keeps up with."
        ),
        epilog="scaleout needs PostgreSQL, Redis and RabbitMQ. Linux only (reads /proc).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument(
        "--mode",
        dest="modes",
        action="append",
        choices=MODES,
        help="mode to run; repeat for several (default: both)",
    )
    parser.add_argument("--orders", type=int, default=500, help="orders placed per round")
    parser.add_argument(
        "--concurrency", type=int, default=16, help="clients placing orders at once"
    )
    parser.add_argument("--rounds", type=int, default=3, help="measured rounds per mode")
    parser.add_argument(
        "--warmup",
        type=int,
        default=20,
        help="orders placed and settled before the first round, not counted (at least 1: "
        "they show that every process takes its part)",
    )
    parser.add_argument("--buyers", type=int, default=8, help="users the orders are spread over")
    parser.add_argument(
        "--timeout",
        type=float,
        default=300.0,
        help="seconds to wait, after the last 202 of a round, for its orders to settle",
    )
    add_common_options(parser, database="promptstack_bench_shop")
    parser.add_argument(
        "--amqp-url",
        default="amqp://guest:guest@127.0.0.1:5672/",
        help="scaleout: AMQP_URL and CELERY_BROKER_URL",
    )
    args = parser.parse_args(argv)

    for name in ("orders", "concurrency", "rounds", "warmup", "buyers"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be at least 1")
    if args.timeout <= 0:
        parser.error("--timeout must be positive")
    extra = common_options(parser, args)
    return Options(
        modes=tuple(dict.fromkeys(args.modes or MODES)),
        orders=args.orders,
        concurrency=args.concurrency,
        rounds=args.rounds,
        warmup=args.warmup,
        buyers=args.buyers,
        timeout=args.timeout,
        json_path=args.json_path,
        postgres=args.postgres,
        database=args.database,
        redis_url=args.redis_url,
        amqp_url=args.amqp_url,
        settings=extra,
    )


# --------------------------------------------------------------------------- processes


class Daemon(Process):
    """The relay or the Celery worker: Celery finishes its jobs before it stops, and
    the relay flushes the outbox, each within SHUTDOWN_GRACE_SECONDS."""

    stop_timeout = DAEMON_STOP_SECONDS


def session_cpu_seconds(sid: int) -> float:
    """User plus system CPU time of the live processes of session `sid`, from /proc: a
    server or daemon started in a session of its own, with any processes it forked."""
    total = 0.0
    ticks = os.sysconf("SC_CLK_TCK")
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # ended meanwhile
        # After the name: state, ppid, pgrp, session (index 3), ..., utime (11), stime (12).
        if int(fields[3]) == sid:
            total += (int(fields[11]) + int(fields[12])) / ticks
    return total


# --------------------------------------------------------------------------- settings


def service_settings(mode: Mode, options: Options, workdir: Path) -> dict[str, str]:
    """The environment of every service process of `mode` (the module docstring says why
    each differs from the default)."""
    limitless = str(10**9)
    settings = {
        "SECRET_KEY": secrets.token_urlsafe(48),
        "LOG_LEVEL": "WARNING",
        "ACCESS_TOKEN_EXPIRE_MINUTES": str(24 * 60),
        "RATE_LIMIT_PER_MINUTE": limitless,
        "RATE_LIMIT_BURST": limitless,
        "AUTH_RATE_LIMIT_PER_MINUTE": limitless,
        "EMAIL_BACKEND": "maildir",
        "MAILDIR_PATH": str(workdir / "mail"),
    }
    if mode == "embedded":
        settings["DATABASE_URL"] = f"sqlite+aiosqlite:///{workdir / 'bench.db'}"
    else:
        namespace = f"bench_shop_{secrets.token_hex(4)}"  # queues and keys of this run's own
        settings |= {
            "REDIS_URL": options.redis_url,
            "CACHE_NAMESPACE": namespace,
            "AMQP_URL": options.amqp_url,
            "AMQP_NAMESPACE": namespace,
            "CELERY_BROKER_URL": options.amqp_url,
            "CELERY_QUEUE": f"{namespace}.jobs",
            "EMBEDDED_RELAY": "false",
        }
    return settings | options.settings


def settings_of(environment: dict[str, str]) -> Settings:
    """The service's own view of `environment`, without any .env file."""
    values: dict[str, Any] = {name.lower(): value for name, value in environment.items()}
    return Settings(_env_file=None, **values)


async def delete_namespace(environment: dict[str, str]) -> None:
    """Remove what the run declared on RabbitMQ: the consumers' queues and the events
    exchange (named by the service's own consumer registry), then the Celery queue and
    its exchange, which bear the name CELERY_QUEUE."""
    settings = settings_of(environment)
    container = bootstrap(settings)  # connects to nothing until used
    consumers = [consumer.name for consumer in container.events.consumers]
    await container.aclose()
    url = environment["AMQP_URL"]
    await delete_event_namespace(url, settings, consumers)
    connection = await aio_pika.connect(url)
    try:
        channel = await connection.channel()
        with contextlib.suppress(Exception):
            await channel.queue_delete(settings.celery_queue)
        channel = await connection.channel()  # a refused delete closes its channel
        with contextlib.suppress(Exception):
            await channel.exchange_delete(settings.celery_queue)
    finally:
        await connection.close()


def remove_namespace(environment: dict[str, str]) -> None:
    """`delete_namespace`, for a runner without an event loop; a failure is said, not
    raised, so as not to hide what ended the run."""
    try:
        asyncio.run(delete_namespace(environment))
    except Exception as exc:
        say(
            f"Could not delete the RabbitMQ namespace {environment['AMQP_NAMESPACE']}: {exc!r}",
            "yellow",
        )


# --------------------------------------------------------------------------- measuring


@dataclass
class Round:
    """One burst of orders, from the first request until every order is confirmed."""

    round: int
    orders: int
    accept_seconds: float  # first request to last 202
    settle_seconds: float  # first request to the last order confirmed in the read model
    accepted_per_second: float
    settled_per_second: float
    settled_over_accepted: float
    drain_seconds: float  # last 202 to the last order confirmed
    peak_backlog: int
    latency_p50_ms: float  # placed to confirmed, per order
    latency_p99_ms: float
    latency_max_ms: float
    # CPU seconds per second of the round (1.0: one full core), by process.
    cpu: dict[str, float] = field(default_factory=dict)
    # (seconds since the first request, accepted, settled, not yet in the read model,
    # pending, paid) at each poll.
    backlog: list[tuple[float, int, int, int, int, int]] = field(default_factory=list)


BACKLOG_COLUMNS = ("t_s", "accepted", "settled", "unseen", "pending", "paid")


@dataclass
class Placing:
    """The orders of a burst as they are accepted."""

    ids: list[uuid.UUID] = field(default_factory=list)
    last_at: float = 0.0  # monotonic time of the last 202


@dataclass(frozen=True)
class Target:
    """What a burst needs of the running service."""

    client: httpx.AsyncClient
    engine: AsyncEngine
    product_id: str
    buyers: tuple[Account, ...]
    processes: dict[str, int]  # name -> session id, for their CPU time
    check_alive: Callable[[], None]


async def status_counts(engine: AsyncEngine) -> dict[str, int]:
    async with engine.connect() as connection:
        rows = await connection.execute(
            select(OrderView.status, func.count()).group_by(OrderView.status)
        )
        return {str(status): int(count) for status, count in rows}


async def place_orders(target: Target, count: int, concurrency: int, placing: Placing) -> None:
    """Place `count` orders from `concurrency` clients at once, each client sending its
    next order as soon as the last is accepted."""
    body = {
        "items": [{"product_id": target.product_id, "quantity": 1}],
        "payment_token": "tok_visa",
    }
    left = count

    async def clerk(number: int) -> None:
        nonlocal left
        headers = authorization(target.buyers[number % len(target.buyers)].token)
        while left > 0:
            left -= 1
            answer = await target.client.post(ORDERS_PATH, json=body, headers=headers)
            if answer.status_code != 202:
                raise BenchError(
                    f"placing an order answered {answer.status_code}: {answer.text[:500]}"
                )
            placing.ids.append(uuid.UUID(answer.json()["id"]))
            placing.last_at = time.monotonic()

    tasks = [asyncio.create_task(clerk(n)) for n in range(min(concurrency, count))]
    try:
        await asyncio.gather(*tasks)
    except httpx.HTTPError as exc:
        raise BenchError(f"placing an order failed: {exc!r}") from exc
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def confirmations(engine: AsyncEngine, ids: Sequence[uuid.UUID]) -> list[float]:
    """Each order's time from placed to confirmed, in ms; a BenchError unless every one
    of `ids` is in the read model and confirmed."""
    found: dict[uuid.UUID, tuple[str, datetime, datetime]] = {}
    async with engine.connect() as connection:
        for first in range(0, len(ids), IDS_PER_QUERY):
            rows = await connection.execute(
                select(
                    OrderView.id, OrderView.status, OrderView.created_at, OrderView.updated_at
                ).where(OrderView.id.in_(ids[first : first + IDS_PER_QUERY]))
            )
            for id_, status, created_at, updated_at in rows:
                found[id_] = (str(status), created_at, updated_at)
    by_status: dict[str, int] = {}
    for status, _, _ in found.values():
        by_status[status] = by_status.get(status, 0) + 1
    missing = len(ids) - len(found)
    if missing or by_status.get(OrderStatus.CONFIRMED, 0) != len(ids):
        raise BenchError(
            f"of {len(ids)} orders accepted, {missing} are missing from the read model and "
            f"the others are {by_status}: all should be confirmed"
        )
    return [(updated - created).total_seconds() * 1000 for _, created, updated in found.values()]


async def burst(
    target: Target, number: int, options: Options, count: int
) -> tuple[Round, list[float]]:
    """Place `count` orders and follow them until every one is confirmed: the round's
    figures, and each order's latency in ms."""
    before = await status_counts(target.engine)
    cpu_before = {name: session_cpu_seconds(sid) for name, sid in target.processes.items()}
    placing = Placing()
    samples: list[tuple[float, int, int, int, int, int]] = []
    start = time.monotonic()
    placer = asyncio.create_task(place_orders(target, count, options.concurrency, placing))
    try:
        while True:
            now_counts = await status_counts(target.engine)
            now = time.monotonic()
            delta = {s: now_counts.get(s, 0) - before.get(s, 0) for s in now_counts}
            seen = sum(delta.values())
            settled = sum(delta.get(s, 0) for s in SETTLED)
            accepted = len(placing.ids)
            pending, paid = (delta.get(s, 0) for s in UNSETTLED)
            samples.append(
                (round(now - start, 3), accepted, settled, accepted - seen, pending, paid)
            )
            if placer.done():
                placer.result()  # a failed request ends the round here
                if delta.get(OrderStatus.CANCELLED, 0):
                    raise BenchError(
                        f"{delta[OrderStatus.CANCELLED]} orders were cancelled "
                        f"(this round so far: {delta})"
                    )
                if settled >= count:
                    break
                if now - placing.last_at > options.timeout:
                    raise BenchError(
                        f"{count - settled} of {count} orders were not settled "
                        f"{options.timeout:.0f} s after the last was accepted "
                        f"(this round: {delta})"
                    )
            target.check_alive()
            await asyncio.sleep(POLL_SECONDS)
    finally:
        placer.cancel()
        with contextlib.suppress(asyncio.CancelledError, BenchError):
            await placer
    settle_seconds = now - start
    cpu = {
        name: (session_cpu_seconds(sid) - cpu_before[name]) / settle_seconds
        for name, sid in target.processes.items()
    }
    latencies = await confirmations(target.engine, placing.ids)
    accept_seconds = placing.last_at - start
    result = Round(
        round=number,
        orders=count,
        accept_seconds=accept_seconds,
        settle_seconds=settle_seconds,
        accepted_per_second=count / accept_seconds,
        settled_per_second=count / settle_seconds,
        settled_over_accepted=accept_seconds / settle_seconds,
        drain_seconds=now - placing.last_at,
        peak_backlog=max(sample[1] - sample[2] for sample in samples),
        latency_p50_ms=median(latencies),
        latency_p99_ms=percentile(latencies, 0.99),
        latency_max_ms=max(latencies),
        cpu=cpu,
        backlog=samples,
    )
    return result, latencies


async def measure(
    mode: Mode,
    base_url: str,
    database_url: str,
    product_id: str,
    buyers: tuple[Account, ...],
    processes: dict[str, int],
    check_alive: Callable[[], None],
    options: Options,
) -> tuple[list[Round], list[float]]:
    """The warm-up, then the measured rounds: their figures, and every measured order's
    latency in ms."""
    engine = create_async_engine(database_url, pool_size=1, max_overflow=0)
    limits = httpx.Limits(
        max_connections=options.concurrency, max_keepalive_connections=options.concurrency
    )
    rounds: list[Round] = []
    latencies: list[float] = []
    try:
        async with httpx.AsyncClient(
            base_url=base_url, timeout=REQUEST_TIMEOUT_SECONDS, limits=limits
        ) as client:
            target = Target(client, engine, product_id, buyers, processes, check_alive)
            say(f"{mode}: warming up with {options.warmup} orders (not counted)")
            await burst(target, 0, options, options.warmup)
            for number in range(1, options.rounds + 1):
                result, round_latencies = await burst(target, number, options, options.orders)
                rounds.append(result)
                latencies += round_latencies
                say(
                    f"{mode} {number}/{options.rounds}: accepted {result.accepted_per_second:6.1f}"
                    f"/s, settled {result.settled_per_second:6.1f}/s, ratio "
                    f"{result.settled_over_accepted:.3f}, drain {result.drain_seconds:5.2f} s, "
                    f"peak backlog {result.peak_backlog}, p50 {result.latency_p50_ms:.0f} ms"
                )
    finally:
        await engine.dispose()
    return rounds, latencies


# --------------------------------------------------------------------------- modes


@dataclass
class ModeResult:
    mode: Mode
    settings: dict[str, str]
    rounds: list[Round] = field(default_factory=list)
    latencies_ms: list[float] = field(default_factory=list)
    # What each process logged, at LOG_LEVEL=WARNING: its last lines, when there were any.
    logs: dict[str, list[str]] = field(default_factory=dict)
    loadavg_before: tuple[float, float, float] = (0.0, 0.0, 0.0)
    loadavg_after: tuple[float, float, float] = (0.0, 0.0, 0.0)


def run_mode(mode: Mode, options: Options, promptstack: str) -> ModeResult:
    with contextlib.ExitStack() as stack:
        # Undone in the reverse order: processes, then the namespace, then the database,
        # then the folder.
        workdir = Path(
            stack.enter_context(tempfile.TemporaryDirectory(prefix=f"bench-shop-{mode}-"))
        )
        settings = service_settings(mode, options, workdir)
        if mode == "scaleout":
            settings["DATABASE_URL"] = stack.enter_context(
                fresh_database(options.postgres, options.database)
            )
            stack.callback(remove_namespace, settings)
        result = ModeResult(
            mode=mode, settings={k: v for k, v in settings.items() if k != "SECRET_KEY"}
        )
        result.loadavg_before = os.getloadavg()
        run_processes(result, settings, options, promptstack, workdir)
        result.loadavg_after = os.getloadavg()
    return result


def run_processes(
    result: ModeResult,
    settings: dict[str, str],
    options: Options,
    promptstack: str,
    workdir: Path,
) -> None:
    env = clean_env(settings)
    cli(env, workdir, "migrate")
    admin = create_admin(env, workdir)
    api = Server("api", uvicorn_command(SERVICE_APP), env, workdir)
    daemons: list[Daemon] = []
    if result.mode == "scaleout":
        daemons = [
            Daemon("relay", [promptstack, "relay"], env, workdir),
            Daemon(
                "worker",
                [
                    promptstack,
                    "worker",
                    "--concurrency",
                    str(WORKER_CONCURRENCY),
                    "--loglevel",
                    "WARNING",
                ],
                env,
                workdir,
            ),
        ]
    logs: dict[str, Callable[[int], str]] = {"api": api.log_tail}
    logs |= {daemon.name: daemon.log_tail for daemon in daemons}
    log_paths = {"api": api.log_path} | {daemon.name: daemon.log_path for daemon in daemons}

    def check_alive() -> None:
        for daemon in daemons:
            daemon.check()

    try:
        with contextlib.ExitStack() as running:  # stopped in the reverse order: the API first
            for daemon in daemons:
                daemon.start()
                running.callback(daemon.stop)
            api.start()
            running.callback(api.stop)
            api.wait_ready("/health/ready")
            product_id = bench_product(api.url, admin)
            buyers = tuple(bench_user(api.url) for _ in range(options.buyers))
            processes = {"api": api.pid} | {daemon.name: daemon.pid for daemon in daemons}
            result.rounds, result.latencies_ms = asyncio.run(
                measure(
                    result.mode,
                    api.url,
                    settings["DATABASE_URL"],
                    product_id,
                    buyers,
                    processes,
                    check_alive,
                    options,
                )
            )
    except BenchError as exc:
        tails = "".join(f"\n--- {name} log ---\n{tail(40)}" for name, tail in logs.items())
        raise BenchError(f"{exc}{tails}") from exc
    # After the stop, so that what the processes said on the way out is in too.
    for name, path in log_paths.items():
        lines = noteworthy(path)
        if lines:
            result.logs[name] = lines


def noteworthy(log: Path, keep: int = 20) -> list[str]:
    """The last lines of a process's log that say something went wrong. LOG_LEVEL is
    WARNING, so most lines do; but some are printed whatever the level (Celery's banner,
    the relay's greeting) and would only hide the rest."""
    try:
        lines = log.read_text(errors="replace").splitlines()
    except OSError:
        return []
    return [line for line in lines if TROUBLE.search(line)][-keep:]


# --------------------------------------------------------------------------- report


def summarize(result: ModeResult) -> dict[str, Any]:
    rounds = result.rounds

    def of(name: str) -> dict[str, float]:
        return spread([getattr(r, name) for r in rounds])

    latencies = result.latencies_ms
    return {
        "settings": result.settings,
        "ratio_settled_over_accepted": {
            "per_round": [r.settled_over_accepted for r in rounds],
            **of("settled_over_accepted"),
        },
        "accepted_per_second": of("accepted_per_second"),
        "settled_per_second": of("settled_per_second"),
        "drain_seconds": of("drain_seconds"),
        "peak_backlog": of("peak_backlog"),
        "latency_ms": {
            "orders": len(latencies),
            "p50": median(latencies),
            "p99": percentile(latencies, 0.99) if latencies else float("nan"),
            "max": max(latencies, default=float("nan")),
        },
        "cpu": {name: median([r.cpu[name] for r in rounds]) for name in rounds[0].cpu},
        "backlog_columns": BACKLOG_COLUMNS,
        "rounds": [asdict(r) for r in rounds],
        "logs": result.logs,
        "loadavg_before": result.loadavg_before,
        "loadavg_after": result.loadavg_after,
    }


def print_report(mode: Mode, summary: dict[str, Any], options: Options) -> None:
    rows = [
        (
            str(r["round"]),
            f"{r['accepted_per_second']:.1f}",
            f"{r['settled_per_second']:.1f}",
            f"{r['settled_over_accepted']:.3f}",
            f"{r['drain_seconds']:.2f}",
            str(r["peak_backlog"]),
            f"{r['latency_p50_ms']:.0f}",
            f"{r['latency_p99_ms']:.0f}",
        )
        for r in summary["rounds"]
    ]
    rows.append(
        (
            "median",
            f"{summary['accepted_per_second']['median']:.1f}",
            f"{summary['settled_per_second']['median']:.1f}",
            f"{summary['ratio_settled_over_accepted']['median']:.3f}",
            f"{summary['drain_seconds']['median']:.2f}",
            f"{summary['peak_backlog']['median']:.0f}",
            f"{summary['latency_ms']['p50']:.0f}",
            f"{summary['latency_ms']['p99']:.0f}",
        )
    )
    out.print(
        figures_table(
            f"{mode}: {options.orders} orders per round from {options.concurrency} clients, "
            "settled (confirmed) vs accepted (202)",
            # Narrow enough for 80 columns: the lines below the table say what each is.
            (
                "round",
                "accepted/s",
                "settled/s",
                "ratio",
                "drain s",
                "peak\nbacklog",
                "p50\nms",
                "p99\nms",
            ),
            rows,
        )
    )
    ratio = summary["ratio_settled_over_accepted"]
    out.print(
        f"{mode}: ratio settled/accepted (per round): median {ratio['median']:.3f}, "
        f"min {ratio['min']:.3f}, max {ratio['max']:.3f}"
    )
    latency = summary["latency_ms"]
    out.print(
        f"{mode}: placed to confirmed, all {latency['orders']} orders: p50 {latency['p50']:.0f} "
        f"ms, p99 {latency['p99']:.0f} ms, max {latency['max']:.0f} ms"
    )
    out.print(
        f"{mode}: CPU per process (cores, median): "
        + ", ".join(f"{name} {share:.2f}" for name, share in summary["cpu"].items())
    )
    for r in summary["rounds"]:
        backlog = r["backlog"]
        step = max(1, len(backlog) // 12)
        points = [*backlog[::step], *([] if (len(backlog) - 1) % step == 0 else backlog[-1:])]
        out.print(
            f"{mode} round {r['round']}: backlog over time (s: accepted-settled "
            "[unseen/pending/paid]): "
            + ", ".join(
                f"{t:.1f}: {accepted - settled} [{unseen}/{pending}/{paid}]"
                for t, accepted, settled, unseen, pending, paid in points
            ),
            markup=False,
            highlight=False,
        )
    for name, lines in summary["logs"].items():
        out.print(f"[yellow]{mode}: the {name} process logged:[/yellow]")
        for line in lines:
            out.print(f"  {line}", markup=False, highlight=False)


def metadata(options: Options) -> dict[str, Any]:
    versions = package_versions(
        (
            "promptstack",
            "fastapi",
            "uvicorn",
            "sqlalchemy",
            "aiosqlite",
            "asyncpg",
            "aio-pika",
            "celery",
            "redis",
            "httpx",
        )
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
            "orders": options.orders,
            "concurrency": options.concurrency,
            "rounds": options.rounds,
            "warmup": options.warmup,
            "buyers": options.buyers,
            "timeout_s": options.timeout,
            "poll_s": POLL_SECONDS,
            "worker_concurrency": WORKER_CONCURRENCY,
            "settings": options.settings,
        },
    }


def main(argv: Sequence[str] | None = None) -> int:
    options = parse_args(argv)
    report: dict[str, Any] = {"meta": metadata(options), "modes": {}}

    def run_modes() -> None:
        promptstack = promptstack_command()
        for mode in options.modes:
            summary = summarize(run_mode(mode, options, promptstack))
            report["modes"][mode] = summary
            print_report(mode, summary, options)

    try:
        return exit_code(run_modes)
    finally:
        if options.json_path is not None and report["modes"]:
            write_json(options.json_path, rounded(report))
            console.print(f"Results written to {options.json_path}")


if __name__ == "__main__":
    sys.exit(main())
