"""A payment processor over HTTP (`PAYMENT_GATEWAY_URL`), behind a breaker and retries.

The wire protocol: `POST /v1/charges` and `POST /v1/refunds` with an `Idempotency-Key`
header (a repeated key gets the first answer back), `GET /v1/charges?reference=` to find
what a reference was charged. A decline (402) is an answer from a healthy processor: it
neither trips the breaker nor is retried. Timeouts, refused connections and 5xx answers
are retried a few times with backoff inside the breaker; what is left of them, and an
open breaker, reach the payment step as `GatewayUnavailable`, which it waits out.

Not handled: a processor that answers a retry "this key is still being processed" (409,
as Stripe may while the first request runs) would be taken for a refusal here; the
fake processor in the tests queues such a retry instead. The timeout bounds each stage
of a request (connect, write, read), not the whole.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import httpx

from promptstack.core.resilience import CircuitBreaker, CircuitOpen, Resilient, RetryPolicy
from promptstack.shop.payments.gateway import (
    Charge,
    GatewayUnavailable,
    PaymentDeclined,
    Refund,
)

T = TypeVar("T")


class GatewayRefused(Exception):
    """The processor refused the request itself (4xx other than a decline): a bug on
    our side, never retried."""


class HttpPaymentGateway:
    def __init__(
        self,
        base_url: str,
        *,
        timeout: float,
        breaker: CircuitBreaker,
        retry: RetryPolicy | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self._client = httpx.AsyncClient(
            base_url=base_url, timeout=httpx.Timeout(timeout), transport=transport
        )
        self.breaker = breaker
        self._calls = Resilient(
            breaker,
            retry
            or RetryPolicy(attempts=3, initial=0.2, maximum=2.0, retry_on=(GatewayUnavailable,)),
        )

    async def charge(
        self, key: str, *, amount_cents: int, currency: str, token: str, reference: str
    ) -> Charge:
        body = {
            "amount_cents": amount_cents,
            "currency": currency,
            "token": token,
            "reference": reference,
        }
        answer = await self._call(lambda: self._post("/v1/charges", key, body))
        return _charge(answer)

    async def refund(self, key: str, *, charge_id: str, amount_cents: int) -> Refund:
        body = {"charge_id": charge_id, "amount_cents": amount_cents}
        answer = await self._call(lambda: self._post("/v1/refunds", key, body))
        return Refund(str(answer["id"]), str(answer["charge_id"]), int(answer["amount_cents"]))

    async def find_charge(self, reference: str) -> Charge | None:
        answer = await self._call(
            lambda: self._send(
                lambda: self._client.get("/v1/charges", params={"reference": reference})
            )
        )
        found = [c for c in answer.get("data", []) if c.get("status") == "succeeded"]
        return _charge(found[0]) if found else None

    async def aclose(self) -> None:
        await self._client.aclose()

    async def _call(self, request: Callable[[], Awaitable[T]]) -> T:
        try:
            return await self._calls.call(request)
        except CircuitOpen as exc:
            raise GatewayUnavailable(f"the payment gateway's breaker is open: {exc}") from exc

    async def _post(self, path: str, key: str, body: dict[str, Any]) -> dict[str, Any]:
        return await self._send(
            lambda: self._client.post(path, json=body, headers={"Idempotency-Key": key})
        )

    @staticmethod
    async def _send(request: Callable[[], Awaitable[httpx.Response]]) -> dict[str, Any]:
        try:
            response = await request()
        except httpx.HTTPError as exc:
            # Transport failures, and answers that could not be read (a broken encoding,
            # a redirect loop): none settles the call, so the same key is tried again.
            raise GatewayUnavailable(f"no usable answer from the payment gateway: {exc!r}") from exc
        status = response.status_code
        if status >= 500:
            raise GatewayUnavailable(f"the payment gateway answered {status}")
        if 400 <= status < 500 and status != 402:
            # Whatever the body (a proxy's page, say), the request itself was refused.
            raise GatewayRefused(
                f"the payment gateway refused the request ({status}): {response.text[:500]}"
            )
        try:
            answer: dict[str, Any] = response.json()
        except ValueError as exc:
            raise GatewayUnavailable("the payment gateway answered no JSON") from exc
        if status == 402:
            error = answer.get("error", {})
            raise PaymentDeclined(str(error.get("code", "declined")), str(error.get("message", "")))
        return answer


def _charge(answer: dict[str, Any]) -> Charge:
    return Charge(
        str(answer["id"]),
        int(answer["amount_cents"]),
        str(answer["currency"]),
        str(answer["reference"]),
    )
