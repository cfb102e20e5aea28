"""Benchmark the event backbone over RabbitMQ and PostgreSQL against bare aio-pika.

Two measurements, each on the service and on the baseline in the same run:

* burst: 10,000 events (`--events`) recorded as fast as producers can commit them,
  while the relay and the consumers run. Reported: events per second from the first
  commit to the last consumer's committed effect, and the outbox backlog over time (its
  peak, and how long it took to empty after the last commit).
* steady: `--rate` events per second for `--duration` seconds, one per transaction.
  Reported: end-to-end latency p50 and p99, from the producer's commit to the commit of
  the consumer's effect.

The baseline is what the backbone is built on, without the durability around it: an
aio-pika publisher with confirms into a durable topic exchange, and a consumer that acks
each message, in the same process and event loop. The ratio service/baseline says what
share of raw broker throughput survives the outbox, the relay, the inbox and the
handler's transaction.

Run `python bench/events.py --help`. Needs PostgreSQL and RabbitMQ; not part of the tests.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import multiprocessing
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import aio_pika
from harness import (
    create_database,
    drop_database,
    figures_table,
    median,
    out,
    percentile,
    write_json,
)
from sqlalchemy import func, select

from promptstack.audit.models import AuditEntry
from promptstack.audit.repository import AuditRepository
from promptstack.bootstrap import Container, bootstrap
from promptstack.core.envelope import Envelope, Event
from promptstack.core.settings import Settings
from promptstack.core.unit_of_work import UnitOfWork
from promptstack.events.models import OutboxMessage
from promptstack.events.rabbitmq import (
    dead_letter_queue_name,
    exchange_name,
    queue_name,
    retry_delays_ms,
    retry_queue_name,
)
from promptstack.migrations.runner import upgrade

SAMPLE_SECONDS = 0.25


class BenchEvent(Event):
    type = "bench.ping"

    n: int


@dataclass
class Burst:
    events: int
    seconds: float
    per_second: float
    peak_backlog: int = 0
    drain_after_last_commit: float = 0.0
    backlog: list[tuple[float, int]] = field(default_factory=list)


@dataclass
class Steady:
    events: int
    p50_ms: float
    p99_ms: float
    max_ms: float


def _steady(latencies: list[float]) -> Steady:
    ms = [value * 1000 for value in latencies]
    return Steady(len(ms), median(ms), percentile(ms, 0.99), max(ms))


async def _paced(rate: float, duration: float, send: Callable[[int], Awaitable[None]]) -> int:
    """Call `send(n)` `rate` times a second for `duration` seconds, without waiting for
    one call to finish before the next is due."""
    loop = asyncio.get_running_loop()
    start = loop.time()
    total = int(rate * duration)
    tasks = []
    for n in range(total):
        delay = start + n / rate - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(send(n)))
    await asyncio.gather(*tasks)
    return total


async def _until(condition: Callable[[], bool], limit: float) -> None:
    deadline = time.monotonic() + limit
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError("the consumers did not catch up")
        await asyncio.sleep(0.01)


# --- the baseline: bare aio-pika ------------------------------------------------------


class Bare:
    def __init__(self, url: str, prefix: str) -> None:
        self.url = url
        self.exchange_name = f"{prefix}.bare"
        self.queue_name = f"{prefix}.bare.consumer"
        self.received: dict[int, float] = {}

    async def __aenter__(self) -> Bare:
        self.connection = await aio_pika.connect_robust(self.url)
        self.publish_channel = await self.connection.channel(publisher_confirms=True)
        self.exchange = await self.publish_channel.declare_exchange(
            self.exchange_name, aio_pika.ExchangeType.TOPIC, durable=True
        )
        consume_channel = await self.connection.channel()
        await consume_channel.set_qos(prefetch_count=32)
        self.queue = await consume_channel.declare_queue(self.queue_name, durable=True)
        await self.queue.bind(self.exchange_name, routing_key="bench.#")
        self.tag = await self.queue.consume(self._on_message)
        return self

    async def _on_message(self, message: aio_pika.abc.AbstractIncomingMessage) -> None:
        body = json.loads(message.body)
        await message.ack()
        self.received[body["n"]] = time.time()

    async def publish(self, n: int) -> None:
        body = json.dumps({"n": n, "sent": time.time()}).encode()
        await self.exchange.publish(
            aio_pika.Message(body, delivery_mode=aio_pika.DeliveryMode.PERSISTENT),
            routing_key="bench.ping",
        )

    async def burst(self, count: int, window: int) -> Burst:
        self.received.clear()
        start = time.monotonic()
        for first in range(0, count, window):
            await asyncio.gather(
                *(self.publish(n) for n in range(first, min(first + window, count)))
            )
        await _until(lambda: len(self.received) >= count, 300)
        seconds = time.monotonic() - start
        return Burst(count, seconds, count / seconds)

    async def steady(self, rate: float, duration: float) -> Steady:
        self.received.clear()
        sent: dict[int, float] = {}

        async def send(n: int) -> None:
            sent[n] = time.time()
            await self.publish(n)

        total = await _paced(rate, duration, send)
        await _until(lambda: len(self.received) >= total, 120)
        return _steady([self.received[n] - sent[n] for n in range(total)])

    async def __aexit__(self, *_: object) -> None:
        await self.queue.cancel(self.tag)
        await self.queue.delete(if_unused=False, if_empty=False)
        await self.publish_channel.exchange_delete(self.exchange_name)
        await self.connection.close()


# --- the service: outbox -> relay -> RabbitMQ -> consumer with inbox ---------------------


class Service:
    """The producers' side: records events as an API process would. The relay and the
    consumers run in a process of their own (`_events_process`), as `promptstack relay`
    does in a deployment, and write each effect with the time it was handled."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.committed: dict[str, float] = {}
        self.container: Container = bootstrap(settings)

    async def record(self, numbers: range) -> None:
        async with self.container.uow() as uow:
            ids = [uow.record(BenchEvent(n=n), aggregate_id=f"bench-{n % 64}").id for n in numbers]
        now = time.time()
        for event_id in ids:
            self.committed[str(event_id)] = now

    async def backlog(self) -> int:
        async with self.container.database.read_sessions() as session:
            count = await session.scalar(
                select(func.count()).where(OutboxMessage.published_at.is_(None))
            )
        return int(count or 0)

    async def _effect_count(self) -> int:
        async with self.container.database.read_sessions() as session:
            count = await session.scalar(select(func.count()).where(AuditEntry.action == EFFECT))
        return int(count or 0)

    async def _handled(self) -> dict[str, float]:
        """When each effect of this run was handled, by event id."""
        async with self.container.database.read_sessions() as session:
            details = await session.scalars(
                select(AuditEntry.details).where(AuditEntry.action == EFFECT)
            )
            return {d["event_id"]: d["handled"] for d in details if d["event_id"] in self.committed}

    async def _wait_for_effects(self, count: int, limit: float) -> None:
        deadline = time.monotonic() + limit
        while await self._effect_count() < count:
            if time.monotonic() > deadline:
                raise TimeoutError("the consumers did not catch up")
            await asyncio.sleep(0.02)

    async def burst(self, count: int, per_transaction: int, producers: int) -> Burst:
        self.committed.clear()
        before = await self._effect_count()
        samples: list[tuple[float, int]] = []
        start = time.monotonic()
        sampling = True

        async def sample() -> None:
            while sampling:
                samples.append((round(time.monotonic() - start, 2), await self.backlog()))
                await asyncio.sleep(SAMPLE_SECONDS)

        sampler = asyncio.create_task(sample())
        queue: asyncio.Queue[range] = asyncio.Queue()
        for first in range(0, count, per_transaction):
            queue.put_nowait(range(first, min(first + per_transaction, count)))

        async def producer() -> None:
            while not queue.empty():
                await self.record(queue.get_nowait())

        await asyncio.gather(*(producer() for _ in range(producers)))
        last_commit = time.monotonic()
        await self._wait_for_effects(before + count, 600)
        done = time.monotonic()
        sampling = False
        await sampler
        handled = await self._handled()
        seconds = max(handled.values()) - min(self.committed.values())
        return Burst(
            count,
            seconds,
            count / seconds,
            peak_backlog=max((size for _, size in samples), default=0),
            drain_after_last_commit=done - last_commit,
            backlog=samples,
        )

    async def steady(self, rate: float, duration: float) -> Steady:
        self.committed.clear()
        before = await self._effect_count()

        async def send(n: int) -> None:
            await self.record(range(n, n + 1))

        total = await _paced(rate, duration, send)
        await self._wait_for_effects(before + total, 120)
        handled = await self._handled()
        return _steady([handled[i] - self.committed[i] for i in self.committed])


