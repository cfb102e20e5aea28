"""The payment step's jobs: charging, refunding, and looking up a charge given up on."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from promptstack.jobs.leases import FatalJobError
from promptstack.jobs.registry import JobContext, JobKinds, JobResult
from promptstack.shop.payments.service import CHARGE, RECONCILE, REFUND, PaymentService


def register(kinds: JobKinds, payments: PaymentService) -> None:
    kinds.add(CHARGE, _for_order(payments.charge))
    kinds.add(REFUND, _for_order(payments.refund))
    kinds.add(RECONCILE, _for_order(payments.reconcile))


def _for_order(
    step: Callable[[uuid.UUID], Awaitable[dict[str, Any]]],
) -> Callable[[JobContext], Awaitable[JobResult]]:
    async def run(job: JobContext) -> JobResult:
        try:
            order_id = uuid.UUID(str(job.params["order_id"]))
        except (KeyError, ValueError) as exc:
            raise FatalJobError("The job names no valid order.") from exc
        return await step(order_id)

    return run
