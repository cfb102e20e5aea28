"""Job kinds: what a job of each kind does, defined once for every executor.

    from promptstack.jobs.registry import JobContext, kinds

    @kinds.define("account.export")
    async def export_account(job: JobContext) -> dict[str, Any]:
        await job.progress(1, 10)
        async with job.uow() as uow:
            ...
        return {"rows": 10}

A job function may run more than once (a retry, or a rerun after its worker died), so it
must be idempotent: an effect it repeats is keyed by the job's id, or checked before it
is made again. It returns a JSON object, stored as the job's result.

Kinds are registered on import. The built-in modules are always imported; a deployment
adds its own with `JOB_MODULES`, which the API and the workers import at start.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any

from promptstack.core.clock import Clock
from promptstack.core.settings import Settings
from promptstack.core.unit_of_work import UnitOfWorkFactory
from promptstack.jobs.service import ClaimedJob, JobService

BUILT_IN_MODULES = ("promptstack.exports.jobs",)
KIND_NAME = re.compile(r"[a-z][a-z0-9_]*(?:\.[a-z][a-z0-9_]*)*")
KIND_NAME_MAX_LENGTH = 64

JobResult = dict[str, Any]


class JobContext:
    """What a job function gets: its job, a way to report progress, units of work."""

    def __init__(
        self,
        job: ClaimedJob,
        jobs: JobService,
        uow: UnitOfWorkFactory,
        settings: Settings,
        clock: Clock,
    ) -> None:
        self.job = job
        self.uow = uow
        self.settings = settings
        self.clock = clock
        self._jobs = jobs

    @property
    def params(self) -> dict[str, Any]:
        return dict(self.job.params)

    async def progress(self, current: int, total: int | None = None) -> None:
        """Store how far the job got; readers of the job see it at once. `total` None
        keeps the total already known. Raises `JobLost` when another runner has taken
        the job over, which stops this one."""
        await self._jobs.report_progress(self.job, current, total)


JobFunction = Callable[[JobContext], Awaitable[JobResult]]


@dataclass(frozen=True, slots=True)
class JobKind:
    name: str
    run: JobFunction


class UnknownJobKind(LookupError):
    """A job of a kind no imported module defines (check JOB_MODULES)."""


class JobKinds:
    def __init__(self) -> None:
        self._kinds: dict[str, JobKind] = {}

    def define(self, name: str) -> Callable[[JobFunction], JobFunction]:
        """Register the decorated function as the job kind `name`."""
        if len(name) > KIND_NAME_MAX_LENGTH or not KIND_NAME.fullmatch(name):
            raise ValueError(
                f"job kind {name!r}: lowercase dotted names of at most "
                f"{KIND_NAME_MAX_LENGTH} characters, like account.export"
            )

        def register(function: JobFunction) -> JobFunction:
            known = self._kinds.get(name)
            if known is not None and _origin(known.run) != _origin(function):
                raise ValueError(f"job kind {name!r} is defined twice")
            self._kinds[name] = JobKind(name, function)
            return function

        return register

    def get(self, name: str) -> JobKind:
        try:
            return self._kinds[name]
        except KeyError:
            raise UnknownJobKind(
                f"no job kind {name!r} is defined in this process (is its module in JOB_MODULES?)"
            ) from None

    def __contains__(self, name: object) -> bool:
        return name in self._kinds

    @property
    def names(self) -> frozenset[str]:
        return frozenset(self._kinds)


kinds = JobKinds()


def load_job_modules(modules: Iterable[str] = ()) -> None:
    """Import the built-in job modules and `modules`, registering their kinds."""
    for module in (*BUILT_IN_MODULES, *modules):
        importlib.import_module(module)


def _origin(function: JobFunction) -> tuple[str, str]:
    """Where a function is defined: the same function imported again is no conflict."""
    return getattr(function, "__module__", ""), getattr(function, "__qualname__", "")
