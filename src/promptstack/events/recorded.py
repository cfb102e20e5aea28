"""Events as a stream holds them, in plain Python: what aggregates fold over.

Kept apart from the store so that an aggregate's module needs nothing of the database.
"""

from __future__ import annotations

from dataclasses import dataclass

from promptstack.core.envelope import EVENT_TYPES, Envelope, Event
from promptstack.core.errors import Conflict


class StreamConflict(Conflict):
    """Another writer appended to the stream since it was read: decide again."""

    code = "concurrent_change"
    title = "Changed by someone else at the same time"


@dataclass(frozen=True, slots=True)
class Recorded:
    """An event at its version in its stream, read back upcast to the current shape."""

    version: int
    event: Event
    envelope: Envelope

    @classmethod
    def of(cls, version: int, envelope: Envelope) -> Recorded:
        return cls(version, EVENT_TYPES.decode(envelope), envelope)
