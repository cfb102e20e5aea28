"""Cursors round-trip and refuse anything they did not produce."""

from __future__ import annotations

import base64
import uuid
from datetime import UTC, datetime

import pytest

from promptstack.core.errors import ValidationFailed
from promptstack.core.pagination import Cursor


def test_round_trip() -> None:
    cursor = Cursor(at=datetime(2026, 5, 1, 12, 30, 1, 123456, tzinfo=UTC), id=uuid.uuid4())
    token = cursor.encode()
    assert "=" not in token
    assert Cursor.decode(token) == cursor


@pytest.mark.parametrize(
    "token",
    [
        "",
        "!!!",
        "bm90IGpzb24",  # "not json"
        base64.urlsafe_b64encode(b'["2026-01-01T00:00:00", "not-a-uuid"]').decode(),
        base64.urlsafe_b64encode(
            b'["2026-01-01T00:00:00", "1b4e28ba-2fa1-11d2-883f-0016d3cca427"]'
        ).decode(),
        base64.urlsafe_b64encode(b'{"a": 1}').decode(),
        base64.urlsafe_b64encode(b"[1, 2, 3]").decode(),
        "\u00e9t\u00e9",
    ],
)
def test_garbage_is_a_validation_error(token: str) -> None:
    with pytest.raises(ValidationFailed):
        Cursor.decode(token)
