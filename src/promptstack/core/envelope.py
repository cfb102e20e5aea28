"""Domain events and the envelope they travel in.

An event class names its `type` and current `version`; every event is stored and sent
inside an `Envelope` whose `data` is the event's JSON. Readers always see the current
shape: an envelope written by an older version is upcast, one registered step at a
time, before the event is validated. Correlation follows causes: an event recorded
while another is being handled inherits its correlation id and names it as the cause.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import datetime
from typing import Any, ClassVar

import structlog
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

Upcaster = Callable[[dict[str, Any]], dict[str, Any]]


class Event(BaseModel):
    """A fact that happened. Subclasses set `type` and, when their shape changes,
    raise `version` and register an upcaster from the previous one."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    type: ClassVar[str]
    version: ClassVar[int] = 1

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "type" in cls.__dict__:
            EVENT_TYPES.register(cls)


class Envelope(BaseModel):
    model_config = ConfigDict(frozen=True)

    id: uuid.UUID
    type: str = Field(min_length=1, max_length=128)
    schema_version: int = Field(ge=1)
    occurred_at: AwareDatetime
    aggregate_id: str = Field(min_length=1, max_length=128)
    correlation_id: str = Field(min_length=1, max_length=128)
    causation_id: uuid.UUID | None = None
    data: dict[str, Any]


class UnknownEvent(LookupError):
    """An envelope of a type this process does not know, or of a version it cannot read."""


class EventTypes:
    """The event classes of the code base and the upcasters between their versions."""

    def __init__(self) -> None:
        self._classes: dict[str, type[Event]] = {}
        self._upcasters: dict[tuple[str, int], Upcaster] = {}

    def register(self, cls: type[Event]) -> None:
        known = self._classes.get(cls.type)
        if known is not None and known.__qualname__ != cls.__qualname__:
            raise ValueError(f"event type {cls.type!r} is defined twice")
        self._classes[cls.type] = cls

    def upcaster(self, type_: str, *, from_version: int) -> Callable[[Upcaster], Upcaster]:
        """Register the step that turns `from_version` data into `from_version + 1` data."""

        def register(step: Upcaster) -> Upcaster:
            self._upcasters[(type_, from_version)] = step
            return step

        return register

    def class_of(self, type_: str) -> type[Event]:
        try:
            return self._classes[type_]
        except KeyError:
            raise UnknownEvent(f"unknown event type {type_!r}") from None

    def decode(self, envelope: Envelope) -> Event:
        cls = self.class_of(envelope.type)
        data, version = envelope.data, envelope.schema_version
        if version > cls.version:
            raise UnknownEvent(
                f"{envelope.type} version {version} is newer than this code ({cls.version})"
            )
        while version < cls.version:
            try:
                step = self._upcasters[(envelope.type, version)]
            except KeyError:
                raise UnknownEvent(
                    f"no upcaster for {envelope.type} from version {version}"
                ) from None
            data = step(dict(data))
            version += 1
        return cls.model_validate(data)


EVENT_TYPES = EventTypes()

_cause: ContextVar[Envelope | None] = ContextVar("event_cause", default=None)


@contextmanager
def caused_by(envelope: Envelope) -> Iterator[None]:
    """Within this block, recorded events are consequences of `envelope`."""
    token = _cause.set(envelope)
    try:
        yield
    finally:
        _cause.reset(token)


def envelope_for(
    event: Event, *, aggregate_id: str, id_: uuid.UUID, occurred_at: datetime
) -> Envelope:
    """Wrap `event`, correlated with the event being handled, else with the request."""
    cause = _cause.get()
    if cause is not None:
        correlation, causation = cause.correlation_id, cause.id
    else:
        request_id = structlog.contextvars.get_contextvars().get("request_id")
        correlation, causation = str(request_id or id_), None
    return Envelope(
        id=id_,
        type=event.type,
        schema_version=event.version,
        occurred_at=occurred_at,
        aggregate_id=aggregate_id,
        correlation_id=correlation,
        causation_id=causation,
        data=event.model_dump(mode="json"),
    )
