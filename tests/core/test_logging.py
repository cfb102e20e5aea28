"""Log lines are structured and carry the request id of the request that wrote them."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from tests.fixtures.support import Api


async def test_request_log_line_carries_the_request_id(
    api: Api, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="promptstack.request")
    response = await api.client.get("/health", headers={"X-Request-ID": "trace-42"})
    events: list[dict[str, Any]] = [r.msg for r in caplog.records if isinstance(r.msg, dict)]
    lines = [e for e in events if e.get("event") == "request"]
    assert lines, events
    line = lines[-1]
    assert line["request_id"] == "trace-42" == response.headers["x-request-id"]
    assert (line["method"], line["path"], line["status"]) == ("GET", "/health", 200)
    assert isinstance(line["duration_ms"], float)
