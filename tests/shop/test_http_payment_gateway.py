"""The HTTP payment adapter against a gateway in a process of its own: whatever the
network does to a call, the ledger of what the gateway really charged must show each
order charged at most once, and a sick gateway must cost quick refusals, not a queue."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from promptstack.core.resilience import CircuitBreaker, CircuitOpen, CircuitState, RetryPolicy
from promptstack.shop.payments.gateway import Charge, GatewayUnavailable, PaymentDeclined
from promptstack.shop.payments.http_gateway import GatewayRefused, HttpPaymentGateway
from tests.fixtures import payment_gateway as fake
from tests.fixtures.payment_gateway import FakePaymentGateway

# The fixture of a gateway process of its own, for the test that stops and restarts it.
payment_gateway = fake.payment_gateway

TIMEOUT_SECONDS = 1.0
ATTEMPTS = 3
FAILURE_THRESHOLD = 3
RECOVERY_SECONDS = 30.0


class ManualClock:
    """The breaker's clock, moved by the test: a recovery is waited out by advancing it."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@dataclass
class Rig:
    adapter: HttpPaymentGateway
    breaker: CircuitBreaker
    clock: ManualClock
    sleeps: list[float] = field(default_factory=list)

    async def charge(
        self, key: str, *, card: str = "tok_visa", amount_cents: int = 1250, reference: str = ""
    ) -> Charge:
        return await self.adapter.charge(
            key,
            amount_cents=amount_cents,
            currency="EUR",
            token=card,
            reference=reference or f"order-{key}",
        )

    def state(self) -> CircuitState:
        return self.breaker.snapshot().state


def build(url: str) -> Rig:
    """The adapter as `bootstrap._shop` wires it, with short waits and a clock we hold."""
    clock = ManualClock()
    sleeps: list[float] = []

    async def sleep(seconds: float) -> None:
        sleeps.append(seconds)

    breaker = CircuitBreaker(
        "payment-gateway",
        failure_threshold=FAILURE_THRESHOLD,
        recovery_timeout=RECOVERY_SECONDS,
        excluded=(PaymentDeclined, GatewayRefused),
        clock=clock,
    )
    retry = RetryPolicy(
        attempts=ATTEMPTS, initial=0.2, maximum=2.0, retry_on=(GatewayUnavailable,), sleep=sleep
    )
    adapter = HttpPaymentGateway(url, timeout=TIMEOUT_SECONDS, breaker=breaker, retry=retry)
    return Rig(adapter, breaker, clock, sleeps)


@pytest.fixture(scope="module")
def gateway_process() -> Iterator[FakePaymentGateway]:
    with FakePaymentGateway() as gateway:
        yield gateway


@pytest.fixture
def gateway(gateway_process: FakePaymentGateway) -> FakePaymentGateway:
    gateway_process.reset()
    return gateway_process


@pytest.fixture
async def rig(gateway: FakePaymentGateway) -> AsyncIterator[Rig]:
    rig = build(gateway.url)
    yield rig
    await rig.adapter.aclose()


def succeeded(ledger: dict[str, Any]) -> list[dict[str, Any]]:
    return [c for c in ledger["charges"] if c["status"] == "succeeded"]


def as_charge(entry: dict[str, Any]) -> Charge:
    return Charge(entry["id"], entry["amount_cents"], entry["currency"], entry["reference"])


async def test_a_charge_is_made_once_per_key(gateway: FakePaymentGateway, rig: Rig) -> None:
    first = await rig.charge("key-1", reference="order-1")
    again = await rig.charge("key-1", reference="order-1")

    [kept] = gateway.ledger()["charges"]
    assert kept["status"] == "succeeded"
    assert first == as_charge(kept) == Charge(kept["id"], 1250, "EUR", "order-1")
    assert again.id == first.id
    assert gateway.ledger()["requests"] == 2


async def test_a_decline_is_final_and_does_not_trip_the_breaker(
    gateway: FakePaymentGateway, rig: Rig
) -> None:
    """A decline is a healthy gateway's answer: retrying it would ask the card network
    the same question again, and counting it would let a run of bad cards cut every
    buyer off from paying."""
    for n in range(FAILURE_THRESHOLD + 1):
        with pytest.raises(PaymentDeclined) as declined:
            await rig.charge(f"key-{n}", card="tok_chargeDeclined")
        assert declined.value.code == "card_declined"

    assert rig.sleeps == []
    assert rig.state() is CircuitState.CLOSED
    ledger = gateway.ledger()
    assert ledger["requests"] == FAILURE_THRESHOLD + 1
    assert len(ledger["charges"]) == FAILURE_THRESHOLD + 1
    assert succeeded(ledger) == []


async def test_a_gateway_error_is_retried_then_unavailable(
    gateway: FakePaymentGateway, rig: Rig
) -> None:
    with pytest.raises(GatewayUnavailable):
        await rig.charge("key-1", card="tok_gatewayError")

    assert len(rig.sleeps) == ATTEMPTS - 1
    ledger = gateway.ledger()
    assert ledger["requests"] == ATTEMPTS
    assert ledger["charges"] == []


@pytest.mark.parametrize(
    ("mode", "delay_seconds"),
    [("slow_after_commit", 30.0), ("drop_after_commit", 0.0)],
)
async def test_a_charge_whose_answer_was_lost_is_found_by_the_retry(
    gateway: FakePaymentGateway, rig: Rig, mode: Any, delay_seconds: float
) -> None:
    """The gateway charged but the answer never came: only a retry under the same key
    learns the outcome without charging the card a second time."""
    gateway.faults(mode, count=1, delay_seconds=delay_seconds)

    charge = await rig.charge("key-1")

    ledger = gateway.ledger()
    [kept] = ledger["charges"]
    assert charge == as_charge(kept)
    assert ledger["requests"] == 2
    assert len(rig.sleeps) == 1


