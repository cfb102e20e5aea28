"""The Order aggregate as plain Python: amounts, transitions, and its fold."""

from __future__ import annotations

import contextlib
import json
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from promptstack.core.envelope import Event, envelope_for
from promptstack.events.recorded import Recorded
from promptstack.events.sourcing import Streams
from promptstack.shop.orders import domain
from promptstack.shop.orders.domain import (
    ORDERS,
    InvalidTransition,
    Order,
    OrderStatus,
    amounts,
)
from promptstack.shop.orders.events import CancelReason, OrderLine

START = datetime(2026, 6, 1, 12, tzinfo=UTC)


def line(price: int = 1000, quantity: int = 1, credits: int | None = None) -> OrderLine:
    return OrderLine(
        product_id=uuid.uuid4(),
        sku="SKU-1",
        name="A thing",
        kind="credits" if credits else "goods",
        credits=credits,
        unit_price_cents=price,
        quantity=quantity,
    )


class History:
    """An order's stream built in memory, one command at a time."""

    def __init__(self) -> None:
        self.order = Order(id=uuid.uuid4())
        self.recorded: list[Recorded] = []

    def run(self, command: Callable[[Order], list[Event]]) -> list[Event]:
        events = command(self.order)
        for event in events:
            at = START + timedelta(minutes=len(self.recorded))
            envelope = envelope_for(
                event, aggregate_id=str(self.order.id), id_=uuid.uuid4(), occurred_at=at
            )
            recorded = Recorded(len(self.recorded) + 1, event, envelope)
            self.recorded.append(recorded)
            self.order = ORDERS.apply(self.order, recorded)
        return events


def placed(*lines: OrderLine, discount: int = 0) -> History:
    history = History()
    user = uuid.uuid4()
    history.run(
        lambda order: domain.place(
            order,
            user_id=user,
            lines=lines or (line(),),
            currency="EUR",
            discount_percent=discount,
            payment_token="tok_visa",
        )
    )
    return history


@pytest.mark.parametrize(
    ("subtotal", "percent", "discount"),
    [
        (999, 15, 150),  # 149.85 rounds up
        (1, 50, 1),  # half a cent rounds up
        (3, 50, 2),  # 1.5 rounds up
        (1001, 10, 100),  # 100.1 rounds down
        (12345, 0, 0),
        (12345, 100, 12345),
    ],
)
def test_the_discount_is_rounded_half_up_once_per_order(
    subtotal: int, percent: int, discount: int
) -> None:
    money = amounts([line(price=subtotal)], percent)
    assert (money.subtotal_cents, money.discount_cents) == (subtotal, discount)
    assert money.total_cents == subtotal - discount


def test_the_largest_order_stays_exact() -> None:
    lines = [line(price=1_000_000_000, quantity=domain.MAX_QUANTITY)] * domain.MAX_LINES
    money = amounts(lines, 33)
    assert money.subtotal_cents == 10**15
    assert money.discount_cents == 33 * 10**13
    assert money.total_cents == 67 * 10**13


def test_placing_records_everything_the_order_is() -> None:
    history = placed(
        line(price=250, quantity=4), line(price=100, credits=500, quantity=3), discount=10
    )
    order = history.order
    assert order.status is OrderStatus.PENDING
    assert (order.subtotal_cents, order.discount_cents, order.total_cents) == (1300, 130, 1170)
    assert order.credits == 1500
    assert order.created_at == order.updated_at == START
    with pytest.raises(InvalidTransition):
        history.run(
            lambda o: domain.place(
                o,
                user_id=uuid.uuid4(),
                lines=[line()],
                currency="EUR",
                discount_percent=0,
                payment_token="tok_visa",
            )
        )


@pytest.mark.parametrize(
    "lines",
    [[], [line()] * (domain.MAX_LINES + 1), [line(quantity=domain.MAX_QUANTITY + 1)]],
    ids=["no line", "too many lines", "too many of one"],
)
def test_placing_refuses_orders_out_of_bounds(lines: list[OrderLine]) -> None:
    with pytest.raises(ValueError, match=r"an order has|quantity"):
        domain.place(
            Order(id=uuid.uuid4()),
            user_id=uuid.uuid4(),
            lines=lines,
            currency="EUR",
            discount_percent=0,
            payment_token="tok_visa",
        )


def reach(status: OrderStatus) -> History:
    history = placed()
    steps: dict[OrderStatus, list[Callable[[Order], list[Event]]]] = {
        OrderStatus.PENDING: [],
        OrderStatus.PAID: [lambda o: domain.record_payment(o, "ch_1", o.total_cents)],
        OrderStatus.CONFIRMED: [lambda o: domain.confirm(o, "ch_1")],
        OrderStatus.SHIPPED: [lambda o: domain.confirm(o, "ch_1"), domain.ship],
        OrderStatus.DELIVERED: [
            lambda o: domain.confirm(o, "ch_1"),
            domain.ship,
            domain.deliver,
        ],
        OrderStatus.CANCELLED: [domain.cancel],
    }
    for step in steps[status]:
        history.run(step)
    assert history.order.status is status
    return history


