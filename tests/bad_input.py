"""What the bad-input suites send: malformed bodies, ids that are not UUIDs, and the
pieces forged tokens are made of. One list each, so every endpoint meets the same ones."""

from __future__ import annotations

import base64
import json
from typing import Any

import jwt
import pytest

# Bodies that are not a JSON object, with the status each gets.
MALFORMED_BODIES = [
    pytest.param(b'{"a": ', 422, id="truncated"),
    pytest.param(b"{'a': 1}", 422, id="single-quotes"),
    pytest.param(b"", 422, id="empty"),
    pytest.param(b"null", 422, id="null"),
    pytest.param(b"[]", 422, id="array"),
    pytest.param(b'"text"', 422, id="string"),
    pytest.param(b'{"a": "\xff\xfe"}', 400, id="invalid-utf8"),
    pytest.param(b"[" * 100_000, 400, id="deeply-nested"),
    pytest.param(b'{"a": ' + b"9" * 5000 + b"}", 400, id="5000-digit-number"),
]

# Path ids that are not UUIDs, each refused with a 422 before anything is read.
NOT_UUIDS = [
    pytest.param("not-a-uuid", id="word"),
    pytest.param("123", id="number"),
    pytest.param("00000000-0000-0000-0000-00000000000g", id="non-hex"),
    pytest.param("00000000-0000-0000-0000-0000000000000", id="one-digit-too-many"),
    pytest.param("x" * 10_000, id="10k-chars"),
    pytest.param("%00", id="nul"),
    pytest.param("%ED%A0%80", id="encoded-surrogate"),
    pytest.param("%F0%9F%98%80", id="emoji"),
    pytest.param("' OR '1'='1", id="sql"),
]

# A key that is not the service's, for tokens signed by someone else.
OTHER_KEY = "an entirely different secret key, 0123456789abcdef"


def encode(body: Any) -> bytes:
    """JSON as a client may send it; lone surrogates go out as `\\ud800` escapes."""
    return json.dumps(body).encode()


def label(value: Any) -> str:
    """A short, ASCII test id for a value."""
    text = value if isinstance(value, str) else json.dumps(value)
    if len(text) > 40:
        return f"{len(text)}-chars"
    return text.encode("ascii", "backslashreplace").decode() or "empty"


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def claims_of(token: str) -> dict[str, Any]:
    claims: dict[str, Any] = jwt.decode(token, options={"verify_signature": False})
    return claims
