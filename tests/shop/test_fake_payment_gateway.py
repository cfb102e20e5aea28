"""The fake payment gateway keeps its promises: the payment adapter's tests are only as
good as the gateway they run against, faults and idempotency above all."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from tests.fixtures import payment_gateway as fake
from tests.fixtures.payment_gateway import FakePaymentGateway

payment_gateway = fake.payment_gateway  # the fixture as a conftest will offer it


@pytest.fixture(scope="module")
def gateway_process() -> Iterator[FakePaymentGateway]:
    with FakePaymentGateway() as gateway:
        yield gateway


@pytest.fixture
def gateway(gateway_process: FakePaymentGateway) -> FakePaymentGateway:
    gateway_process.reset()
    return gateway_process


@pytest.fixture
def client(gateway: FakePaymentGateway) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=gateway.url, timeout=5) as client:
        yield client


def order(**fields: Any) -> dict[str, Any]:
    return {
        "amount_cents": 1250,
        "currency": "EUR",
        "token": "tok_visa",
        "reference": "order-1",
        **fields,
    }


def charge(client: httpx.Client, key: str | None, body: Any, timeout: float = 5) -> httpx.Response:
    headers = {"Idempotency-Key": key} if key is not None else {}
    return client.post("/v1/charges", json=body, headers=headers, timeout=timeout)


def refund(client: httpx.Client, key: str, charge_id: str, amount_cents: int) -> httpx.Response:
    return client.post(
        "/v1/refunds",
        json={"charge_id": charge_id, "amount_cents": amount_cents},
        headers={"Idempotency-Key": key},
    )


def charged(client: httpx.Client, key: str, **fields: Any) -> dict[str, Any]:
    response = charge(client, key, order(**fields))
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


def wait_until(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + 10
    while not condition():
        assert time.monotonic() < deadline, f"gave up waiting for {what}"
        time.sleep(0.02)  # polling a condition, not an assertion


def test_a_good_card_is_charged(gateway: FakePaymentGateway, client: httpx.Client) -> None:
    body = charged(client, "key-1")

    assert body["id"].startswith("ch_")
    assert body["status"] == "succeeded"
    assert (body["amount_cents"], body["currency"], body["reference"]) == (1250, "EUR", "order-1")
    assert body["created_at"].endswith("+00:00")
    fetched = client.get(f"/v1/charges/{body['id']}")
    assert fetched.status_code == 200
    assert fetched.json() == {**body, "refunded_cents": 0}
    assert gateway.ledger()["charges"] == [{**body, "refunded_cents": 0}]


def test_a_declined_card_is_recorded_as_declined(
    gateway: FakePaymentGateway, client: httpx.Client
) -> None:
    response = charge(client, "key-1", order(token="tok_chargeDeclined"))

    assert response.status_code == 402
    assert response.json()["error"]["code"] == "card_declined"
    declined = response.json()["charge"]
    assert declined["status"] == "declined"
    assert [c["id"] for c in gateway.ledger()["charges"]] == [declined["id"]]
    replay = charge(client, "key-1", order(token="tok_chargeDeclined"))
    assert (replay.status_code, replay.json()) == (402, response.json())
    assert replay.headers["Idempotent-Replayed"] == "true"


def test_an_unknown_token_is_refused_and_kept_like_a_decline(
    gateway: FakePaymentGateway, client: httpx.Client
) -> None:
    response = charge(client, "key-1", order(token="tok_nonsense"))

    assert response.status_code == 402
    assert response.json()["error"]["code"] == "invalid_token"
    assert response.json()["charge"]["status"] == "declined"
    replay = charge(client, "key-1", order(token="tok_nonsense"))
    assert replay.headers["Idempotent-Replayed"] == "true"
    assert len(gateway.ledger()["charges"]) == 1


def test_a_gateway_error_keeps_nothing_under_the_key(
    gateway: FakePaymentGateway, client: httpx.Client
) -> None:
    for _ in range(2):
        response = charge(client, "key-1", order(token="tok_gatewayError"))
        assert response.status_code == 503
        assert response.json()["error"]["code"] == "gateway_error"
        assert "Idempotent-Replayed" not in response.headers
    assert gateway.ledger()["charges"] == []

    assert charge(client, "key-1", order()).status_code == 201  # another body: key is free


def test_the_same_key_and_body_replay_the_first_answer(
    gateway: FakePaymentGateway, client: httpx.Client
) -> None:
    first = charge(client, "key-1", order())
    again = charge(client, "key-1", order())

    assert (first.status_code, again.status_code) == (201, 201)
    assert again.json() == first.json()
    assert again.headers["Idempotent-Replayed"] == "true"
    assert "Idempotent-Replayed" not in first.headers
    ledger = gateway.ledger()
    assert [c["id"] for c in ledger["charges"]] == [first.json()["id"]]
    assert ledger["requests"] == 2


def test_a_key_reused_for_another_body_is_refused(
    gateway: FakePaymentGateway, client: httpx.Client
) -> None:
    charged(client, "key-1")

    response = charge(client, "key-1", order(amount_cents=999))

    assert response.status_code == 409
    assert response.json()["error"]["code"] == "idempotency_key_reused"
    assert len(gateway.ledger()["charges"]) == 1


async def test_concurrent_requests_with_one_key_charge_once(gateway: FakePaymentGateway) -> None:
    async with httpx.AsyncClient(base_url=gateway.url, timeout=10) as concurrent:
        responses = await asyncio.gather(
            *(
                concurrent.post("/v1/charges", json=order(), headers={"Idempotency-Key": "key-1"})
                for _ in range(20)
            )
        )

    assert {r.status_code for r in responses} == {201}
    assert len({r.json()["id"] for r in responses}) == 1
    assert sum("Idempotent-Replayed" not in r.headers for r in responses) == 1
    assert len(gateway.ledger()["charges"]) == 1


def test_a_missing_idempotency_key_is_refused(
    gateway: FakePaymentGateway, client: httpx.Client
) -> None:
    response = charge(client, None, order())

    assert response.status_code == 400
    assert response.json()["error"]["code"] == "idempotency_key_required"
    assert gateway.ledger()["charges"] == []


@pytest.mark.parametrize(
    ("key", "body"),
    [
        ("k" * 256, order()),
        ("key-1", order(amount_cents=0)),
        ("key-1", order(amount_cents=12.5)),
        ("key-1", order(amount_cents=True)),
        ("key-1", order(currency="eur")),
        ("key-1", order(reference="r" * 201)),
        ("key-1", order(token=None)),
        ("key-1", order(surprise=1)),
        ("key-1", {"amount_cents": 1250, "currency": "EUR", "token": "tok_visa"}),
        ("key-1", [order()]),
    ],
)
def test_an_invalid_charge_is_refused(
    gateway: FakePaymentGateway, client: httpx.Client, key: str, body: dict[str, Any]
) -> None:
    response = charge(client, key, body)

    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_request"
    assert gateway.ledger()["charges"] == []


def test_an_unknown_charge_is_not_found(client: httpx.Client) -> None:
    response = client.get("/v1/charges/ch_unknown")

    assert response.status_code == 404
    assert response.json()["error"]["code"] == "no_such_charge"


def test_a_charge_is_refunded_up_to_its_amount(
    gateway: FakePaymentGateway, client: httpx.Client
) -> None:
    charge_id = charged(client, "charge-1")["id"]

    first = refund(client, "refund-1", charge_id, 1000)
    assert first.status_code == 201, first.text
    assert first.json()["id"].startswith("re_")
    assert (first.json()["charge_id"], first.json()["status"]) == (charge_id, "succeeded")
    too_much = refund(client, "refund-2", charge_id, 251)
    assert too_much.status_code == 400
    assert too_much.json()["error"]["code"] == "refund_exceeds_charge"
    assert refund(client, "refund-3", charge_id, 250).status_code == 201

    fetched = client.get(f"/v1/charges/{charge_id}").json()
    assert fetched["refunded_cents"] == 1250
    assert [r["amount_cents"] for r in gateway.ledger()["refunds"]] == [1000, 250]


def test_a_refund_is_idempotent(gateway: FakePaymentGateway, client: httpx.Client) -> None:
    charge_id = charged(client, "charge-1")["id"]

    first = refund(client, "refund-1", charge_id, 500)
    again = refund(client, "refund-1", charge_id, 500)
    reused = refund(client, "refund-1", charge_id, 400)

    assert again.json() == first.json()
    assert again.headers["Idempotent-Replayed"] == "true"
    assert reused.status_code == 409
    assert gateway.ledger()["charges"][0]["refunded_cents"] == 500
    assert len(gateway.ledger()["refunds"]) == 1


def test_only_a_succeeded_charge_can_be_refunded(
    gateway: FakePaymentGateway, client: httpx.Client
) -> None:
    declined = charge(client, "charge-1", order(token="tok_chargeDeclined")).json()["charge"]

    for charge_id in (declined["id"], "ch_unknown"):
        response = refund(client, f"refund-{charge_id}", charge_id, 100)
        assert response.status_code == 404
        assert response.json()["error"]["code"] == "no_such_charge"
    assert gateway.ledger()["refunds"] == []


def test_a_refund_needs_a_key_and_a_valid_body(
    gateway: FakePaymentGateway, client: httpx.Client
) -> None:
    charge_id = charged(client, "charge-1")["id"]

    keyless = client.post("/v1/refunds", json={"charge_id": charge_id, "amount_cents": 1})
    negative = refund(client, "refund-1", charge_id, -1)

    assert keyless.json()["error"]["code"] == "idempotency_key_required"
    assert negative.json()["error"]["code"] == "invalid_request"
    assert gateway.ledger()["refunds"] == []


def test_down_answers_gateway_error_for_the_counted_requests(
    gateway: FakePaymentGateway, client: httpx.Client
) -> None:
    gateway.faults("down", count=2)

    for _ in range(2):
        response = charge(client, "key-1", order())
        assert response.status_code == 503
        assert response.json()["error"]["code"] == "gateway_error"
        assert client.get("/health").status_code == 200
    assert gateway.ledger()["charges"] == []
    assert charge(client, "key-1", order()).status_code == 201


def test_a_fault_without_a_count_lasts_until_changed(
    gateway: FakePaymentGateway, client: httpx.Client
) -> None:
    gateway.faults("error_500")

    for _ in range(3):
        response = charge(client, "key-1", order())
        assert response.status_code == 500
    assert gateway.ledger()["charges"] == []
    gateway.faults("ok")
    assert charge(client, "key-1", order()).status_code == 201
    assert gateway.ledger()["requests"] == 4


def test_slow_after_commit_charges_then_keeps_the_client_waiting(
    gateway: FakePaymentGateway, client: httpx.Client
) -> None:
    gateway.faults("slow_after_commit", count=1, delay_seconds=30)

    with pytest.raises(httpx.ReadTimeout):
        charge(client, "key-1", order(), timeout=0.5)
    wait_until(lambda: len(gateway.ledger()["charges"]) == 1, "the charge")
    retry = charge(client, "key-1", order())

    assert retry.status_code == 201
    assert retry.headers["Idempotent-Replayed"] == "true"
    assert retry.json()["id"] == gateway.ledger()["charges"][0]["id"]
    assert len(gateway.ledger()["charges"]) == 1


def test_slow_after_commit_answers_a_patient_client(
    gateway: FakePaymentGateway, client: httpx.Client
) -> None:
    gateway.faults("slow_after_commit", count=1, delay_seconds=0.2)

    response = charge(client, "key-1", order(), timeout=10)

    assert response.status_code == 201
    assert response.json()["id"] == gateway.ledger()["charges"][0]["id"]


def test_drop_after_commit_charges_then_hangs_up(
    gateway: FakePaymentGateway, client: httpx.Client
) -> None:
    gateway.faults("drop_after_commit", count=1)

    with pytest.raises(httpx.RemoteProtocolError):
        charge(client, "key-1", order())
    [kept] = gateway.ledger()["charges"]
    retry = charge(client, "key-1", order())

    assert retry.status_code == 201
    assert retry.headers["Idempotent-Replayed"] == "true"
    assert retry.json()["id"] == kept["id"]
    assert len(gateway.ledger()["charges"]) == 1


def test_ok_ends_a_fault_and_an_unknown_mode_is_refused(
    gateway: FakePaymentGateway, client: httpx.Client
) -> None:
    refused = client.post("/_faults", json={"mode": "flaky"})
    assert refused.status_code == 400

    gateway.faults("down", count=5)
    gateway.faults("ok")

    assert charge(client, "key-1", order()).status_code == 201


def test_reset_forgets_charges_keys_faults_and_counts(
    gateway: FakePaymentGateway, client: httpx.Client
) -> None:
    first = charged(client, "key-1")
    gateway.faults("down")

    gateway.reset()

    assert gateway.ledger() == {"charges": [], "refunds": [], "requests": 0}
    assert charged(client, "key-1")["id"] != first["id"]


def test_an_outage_and_a_recovery_on_the_same_port(payment_gateway: FakePaymentGateway) -> None:
    url = payment_gateway.url
    with httpx.Client(base_url=url, timeout=5) as client:
        charged(client, "key-1")

        payment_gateway.stop()
        with pytest.raises(httpx.ConnectError):
            charge(client, "key-2", order())
        payment_gateway.start()

        assert payment_gateway.url == url
        assert client.get("/health").json() == {"status": "ok"}
        assert payment_gateway.ledger()["charges"] == []  # a restart loses the state
        assert charge(client, "key-1", order()).status_code == 201
