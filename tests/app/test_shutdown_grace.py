"""Shutdown keeps to one grace period, however its steps share it out."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from promptstack.bootstrap import bootstrap
from promptstack.core.clock import FrozenClock
from tests.conftest import make_settings

GRACE = 10.0


@pytest.mark.parametrize("flush_seconds", [8.0, 30.0])
async def test_the_jobs_get_what_the_outbox_flush_left_of_the_grace(
    database_url: str, tmp_path: Path, clock: FrozenClock, flush_seconds: float
) -> None:
    settings = make_settings(database_url, tmp_path, shutdown_grace_seconds=GRACE)
    container = bootstrap(settings, clock=clock)
    given: dict[str, float] = {}

    async def slow_flush(grace: float) -> None:
        given["relay"] = grace
        clock.advance(timedelta(seconds=flush_seconds))

    async def stop_jobs(grace: float) -> None:
        given["jobs"] = grace

    container.events.relay.stop = slow_flush  # type: ignore[method-assign]
    container.jobs.executor.stop = stop_jobs  # type: ignore[method-assign]
    await container.aclose()

    assert 0 < given["relay"] <= GRACE
    assert 0 <= given["jobs"] <= max(0.0, GRACE - flush_seconds)
