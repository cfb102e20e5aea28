"""Orders: placing (idempotently), reading from the stream, and the commands of people.

Every command loads the order's stream, lets the aggregate decide, and appends what it
decided; a command that loses a race for the stream is run again from a fresh load
(`retrying_conflicts`). Commands and the history read the stream itself, on the
primary, so a client always sees the order it has just placed or changed; lists and single reads
come from the read model (`projection.py`), which may trail the stream by a moment.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from promptstack.accounts.models import Role, UserSnapshot
from promptstack.audit.service import Auditor
from promptstack.core.clock import Clock
from promptstack.core.envelope import Event
from promptstack.core.errors import AppError, Forbidden, NotFound, ValidationFailed
from promptstack.core.ids import IdSource
from promptstack.core.metrics import ORDERS_STUCK
from promptstack.core.pagination import Page, PageRequest
from promptstack.core.unit_of_work import UnitOfWork, UnitOfWorkFactory
from promptstack.events.recorded import Recorded
from promptstack.events.sourcing import Loaded, Streams, retrying_conflicts
from promptstack.events.store import EventStore
from promptstack.shop.catalog.models import ProductView
from promptstack.shop.catalog.service import CatalogService
from promptstack.shop.orders import domain
from promptstack.shop.orders.domain import Order, OrderStatus
from promptstack.shop.orders.events import OrderLine
from promptstack.shop.orders.projection import order_of
from promptstack.shop.orders.repository import OrderRequestRepository, OrderViewRepository


class IdempotencyKeyReused(AppError):
    status = 422
    code = "idempotency_key_reused"
    title = "This Idempotency-Key was used for a different order"


@dataclass(frozen=True, slots=True)
class Item:
    product_id: uuid.UUID
    quantity: int


@dataclass(frozen=True, slots=True)
class NewOrder:
    items: tuple[Item, ...]
    payment_token: str
    discount_percent: int = 0

    def fingerprint(self) -> str:
        """What tells a retry of this request from another request under its key."""
        body = {
            "items": [[str(item.product_id), item.quantity] for item in self.items],
            "payment_token": self.payment_token,
            "discount_percent": self.discount_percent,
        }
        return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class Placed:
    order: Order
    # True when the Idempotency-Key named an order placed before.
    replayed: bool


@dataclass(frozen=True, slots=True)
class History:
    events: list[Recorded]
    state: Order | None


Command = Callable[[Order], list[Event]]


class OrderService:
    def __init__(
        self,
        uow: UnitOfWorkFactory,
        catalog: CatalogService,
        streams: Streams[Order],
        auditor: Auditor,
        clock: Clock,
        ids: IdSource,
        *,
        idempotency_hours: float,
        settle_minutes: float,
    ) -> None:
        self.uow = uow
        self.catalog = catalog
        self.streams = streams
        self.audit = auditor
        self.clock = clock
        self.ids = ids
        self.idempotency_window = timedelta(hours=idempotency_hours)
        self.settle_within = timedelta(minutes=settle_minutes)

    async def place(self, user: UserSnapshot, new: NewOrder, key: str | None = None) -> Placed:
        """Price `new` from the catalog and place it; with `key`, a retry of the same
        request gets the order the first one placed."""
        order_id = self.ids.new()
        fingerprint = new.fingerprint()
        async with self.uow() as uow:
            if key is not None:
                now = self.clock.now()
                holder = await OrderRequestRepository.of(uow).claim(
                    user.id, key, fingerprint, order_id, now, now - self.idempotency_window
                )
                if holder.order_id != order_id:
                    if holder.body_hash != fingerprint:
                        raise IdempotencyKeyReused(
                            "This Idempotency-Key placed another order; use a new key for "
                            "a new order."
                        )
                    loaded = await self.streams.load(uow, str(holder.order_id))
                    return Placed(loaded.state, replayed=True)
            lines, currency = await self._price(uow, new.items)
            start = Loaded(Order(id=order_id), 0)
            events = domain.place(
                start.state,
                user_id=user.id,
                lines=lines,
                currency=currency,
                discount_percent=new.discount_percent,
                payment_token=new.payment_token,
            )
            placed = await self.streams.append(uow, str(order_id), start, events)
            return Placed(placed.state, replayed=False)

    async def _price(self, uow: UnitOfWork, items: Sequence[Item]) -> tuple[list[OrderLine], str]:
        products = await self.catalog.for_order(uow, [item.product_id for item in items])
        lines = [_line(n, item, products.get(item.product_id)) for n, item in enumerate(items)]
        currencies = sorted({products[item.product_id].currency for item in items})
        if len(currencies) > 1:
            raise ValidationFailed(
                f"the products are priced in {', '.join(currencies)}; an order is paid in "
                "one currency",
                loc=("body", "items"),
            )
        return lines, currencies[0]

    async def forget_expired_keys(self) -> None:
        """Drop the Idempotency-Keys past IDEMPOTENCY_KEY_HOURS (an expired key is
        taken over in place anyway; this keeps the table to a day of requests)."""
        async with self.uow() as uow:
            await OrderRequestRepository.of(uow).purge(self.clock.now() - self.idempotency_window)

    async def get(self, user: UserSnapshot, order_id: uuid.UUID) -> Order:
        """From the read model; from the stream, on the primary, while the read model
        has not caught up with a just-placed order (so its buyer never gets a 404)."""
        async with self.uow(read_only=True) as uow:
            row = await OrderViewRepository.of(uow).shown(order_id)
        if row is not None:
            return _visible(user, order_of(row))
        async with self.uow(read_only=True, primary=True) as uow:
            loaded = await self.streams.load(uow, str(order_id))
        return _visible(user, loaded.state)

    async def list(
        self,
        user: UserSnapshot,
        page: PageRequest,
        *,
        status: OrderStatus | None = None,
        user_id: uuid.UUID | None = None,
    ) -> Page[Order]:
        """The caller's orders, newest first; administrators see everyone's, or one
        user's (`user_id`)."""
        if user.role is Role.USER:
            if user_id is not None and user_id != user.id:
                raise Forbidden("Only administrators may list other users' orders.")
            user_id = user.id
        async with self.uow(read_only=True) as uow:
            rows = await OrderViewRepository.of(uow).page(
                page, user_id=user_id, status=None if status is None else str(status)
            )
        return Page(items=[order_of(row) for row in rows.items], next_cursor=rows.next_cursor)

    async def stuck(self, admin: UserSnapshot, limit: int = 100) -> Sequence[Order]:
        """Orders the saga has not settled within ORDER_SETTLE_MINUTES, oldest first."""
        _require_admin(admin)
        async with self.uow(read_only=True) as uow:
            rows = await OrderViewRepository.of(uow).unsettled_since(self._settle_cutoff(), limit)
        return [order_of(row) for row in rows]

    async def observe(self) -> None:
        """Set the stuck-orders gauge from the read model (at scrape time)."""
        async with self.uow(read_only=True) as uow:
            count = await OrderViewRepository.of(uow).count_unsettled_since(self._settle_cutoff())
        ORDERS_STUCK.set(count)

    def _settle_cutoff(self) -> datetime:
        return self.clock.now() - self.settle_within

    async def history(
        self, user: UserSnapshot, order_id: uuid.UUID, as_of: datetime | None = None
    ) -> History:
        """The order's events up to `as_of` (all of them without), and the order they
        made: the order as it was at that moment (None before it was placed)."""
        async with self.uow(read_only=True, primary=True) as uow:
            events = await EventStore.of(uow).read(str(order_id))
        now = _visible(user, self.streams.replay(str(order_id), events).state)
        if as_of is None:
            return History(events, now)
        events = [event for event in events if event.envelope.occurred_at <= as_of]
        then = self.streams.replay(str(order_id), events).state if events else None
        return History(events, then)

    async def cancel(self, user: UserSnapshot, order_id: uuid.UUID) -> Order:
        """The customer (or an administrator) cancels before the order ships; the saga
        refunds and releases what it had done."""
        return await self._run(user, order_id, domain.cancel, "order.cancel_requested")

    async def ship(self, admin: UserSnapshot, order_id: uuid.UUID) -> Order:
        _require_admin(admin)
        return await self._run(admin, order_id, domain.ship, "order.shipped")

    async def deliver(self, admin: UserSnapshot, order_id: uuid.UUID) -> Order:
        _require_admin(admin)
        return await self._run(admin, order_id, domain.deliver, "order.delivered")

    async def _run(
        self, actor: UserSnapshot, order_id: uuid.UUID, command: Command, action: str
    ) -> Order:
        async def attempt() -> Order:
            async with self.uow() as uow:
                loaded = await self.streams.load(uow, str(order_id))
                _visible(actor, loaded.state)
                after = await self.streams.append(uow, str(order_id), loaded, command(loaded.state))
                self.audit.record(
                    uow,
                    action,
                    actor_id=actor.id,
                    subject_id=loaded.state.user_id,
                    order_id=str(order_id),
                )
                return after.state

        return await retrying_conflicts(attempt)

    async def react(self, uow: UnitOfWork, order_id: uuid.UUID, command: Command) -> Order:
        """Run a saga step's command on the order in the step's own transaction (which
        also holds its inbox entry); a conflict rolls both back and the delivery is
        retried."""
        loaded = await self.streams.load(uow, str(order_id))
        return (await self.streams.append(uow, str(order_id), loaded, command(loaded.state))).state


def _line(n: int, item: Item, product: ProductView | None) -> OrderLine:
    if product is None:
        raise ValidationFailed("no such product", loc=("body", "items", n, "product_id"))
    if not product.active:
        raise ValidationFailed(
            f"{product.sku} is no longer sold", loc=("body", "items", n, "product_id")
        )
    return OrderLine(
        product_id=product.id,
        sku=product.sku,
        name=product.name,
        kind=str(product.kind),
        credits=product.credits,
        unit_price_cents=product.price_cents,
        quantity=item.quantity,
    )


def _visible(user: UserSnapshot, order: Order) -> Order:
    """An order its owner or an administrator may see; to anyone else it does not exist."""
    if order.status is None or (order.user_id != user.id and user.role is Role.USER):
        raise NotFound("No such order.")
    return order


def _require_admin(user: UserSnapshot) -> None:
    if user.role is Role.USER:
        raise Forbidden("Only administrators may do this.")
