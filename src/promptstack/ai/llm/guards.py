"""A breaker and a retry policy per provider, around every call the gateway makes.

The retries take the blips (a dropped connection, a 5xx, a timeout) on the same
provider; the breaker, counting only calls that failed every retry, stops asking a
provider that keeps failing and lets the gateway fall back at once. A refused request
or a provider's own rate limit is an answer from a healthy provider: neither retried
nor counted against it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TypeVar

from promptstack.ai.llm.providers.base import (
    ProviderRateLimited,
    ProviderRejected,
    ProviderTimeout,
    ProviderUnreachable,
)
from promptstack.core.resilience import CircuitBreaker, Resilient, RetryPolicy

T = TypeVar("T")

FAILURES_TO_OPEN = 5
RECOVERY_SECONDS = 30.0
ATTEMPTS = 2


class ProviderGuards:
    def __init__(self, clock: Callable[[], float], *, retry_initial: float = 0.25) -> None:
        self._clock = clock
        self._retry_initial = retry_initial
        self._guards: dict[str, Resilient] = {}

    async def guarded(self, provider: str, call: Callable[[], Awaitable[T]]) -> T:
        return await self._guard(provider).call(call)

    def _guard(self, provider: str) -> Resilient:
        guard = self._guards.get(provider)
        if guard is None:
            guard = self._guards[provider] = Resilient(
                CircuitBreaker(
                    f"llm:{provider}",
                    failure_threshold=FAILURES_TO_OPEN,
                    recovery_timeout=RECOVERY_SECONDS,
                    excluded=(ProviderRejected, ProviderRateLimited),
                    clock=self._clock,
                ),
                RetryPolicy(
                    attempts=ATTEMPTS,
                    initial=self._retry_initial,
                    maximum=2.0,
                    retry_on=(ProviderTimeout, ProviderUnreachable),
                ),
            )
        return guard
