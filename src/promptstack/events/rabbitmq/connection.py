"""Opening and closing connections to RabbitMQ, the same way for every part of the bus.

The publisher and the consumers hold robust connections that outlive a broker restart;
every part closes its connection without letting a broker that is already gone hold up
(or fail) a shutdown.
"""

from __future__ import annotations

import asyncio
import contextlib

import aio_pika
from aio_pika.abc import AbstractConnection, AbstractRobustConnection

from promptstack.core.settings import Settings


async def connect(settings: Settings) -> AbstractRobustConnection:
    """A connection that reconnects by itself and then restores its channels, the
    exchanges and queues they declared, and their consumers."""
    if settings.amqp_url is None:
        raise RuntimeError("AMQP_URL is not set")
    return await aio_pika.connect_robust(
        settings.amqp_url,
        timeout=settings.amqp_timeout_seconds,
        client_properties={"connection_name": f"promptstack {settings.amqp_namespace}"},
    )


async def close_quietly(connection: AbstractConnection, within: float) -> None:
    with contextlib.suppress(Exception):
        async with asyncio.timeout(within):
            await connection.close()