STRICT: dict[str, tuple[Callable[[Order], list[Event]], set[OrderStatus], OrderStatus]] = {
    "cancel": (
        domain.cancel,
        {OrderStatus.PENDING, OrderStatus.PAID, OrderStatus.CONFIRMED},
        OrderStatus.CANCELLED,
    ),
    "ship": (domain.ship, {OrderStatus.CONFIRMED}, OrderStatus.SHIPPED),
    "deliver": (domain.deliver, {OrderStatus.SHIPPED}, OrderStatus.DELIVERED),
}


@pytest.mark.parametrize("status", list(OrderStatus))
@pytest.mark.parametrize("action", list(STRICT))
def test_every_command_is_allowed_from_its_statuses_only(status: OrderStatus, action: str) -> None:
    command, allowed, after = STRICT[action]
    history = reach(status)
    if status in allowed:
        history.run(command)
        assert history.order.status is after
    else:
        with pytest.raises(InvalidTransition) as raised:
            history.run(command)
        assert raised.value.code == "invalid_transition"
        assert raised.value.extra["order_status"] == str(status)
        assert history.order.status is status


def test_a_customer_cancel_names_its_reason() -> None:
    history = reach(OrderStatus.CONFIRMED)
    history.run(domain.cancel)
    assert history.order.cancel_reason is CancelReason.CUSTOMER_REQUEST


@pytest.mark.parametrize(
    "reaction",
    [
        lambda o: domain.record_payment(o, "ch_2", 1),
        lambda o: domain.confirm(o, "ch_2"),
        lambda o: domain.fail(o, CancelReason.OUT_OF_STOCK),
    ],
    ids=["payment", "reservation", "failure"],
)
@pytest.mark.parametrize(
    "status", [OrderStatus.CONFIRMED, OrderStatus.SHIPPED, OrderStatus.CANCELLED]
)
def test_saga_reactions_that_come_too_late_change_nothing(
    reaction: Callable[[Order], list[Event]], status: OrderStatus
) -> None:
    history = reach(status)
    before = history.order
    assert history.run(reaction) == []
    assert history.order == before


def test_a_reservation_heard_before_the_payment_pays_and_confirms() -> None:
    history = placed(line(price=700, quantity=2))
    history.run(lambda o: domain.confirm(o, "ch_9"))
    assert history.order.status is OrderStatus.CONFIRMED
    assert history.order.payment_id == "ch_9"
    assert [r.event.type for r in history.recorded] == [
        "order.created",
        "order.paid",
        "order.confirmed",
    ]
    assert history.run(lambda o: domain.record_payment(o, "ch_9", 1400)) == []


def test_a_confirmation_carries_the_credits_to_grant() -> None:
    history = placed(line(credits=1000, quantity=3), line())
    [_, confirmed] = history.run(lambda o: domain.confirm(o, "ch_1"))
    assert confirmed.model_dump()["credits"] == 3000


COMMANDS: list[Callable[[Order], list[Event]]] = [
    lambda o: domain.record_payment(o, "ch_1", o.total_cents),
    lambda o: domain.confirm(o, "ch_1"),
    lambda o: domain.fail(o, CancelReason.PAYMENT_DECLINED, "card declined"),
    lambda o: domain.fail(o, CancelReason.OUT_OF_STOCK),
    domain.cancel,
    domain.ship,
    domain.deliver,
]


@given(
    quantities=st.lists(st.integers(1, domain.MAX_QUANTITY), min_size=1, max_size=5),
    discount=st.integers(0, 100),
    script=st.lists(st.integers(0, len(COMMANDS) - 1), max_size=12),
    cut=st.integers(0, 20),
)
def test_a_snapshot_at_any_point_plus_the_rest_equals_the_replay(
    quantities: list[int], discount: int, script: list[int], cut: int
) -> None:
    history = placed(*(line(price=99, quantity=q) for q in quantities), discount=discount)
    for pick in script:
        with contextlib.suppress(InvalidTransition):
            history.run(COMMANDS[pick])
    streams = Streams(ORDERS, snapshot_every=1)
    stream = str(history.order.id)
    replayed = streams.replay(stream, history.recorded)
    assert replayed.state == history.order
    cut = min(cut, len(history.recorded))
    upto = streams.replay(stream, history.recorded[:cut])
    # The snapshot goes through JSON as the store keeps it.
    kept = json.loads(json.dumps(ORDERS.dump(upto.state)))
    resumed = ORDERS.restore(kept)
    for recorded in history.recorded[cut:]:
        resumed = ORDERS.apply(resumed, recorded)
    assert resumed == replayed.state
    if history.order.status is OrderStatus.CANCELLED:
        assert history.order.cancel_reason is not None
    assert history.order.total_cents == amounts(history.order.lines, discount).total_cents
