"""The scale-out bus: RabbitMQ through aio-pika. (Being written.)"""

from __future__ import annotations

from collections.abc import Sequence

from promptstack.core.events import Envelope
from promptstack.core.settings import Settings
from promptstack.events.bus import PublishReport
from promptstack.events.consumers import Consumers
from promptstack.events.delivery import Delivery


class RabbitPublisher:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    async def publish(self, envelopes: Sequence[Envelope]) -> PublishReport:
        raise NotImplementedError

    async def ping(self) -> None:
        raise NotImplementedError

    async def aclose(self) -> None:
        return None


class RabbitConsumers:
    def __init__(self, settings: Settings, consumers: Consumers, delivery: Delivery) -> None:
        self.settings = settings
        self.consumers = consumers
        self.delivery = delivery

    async def start(self) -> None:
        raise NotImplementedError

    async def stop(self) -> None:
        return None
