"""What a provider's HTTP answer means for the gateway, whichever SDK carried it.

The three SDKs raise their own exception types, but beneath them is the same HTTP: a
429 is a refusal for load that says when to come back, a 5xx (or Anthropic's 529) a
server that may answer the next try, and any other 4xx a request no provider would take.
Each adapter unwraps its SDK's error to a status and hands it here, so the three agree.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

from promptstack.ai.llm.providers.base import (
    ProviderError,
    ProviderRateLimited,
    ProviderRejected,
    ProviderTimeout,
    ProviderUnreachable,
)

# The longest wait a provider's Retry-After is taken at its word for.
MAX_RETRY_AFTER_SECONDS = 3600.0


def retry_after(headers: Mapping[str, str] | None) -> float | None:
    """Seconds to wait from a Retry-After header (seconds or an HTTP date), if any."""
    if not headers:
        return None
    value = headers.get("retry-after") or headers.get("Retry-After")
    if value is None:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            seconds = (parsedate_to_datetime(value) - datetime.now(UTC)).total_seconds()
        except (TypeError, ValueError):
            return None
    if math.isnan(seconds) or seconds < 0:
        return None
    return min(seconds, MAX_RETRY_AFTER_SECONDS)


def of_status(
    provider: str, status: int, headers: Mapping[str, str] | None = None
) -> ProviderError:
    if status == 429:
        return ProviderRateLimited(
            provider, "the provider is rate limiting us", retry_after=retry_after(headers)
        )
    if status >= 500 or status in (408, 409):
        return ProviderUnreachable(provider, f"the provider answered {status}", transient=True)
    if status in (401, 403):
        return ProviderRejected(provider, f"the provider refused our credentials ({status})")
    return ProviderRejected(provider, f"the provider refused the request ({status})")


def broken_off(provider: str) -> ProviderError:
    """The connection failed or closed before the answer was complete."""
    return ProviderUnreachable(provider, "the connection to the provider failed", transient=True)


def malformed(provider: str) -> ProviderError:
    """An answer we could not read: trying again would likely read the same."""
    return ProviderError(provider, "the provider's answer could not be read")


def timed_out(provider: str) -> ProviderError:
    return ProviderTimeout(provider, "the provider did not answer in time", transient=True)