EFFECT = "bench.effect"


async def _handle(event: BenchEvent, envelope: Envelope, uow: UnitOfWork) -> None:
    AuditRepository.of(uow).add(
        AuditEntry(
            id=uuid.uuid4(),
            action=EFFECT,
            actor_id=None,
            subject_id=None,
            at=envelope.occurred_at,
            details={"n": event.n, "event_id": str(envelope.id), "handled": time.time()},
        )
    )


def _events_process(settings_args: dict[str, Any], ready: Any, stop: Any) -> None:
    """The relay and the consumers, in a process of their own."""

    async def serve() -> None:
        container = bootstrap(Settings(_env_file=None, **settings_args))  # type: ignore[call-arg]
        container.events.consumers.on(EFFECT, BenchEvent, _handle)
        await container.start_events()
        ready.set()
        await asyncio.to_thread(stop.wait)
        await container.aclose()

    asyncio.run(serve())


# --- set-up and report -------------------------------------------------------------------


async def _delete_namespace(url: str, settings: Settings, consumers: list[str]) -> None:
    """Remove the exchange and every queue this run declared: each consumer's queue, its
    retry queues and its dead-letter queue."""
    names = [
        name
        for consumer in consumers
        for name in (
            queue_name(settings.amqp_namespace, consumer),
            dead_letter_queue_name(settings.amqp_namespace, consumer),
            *(
                retry_queue_name(settings.amqp_namespace, consumer, delay)
                for delay in retry_delays_ms(settings)
            ),
        )
    ]
    connection = await aio_pika.connect(url)
    try:
        for name in names:
            channel = await connection.channel()
            with contextlib.suppress(Exception):
                await channel.queue_delete(name)
        channel = await connection.channel()
        await channel.exchange_delete(exchange_name(settings.amqp_namespace))
    finally:
        await connection.close()


