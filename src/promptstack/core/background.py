"""Fire-and-forget work that still finishes: tracked tasks, awaited at shutdown.

A bare `asyncio.create_task` may be garbage-collected mid-flight and is abandoned when
the process stops; this keeps a reference to each task, logs its failure, and lets the
lifespan wait for the stragglers.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any

from promptstack.core.logging import get_logger

log = get_logger(__name__)


class BackgroundTasks:
    def __init__(self) -> None:
        self._tasks: set[asyncio.Task[None]] = set()

    def spawn(self, work: Coroutine[Any, Any, None], *, name: str) -> None:
        task = asyncio.get_running_loop().create_task(self._run(work, name), name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    @staticmethod
    async def _run(work: Coroutine[Any, Any, None], name: str) -> None:
        try:
            await work
        except Exception:
            log.exception("background_task_failed", task=name)

    @property
    def pending(self) -> int:
        return len(self._tasks)

    async def drain(self, grace: float | None = None) -> None:
        """Wait for every task running now, cancelling what still runs after `grace` seconds."""
        if not self._tasks:
            return
        _, still_running = await asyncio.wait(set(self._tasks), timeout=grace)
        for task in still_running:
            task.cancel()
        if still_running:
            log.warning("background_tasks_cancelled", count=len(still_running))
            await asyncio.gather(*still_running, return_exceptions=True)
