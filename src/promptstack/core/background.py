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
        """Wait until no task is left, including tasks spawned meanwhile; after `grace`
        seconds, cancel whatever still runs."""
        deadline = None if grace is None else asyncio.get_running_loop().time() + grace
        while self._tasks:
            remaining = None if deadline is None else deadline - asyncio.get_running_loop().time()
            if remaining is not None and remaining <= 0:
                break
            await asyncio.wait(set(self._tasks), timeout=remaining)
        if not self._tasks:
            return
        still_running = set(self._tasks)
        log.warning("background_tasks_cancelled", count=len(still_running))
        for task in still_running:
            task.cancel()
        await asyncio.gather(*still_running, return_exceptions=True)