async def run(args: argparse.Namespace) -> dict[str, Any]:
    prefix = f"bench{uuid.uuid4().hex[:8]}"
    url = await create_database(args.postgres, args.database)
    settings_args: dict[str, Any] = {
        "database_url": url,
        "amqp_url": args.amqp_url,
        "amqp_namespace": prefix,
        "log_level": "WARNING",
        "log_json": False,
        "email_backend": "console",
        **{name.lower(): value for name, value in (pair.split("=", 1) for pair in args.set)},
    }
    settings = Settings(_env_file=None, **settings_args)  # type: ignore[call-arg]
    await asyncio.to_thread(upgrade, settings)
    results: dict[str, Any] = {
        "settings": {
            "events": args.events,
            "rate": args.rate,
            "duration": args.duration,
            "per_transaction": args.per_transaction,
            "producers": args.producers,
        }
    }
    spawn = multiprocessing.get_context("spawn")
    ready, stop = spawn.Event(), spawn.Event()
    events_process = spawn.Process(target=_events_process, args=(settings_args, ready, stop))
    events_process.start()
    service = Service(settings)
    try:
        if not await asyncio.to_thread(ready.wait, 60):
            raise RuntimeError("the relay process did not start")
        async with Bare(args.amqp_url, prefix) as bare:
            out.print(f"burst of {args.events} events: baseline, then the service")
            results["bare_burst"] = await bare.burst(args.events, settings.outbox_batch_size)
            results["service_burst"] = await service.burst(
                args.events, args.per_transaction, args.producers
            )
            out.print(f"steady {args.rate}/s for {args.duration}s: baseline, then the service")
            results["bare_steady"] = await bare.steady(args.rate, args.duration)
            results["service_steady"] = await service.steady(args.rate, args.duration)
    finally:
        stop.set()
        await asyncio.to_thread(events_process.join, 60)
        consumers = [consumer.name for consumer in service.container.events.consumers] + [EFFECT]
        await service.container.aclose()
        await _delete_namespace(args.amqp_url, settings, consumers)
        await drop_database(args.postgres, args.database)
    return results


def report(results: dict[str, Any]) -> None:
    bare_burst: Burst = results["bare_burst"]
    service_burst: Burst = results["service_burst"]
    bare_steady: Steady = results["bare_steady"]
    service_steady: Steady = results["service_steady"]
    rows = [
        (
            name,
            f"{burst.per_second:.0f}",
            f"{steady.p50_ms:.1f}",
            f"{steady.p99_ms:.1f}",
            f"{steady.max_ms:.1f}",
        )
        for name, burst, steady in (
            ("service", service_burst, service_steady),
            ("bare aio-pika", bare_burst, bare_steady),
        )
    ]
    table = figures_table(
        "Event backbone: PostgreSQL outbox over RabbitMQ vs bare aio-pika",
        ("", "burst events/s", "steady p50 ms", "steady p99 ms", "steady max ms"),
        rows,
        label_justify="right",
    )
    out.print(table)
    ratio = service_burst.per_second / bare_burst.per_second
    out.print(f"throughput ratio service/bare: [bold]{ratio:.2f}[/bold]")
    out.print(
        f"burst: {service_burst.events} events, peak backlog {service_burst.peak_backlog}, "
        f"empty {service_burst.drain_after_last_commit:.1f} s after the last commit"
    )
    out.print(
        "backlog over time (s: events): "
        + ", ".join(
            f"{t}: {n}"
            for t, n in service_burst.backlog[:: max(1, len(service_burst.backlog) // 12)]
        )
    )
    results["ratio"] = ratio


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--events", type=int, default=10_000, help="events in the burst")
    parser.add_argument(
        "--per-transaction",
        type=int,
        default=10,
        help="events per producer transaction in the burst",
    )
    parser.add_argument(
        "--producers", type=int, default=4, help="concurrent producers in the burst"
    )
    parser.add_argument(
        "--rate", type=float, default=200.0, help="events per second in the steady run"
    )
    parser.add_argument("--duration", type=float, default=10.0, help="seconds of the steady run")
    parser.add_argument("--postgres", default="postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--database", default="promptstack_bench_events")
    parser.add_argument("--amqp-url", default="amqp://guest:guest@127.0.0.1:5672/")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a setting for the service, e.g. OUTBOX_BATCH_SIZE=200",
    )
    parser.add_argument("--json", help="write the results to this file")
    args = parser.parse_args()
    results = asyncio.run(run(args))
    report(results)
    if args.json:
        plain = {
            k: asdict(v) if hasattr(v, "__dataclass_fields__") else v for k, v in results.items()
        }
        write_json(Path(args.json), plain)
    sys.exit(0)


if __name__ == "__main__":
    main()
