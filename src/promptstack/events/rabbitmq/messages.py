"""What an event looks like on the wire, and what a delivery carries with it.

An envelope travels as a persistent JSON message whose properties repeat what a broker
tool shows (id, type, correlation id, time) and whose headers count the attempts and keep
the last error. Retrying, dead-lettering and replaying all move a message by publishing a
copy of it, so how a copy is made, and which headers it keeps, is decided here once.
"""

from __future__ import annotations

import aio_pika
from aio_pika.abc import AbstractIncomingMessage, HeadersType

from promptstack.core.envelope import Envelope

ATTEMPT_HEADER = "x-attempt"
ERROR_HEADER = "x-last-error"
CONSUMER_HEADER = "x-consumer"
MAX_ERROR_HEADER_LENGTH = 1000
# Headers the broker adds when it dead-letters a message; a copy we publish starts afresh.
_BROKER_HEADERS = ("x-death", "x-first-death-", "x-last-death-")


def envelope_message(envelope: Envelope) -> aio_pika.Message:
    return aio_pika.Message(
        envelope.model_dump_json().encode(),
        content_type="application/json",
        delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
        message_id=str(envelope.id),
        type=envelope.type,
        correlation_id=envelope.correlation_id,
        timestamp=envelope.occurred_at,
        headers={"schema_version": envelope.schema_version, "aggregate_id": envelope.aggregate_id},
    )


def attempt_of(message: AbstractIncomingMessage) -> int:
    """Which attempt this delivery is: 1 unless an earlier one failed."""
    value = (message.headers or {}).get(ATTEMPT_HEADER)
    if isinstance(value, bytes):
        value = value.decode(errors="replace")
    try:
        return max(1, int(value))  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return 1


def copy_of(message: AbstractIncomingMessage, headers: HeadersType) -> aio_pika.Message:
    """A persistent copy of `message` to publish elsewhere, with `headers` added and the
    broker's dead-lettering headers dropped."""
    kept = {
        name: value
        for name, value in (message.headers or {}).items()
        if not name.startswith(_BROKER_HEADERS)
    }
    return aio_pika.Message(
        message.body,
        headers={**kept, **headers},
        content_type=message.content_type,
        content_encoding=message.content_encoding,
        delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
        message_id=message.message_id,
        correlation_id=message.correlation_id,
        timestamp=message.timestamp,
        type=message.type,
        app_id=message.app_id,
    )


def describe_error(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
