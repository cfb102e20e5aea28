"""The one registry of consumers, shared by the in-process bus and RabbitMQ.

A consumer is a named reaction to some event types. Its name identifies it in the
inbox (so each consumer sees each event once) and, on RabbitMQ, names its queue.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, TypeVar

from promptstack.core.envelope import Envelope, Event
from promptstack.core.unit_of_work import UnitOfWork

EventT = TypeVar("EventT", bound=Event)
Handler = Callable[[EventT, Envelope, UnitOfWork], Awaitable[None]]

# Names become inbox keys and queue names, and operators type them.
CONSUMER_NAME = re.compile(r"[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)*")


@dataclass(slots=True)
class Consumer:
    name: str
    handlers: dict[str, Handler[Any]] = field(default_factory=dict)

    @property
    def event_types(self) -> frozenset[str]:
        return frozenset(self.handlers)


class Consumers:
    def __init__(self) -> None:
        self._by_name: dict[str, Consumer] = {}

    def on(self, name: str, event: type[EventT], handler: Handler[EventT]) -> None:
        """Have consumer `name` run `handler` for each `event`, inside the transaction that
        also records the delivery in the inbox."""
        if len(name) > 100 or not CONSUMER_NAME.fullmatch(name):
            raise ValueError(
                f"consumer names are dotted lowercase words, like mail.welcome: {name!r}"
            )
        consumer = self._by_name.setdefault(name, Consumer(name))
        if event.type in consumer.handlers:
            raise ValueError(f"{name} already handles {event.type}")
        consumer.handlers[event.type] = handler

    def for_type(self, type_: str) -> list[Consumer]:
        return [c for c in self._by_name.values() if type_ in c.handlers]

    def get(self, name: str) -> Consumer:
        return self._by_name[name]

    def __iter__(self) -> Iterator[Consumer]:
        return iter(self._by_name.values())

    def __len__(self) -> int:
        return len(self._by_name)
