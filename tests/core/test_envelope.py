"""The envelope: typed events, upcasting of old versions, correlation of causes."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import pytest
import structlog

from promptstack.core.envelope import (
    EVENT_TYPES,
    Event,
    EventTypes,
    UnknownEvent,
    caused_by,
    envelope_for,
)

NOW = datetime(2026, 5, 1, tzinfo=UTC)


class Renamed(Event):
    """Version 1 had `name`; version 2 split it; version 3 added `tags`."""

    type = "test.renamed"
    version = 3

    first: str
    last: str
    tags: tuple[str, ...]


@EVENT_TYPES.upcaster("test.renamed", from_version=1)
def _split_name(data: dict[str, Any]) -> dict[str, Any]:
    first, _, last = data.pop("name").partition(" ")
    return {**data, "first": first, "last": last}


@EVENT_TYPES.upcaster("test.renamed", from_version=2)
def _add_tags(data: dict[str, Any]) -> dict[str, Any]:
    return {**data, "tags": []}


def _envelope(version: int, data: dict[str, Any]) -> Any:
    current = envelope_for(
        Renamed(first="a", last="b", tags=()), aggregate_id="x", id_=uuid.uuid4(), occurred_at=NOW
    )
    return current.model_copy(update={"schema_version": version, "data": data})


def test_an_event_round_trips_through_its_envelope() -> None:
    event = Renamed(first="Ada", last="Lovelace", tags=("math",))
    envelope = envelope_for(event, aggregate_id="agg-1", id_=uuid.uuid4(), occurred_at=NOW)
    assert envelope.type == "test.renamed"
    assert envelope.schema_version == 3
    assert EVENT_TYPES.decode(envelope) == event


def test_old_versions_are_upcast_step_by_step() -> None:
    decoded = EVENT_TYPES.decode(_envelope(1, {"name": "Grace Hopper"}))
    assert decoded == Renamed(first="Grace", last="Hopper", tags=())
    assert EVENT_TYPES.decode(_envelope(2, {"first": "A", "last": "B"})) == Renamed(
        first="A", last="B", tags=()
    )


def test_a_version_newer_than_the_code_is_refused() -> None:
    with pytest.raises(UnknownEvent, match="newer"):
        EVENT_TYPES.decode(_envelope(4, {"first": "A", "last": "B", "tags": []}))


def test_an_unknown_type_is_refused() -> None:
    envelope = _envelope(3, {}).model_copy(update={"type": "test.nobody"})
    with pytest.raises(UnknownEvent, match="unknown"):
        EVENT_TYPES.decode(envelope)


def test_a_missing_upcaster_is_reported() -> None:
    types = EventTypes()
    types.register(Renamed)
    with pytest.raises(UnknownEvent, match="no upcaster"):
        types.decode(_envelope(1, {"name": "A B"}))


def test_two_classes_may_not_claim_one_type() -> None:
    with pytest.raises(ValueError, match="defined twice"):

        class Impostor(Event):
            type = "test.renamed"


def test_correlation_comes_from_the_request_then_from_the_cause() -> None:
    event = Renamed(first="a", last="b", tags=())
    with structlog.contextvars.bound_contextvars(request_id="req-42"):
        first = envelope_for(event, aggregate_id="a", id_=uuid.uuid4(), occurred_at=NOW)
    assert first.correlation_id == "req-42"
    assert first.causation_id is None
    with caused_by(first):
        second = envelope_for(event, aggregate_id="b", id_=uuid.uuid4(), occurred_at=NOW)
    assert second.correlation_id == "req-42"
    assert second.causation_id == first.id
    alone_id = uuid.uuid4()
    alone = envelope_for(event, aggregate_id="c", id_=alone_id, occurred_at=NOW)
    assert alone.correlation_id == str(alone_id)
    assert alone.causation_id is None
