"""The consumer registry: names that can be queues and inbox keys, one handler per type."""

from __future__ import annotations

import pytest

from promptstack.core.envelope import Envelope, Event
from promptstack.core.unit_of_work import UnitOfWork
from promptstack.events.consumers import Consumers


class Pinged(Event):
    type = "test.consumers.pinged"


class Ponged(Event):
    type = "test.consumers.ponged"


async def handle(event: Event, envelope: Envelope, uow: UnitOfWork) -> None:
    return None


def test_one_consumer_may_handle_several_types() -> None:
    consumers = Consumers()
    consumers.on("mail.welcome", Pinged, handle)
    consumers.on("mail.welcome", Ponged, handle)
    consumers.on("audit", Pinged, handle)

    assert len(consumers) == 2
    assert consumers.get("mail.welcome").event_types == {Pinged.type, Ponged.type}
    assert [c.name for c in consumers.for_type(Pinged.type)] == ["mail.welcome", "audit"]
    assert consumers.for_type("test.consumers.nobody") == []


def test_a_type_is_handled_once_per_consumer() -> None:
    consumers = Consumers()
    consumers.on("mail.welcome", Pinged, handle)
    with pytest.raises(ValueError, match="already handles"):
        consumers.on("mail.welcome", Pinged, handle)


@pytest.mark.parametrize(
    "name", ["", "Mail.welcome", "mail..welcome", ".mail", "mail.", "mail welcome", "m" * 101]
)
def test_a_name_that_cannot_be_a_queue_is_refused(name: str) -> None:
    with pytest.raises(ValueError, match="dotted lowercase"):
        Consumers().on(name, Pinged, handle)