async def test_a_blip_of_server_errors_costs_nothing(gateway: FakePaymentGateway, rig: Rig) -> None:
    gateway.faults("error_500", count=ATTEMPTS - 1)

    charge = await rig.charge("key-1")

    ledger = gateway.ledger()
    assert [as_charge(c) for c in ledger["charges"]] == [charge]
    assert ledger["requests"] == ATTEMPTS
    assert rig.breaker.snapshot().consecutive_failures == 0


async def test_a_down_gateway_opens_the_breaker_until_it_recovers(
    gateway: FakePaymentGateway, rig: Rig
) -> None:
    gateway.faults("down")
    for n in range(FAILURE_THRESHOLD):
        assert rig.state() is CircuitState.CLOSED
        with pytest.raises(GatewayUnavailable):
            await rig.charge(f"key-{n}")
    assert rig.state() is CircuitState.OPEN
    asked = gateway.ledger()["requests"]
    assert asked == FAILURE_THRESHOLD * ATTEMPTS

    with pytest.raises(GatewayUnavailable) as refused:
        await rig.charge("key-open")
    assert isinstance(refused.value.__cause__, CircuitOpen)
    assert gateway.ledger()["requests"] == asked

    gateway.faults("ok")
    rig.clock.advance(RECOVERY_SECONDS)
    charge = await rig.charge("key-back")

    assert rig.state() is CircuitState.CLOSED
    assert [as_charge(c) for c in gateway.ledger()["charges"]] == [charge]


async def test_a_stopped_gateway_is_not_called_while_the_breaker_is_open(
    payment_gateway: FakePaymentGateway,
) -> None:
    """Refused connections rather than 503s; the restarted process counts its requests
    from zero, so any request the open breaker let through would show."""
    rig = build(payment_gateway.url)
    try:
        payment_gateway.stop()
        for n in range(FAILURE_THRESHOLD):
            with pytest.raises(GatewayUnavailable):
                await rig.charge(f"key-{n}")
        assert rig.state() is CircuitState.OPEN

        payment_gateway.start()
        with pytest.raises(GatewayUnavailable) as refused:
            await rig.charge("key-open")
        assert isinstance(refused.value.__cause__, CircuitOpen)
        assert payment_gateway.ledger()["requests"] == 0

        rig.clock.advance(RECOVERY_SECONDS)
        charge = await rig.charge("key-back")

        assert rig.state() is CircuitState.CLOSED
        assert [as_charge(c) for c in payment_gateway.ledger()["charges"]] == [charge]
    finally:
        await rig.adapter.aclose()


async def test_a_refund_is_made_once_per_key(gateway: FakePaymentGateway, rig: Rig) -> None:
    charge = await rig.charge("charge-1")

    first = await rig.adapter.refund("refund-1", charge_id=charge.id, amount_cents=500)
    again = await rig.adapter.refund("refund-1", charge_id=charge.id, amount_cents=500)

    ledger = gateway.ledger()
    [kept] = ledger["refunds"]
    assert (first.id, first.charge_id, first.amount_cents) == (kept["id"], charge.id, 500)
    assert again == first
    assert ledger["charges"][0]["refunded_cents"] == 500


async def test_a_refund_whose_answer_was_lost_is_found_by_the_retry(
    gateway: FakePaymentGateway, rig: Rig
) -> None:
    charge = await rig.charge("charge-1")
    gateway.faults("drop_after_commit", count=1)

    refund = await rig.adapter.refund("refund-1", charge_id=charge.id, amount_cents=500)

    ledger = gateway.ledger()
    assert [r["id"] for r in ledger["refunds"]] == [refund.id]
    assert ledger["charges"][0]["refunded_cents"] == 500


async def test_a_refund_while_the_gateway_is_down_is_unavailable(
    gateway: FakePaymentGateway, rig: Rig
) -> None:
    charge = await rig.charge("charge-1")
    gateway.faults("down")

    with pytest.raises(GatewayUnavailable):
        await rig.adapter.refund("refund-1", charge_id=charge.id, amount_cents=500)

    gateway.faults("ok")
    ledger = gateway.ledger()
    assert ledger["refunds"] == []
    assert ledger["charges"][0]["refunded_cents"] == 0


async def test_find_charge_sees_only_a_succeeded_charge(
    gateway: FakePaymentGateway, rig: Rig
) -> None:
    """How a charge whose answer was lost in an outage is recovered: a declined attempt
    for the same order must not be mistaken for the payment."""
    with pytest.raises(PaymentDeclined):
        await rig.charge("try-1", card="tok_chargeDeclined", reference="order-1")
    assert await rig.adapter.find_charge("order-1") is None

    charge = await rig.charge("try-2", reference="order-1")

    assert await rig.adapter.find_charge("order-1") == charge
    assert await rig.adapter.find_charge("order-unknown") is None
    assert [as_charge(c) for c in succeeded(gateway.ledger())] == [charge]


async def test_a_refused_request_is_final_and_does_not_trip_the_breaker(
    gateway: FakePaymentGateway, rig: Rig
) -> None:
    """A 409 is our bug, not the gateway's sickness: retrying cannot fix it, and it must
    not shut every other order out of paying."""
    charge = await rig.charge("key-1", amount_cents=1250)

    for _ in range(FAILURE_THRESHOLD + 1):
        with pytest.raises(GatewayRefused):
            await rig.charge("key-1", amount_cents=999)

    assert rig.sleeps == []
    assert rig.state() is CircuitState.CLOSED
    ledger = gateway.ledger()
    assert ledger["requests"] == FAILURE_THRESHOLD + 2
    assert [as_charge(c) for c in ledger["charges"]] == [charge]
