"""What the relay hands events to: the in-process dispatcher or a broker."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

from promptstack.core.envelope import Envelope


@dataclass(slots=True)
class PublishReport:
    """What became of a batch. Events in neither list were not attempted (an earlier
    event of their aggregate failed) and stay pending as they were."""

    published: list[uuid.UUID] = field(default_factory=list)
    failed: dict[uuid.UUID, str] = field(default_factory=dict)
    # Set when the broker could not be reached: nothing is counted against the events,
    # which wait for it however long it takes.
    unavailable: str | None = None


class Publisher(Protocol):
    async def publish(self, envelopes: Sequence[Envelope]) -> PublishReport:
        """Publish in order within each aggregate; an event whose predecessor of the same
        aggregate failed in this batch must not be attempted."""
        ...

    async def aclose(self) -> None: ...


def by_aggregate(envelopes: Sequence[Envelope]) -> list[list[Envelope]]:
    """The batch split into each aggregate's events, in their order."""
    groups: dict[str, list[Envelope]] = {}
    for envelope in envelopes:
        groups.setdefault(envelope.aggregate_id, []).append(envelope)
    return list(groups.values())
