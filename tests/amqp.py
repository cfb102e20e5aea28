"""RabbitMQ for tests: reachability, a namespace's topology, a broker client for looking
inside queues and making one refuse messages, and a TCP proxy that can cut the service
off the broker or stall the traffic between them."""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator

import aio_pika
from aio_pika.abc import AbstractConnection, AbstractIncomingMessage
from yarl import URL

from promptstack.core.settings import Settings
from promptstack.events.consumers import Consumers
from promptstack.events.rabbitmq import (
    dead_letter_queue_name,
    exchange_name,
    queue_name,
    retry_delays_ms,
    retry_queue_name,
)

AMQP_TEST_URL = os.environ.get("TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")


async def broker_error(url: str) -> str | None:
    """Why RabbitMQ at `url` cannot be used, or None when it can."""
    try:
        connection = await aio_pika.connect(url, timeout=3)
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}"
    await connection.close()
    return None


def namespace_queues(settings: Settings, consumers: Consumers) -> list[str]:
    """Every queue the service declares for `consumers` in its namespace."""
    names = []
    for consumer in consumers:
        names.append(queue_name(settings.amqp_namespace, consumer.name))
        names.append(dead_letter_queue_name(settings.amqp_namespace, consumer.name))
        names.extend(
            retry_queue_name(settings.amqp_namespace, consumer.name, delay)
            for delay in retry_delays_ms(settings)
        )
    return names


class Broker:
    """A plain (not robust) client, to look at and change the broker as an operator would."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.connection: AbstractConnection | None = None

    async def __aenter__(self) -> Broker:
        self.connection = await aio_pika.connect(self.url, timeout=5)
        return self

    async def __aexit__(self, *_: object) -> None:
        if self.connection is not None:
            await self.connection.close()

    @contextlib.asynccontextmanager
    async def channel(self) -> AsyncIterator[aio_pika.abc.AbstractChannel]:
        """A channel of its own per operation: a refused one closes only that channel."""
        assert self.connection is not None
        channel = await self.connection.channel()
        try:
            yield channel
        finally:
            if not channel.is_closed:
                await channel.close()

    async def publish(
        self, message: aio_pika.Message, *, exchange: str = "", routing_key: str
    ) -> None:
        async with self.channel() as channel:
            target = (
                channel.default_exchange
                if exchange == ""
                else await channel.get_exchange(exchange, ensure=True)
            )
            await target.publish(message, routing_key=routing_key, mandatory=False)

    async def depth(self, queue: str) -> int:
        """Messages ready in `queue` (a passive declare: the queue must exist)."""
        async with self.channel() as channel:
            declared = await channel.declare_queue(queue, passive=True)
            count = declared.declaration_result.message_count
            return int(count or 0)

    async def consumers(self, queue: str) -> int:
        async with self.channel() as channel:
            declared = await channel.declare_queue(queue, passive=True)
            return int(declared.declaration_result.consumer_count or 0)

    async def take_all(self, queue: str) -> list[AbstractIncomingMessage]:
        """Remove and return every message ready in `queue`."""
        taken = []
        async with self.channel() as channel:
            declared = await channel.declare_queue(queue, passive=True)
            while (message := await declared.get(no_ack=False, fail=False)) is not None:
                await message.ack()
                taken.append(message)
        return taken

    async def refusing_queue(self, queue: str, *, exchange: str, routing_key: str) -> None:
        """Declare `queue`, full from the start and refusing more (`x-max-length` 0,
        `x-overflow: reject-publish`), bound to `exchange`: the broker nacks every message
        routed to it, even one it also delivered to another queue. It lasts until deleted
        or until this client disconnects."""
        async with self.channel() as channel:
            declared = await channel.declare_queue(
                queue,
                exclusive=True,
                arguments={"x-max-length": 0, "x-overflow": "reject-publish"},
            )
            await declared.bind(exchange, routing_key=routing_key)

    async def delete_queue(self, queue: str) -> None:
        async with self.channel() as channel:
            await channel.queue_delete(queue)

    async def delete_namespace(self, settings: Settings, consumers: Consumers) -> None:
        for queue in namespace_queues(settings, consumers):
            with contextlib.suppress(Exception):
                await self.delete_queue(queue)
        with contextlib.suppress(Exception):
            async with self.channel() as channel:
                await channel.exchange_delete(exchange_name(settings.amqp_namespace))


async def delete_namespace(settings: Settings, consumers: Consumers) -> None:
    """Remove the exchange and queues a test declared (called after its container closed)."""
    assert settings.amqp_url is not None
    target = URL(settings.amqp_url).with_query(None)
    async with Broker(str(target)) as broker:
        await broker.delete_namespace(settings, consumers)


class TcpProxy:
    """A TCP relay between the service and RabbitMQ that can be cut and restored, or
    stalled and resumed.

    `cut` closes every connection through it (the client sees a reset) and stops
    listening, so reconnecting is refused until `restore`, on the same port. `stall`
    keeps the connections open and forwards nothing either way: what the client sends
    is taken and held, and no answer comes back, until `resume` forwards what was held."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.port = 0
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._flowing = asyncio.Event()
        self._flowing.set()
        self.connections = 0

    @classmethod
    def to(cls, url: str) -> TcpProxy:
        parsed = URL(url)
        return cls(parsed.host or "127.0.0.1", parsed.port or 5672)

    def url_for(self, url: str, **query: str) -> str:
        """`url` with this proxy as its host."""
        return str(URL(url).with_host("127.0.0.1").with_port(self.port).with_query(query))

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def cut(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        for writer in list(self._writers):
            writer.transport.abort()
        self._writers.clear()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def restore(self) -> None:
        await self.start()

    def stall(self) -> None:
        self._flowing.clear()

    def resume(self) -> None:
        self._flowing.set()

    async def aclose(self) -> None:
        await self.cut()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            upstream_reader, upstream_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.transport.abort()
            return
        self.connections += 1
        self._writers.update((writer, upstream_writer))
        for source, sink in ((reader, upstream_writer), (upstream_reader, writer)):
            task = asyncio.get_running_loop().create_task(self._pipe(source, sink))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _pipe(self, source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
        try:
            while data := await source.read(65536):
                await self._flowing.wait()
                sink.write(data)
                await sink.drain()
        except OSError:
            pass
        finally:
            sink.transport.abort()
            self._writers.discard(sink)
