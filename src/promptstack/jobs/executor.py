"""The executor of this process: Celery when a broker is configured, else in-process."""

from __future__ import annotations

from typing import Protocol

from promptstack.core.settings import Settings
from promptstack.jobs.celery_app import CeleryExecutor
from promptstack.jobs.inprocess import InProcessExecutor
from promptstack.jobs.runner import JobRunner
from promptstack.jobs.service import JobDispatcher, JobService


class Executor(JobDispatcher, Protocol):
    async def start(self) -> None:
        """Begin running jobs in this process, if this executor runs any here."""
        ...

    async def stop(self, grace: float) -> None:
        """Stop taking jobs; what runs gets `grace` seconds."""
        ...


def build_executor(settings: Settings, runner: JobRunner, jobs: JobService) -> Executor:
    if settings.celery_broker_url is not None:
        return CeleryExecutor(settings)
    return InProcessExecutor(settings, runner, jobs)
