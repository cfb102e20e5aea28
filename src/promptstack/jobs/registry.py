"""Job kinds: what a job of each kind does, defined once for every executor.

    async def export_account(job: JobContext) -> dict[str, Any]:
        await job.progress(1, 10)
        async with job.uow() as uow:
            ...
        return {"rows": 10}

    def register(kinds: JobKinds) -> None:
        kinds.add("account.export", export_account)

A job function may run more than once (a retry, or a rerun after its worker died), so it
must be idempotent: an effect it repeats is keyed by the job's id, or checked before it
is made again. It returns a JSON object, stored as the job's result.

Kinds are registered by explicit calls from `bootstrap()`, as consumers are: each domain's
`jobs.register(kinds)`, then a `register(kinds)` in each module a deployment names in
`JOB_MODULES`, which the API and the workers import at start.
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
from promptstack.jobs.leases import ClaimedJob, JobLeases

KIND_NAME = re.compile(r"[a-z][a-z0-9_]*(?:\.[a-z][a-z0-9_]*)*")
KIND_NAME_MAX_LENGTH = 64

JobResult = dict[str, Any]


class JobContext:
    """What a job function gets: its job, a way to report progress, units of work."""

    def __init__(
        self,
        job: ClaimedJob,
        leases: JobLeases,
        uow: UnitOfWorkFactory,
        settings: Settings,
        clock: Clock,
    ) -> None:
        self.job = job
        self.uow = uow
        self.settings = settings
        self.clock = clock
        self._leases = leases

    @property
    def params(self) -> dict[str, Any]:
        return dict(self.job.params)

    async def progress(self, current: int, total: int | None = None) -> None:
        """Store how far the job got; readers of the job see it at once. `total` None
        keeps the total already known. Raises `JobLost` when another runner has taken
        the job over, which stops this one."""
        await self._leases.report_progress(self.job, current, total)


JobFunction = Callable[[JobContext], Awaitable[JobResult]]


@dataclass(frozen=True, slots=True)
class JobKind:
    name: str
    run: JobFunction


class UnknownJobKind(LookupError):
    """A job of a kind nothing registered in this process (check JOB_MODULES)."""


class JobKinds:
    def __init__(self) -> None:
        self._kinds: dict[str, JobKind] = {}

    def add(self, name: str, function: JobFunction) -> None:
        """Register `function` as the job kind `name`."""
        if len(name) > KIND_NAME_MAX_LENGTH or not KIND_NAME.fullmatch(name):
            raise ValueError(
                f"job kind {name!r}: lowercase dotted names of at most "
                f"{KIND_NAME_MAX_LENGTH} characters, like account.export"
            )
        if name in self._kinds:
            raise ValueError(f"job kind {name!r} is defined twice")
        self._kinds[name] = JobKind(name, function)

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


def register_job_modules(kinds: JobKinds, modules: Iterable[str]) -> None:
    """Import each of `modules` (JOB_MODULES) and let its `register(kinds)` add its kinds."""
    for name in modules:
        module = importlib.import_module(name)
        register = getattr(module, "register", None)
        if not callable(register):
            raise ValueError(f"job module {name!r} has no register(kinds) function")
        register(kinds)
