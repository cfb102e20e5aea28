"""The composition root: the one place that builds every service from `Settings`.

The API, the CLI, the worker and the relay all start here, so no entry point has
wiring of its own. Tests pass their own clock, id source or mailer instead of
patching modules.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, fields
from datetime import timedelta

import redis.asyncio as redis
from pydantic import SecretStr

from promptstack.accounts import handlers as account_handlers
from promptstack.accounts.api_keys import ApiKeys
from promptstack.accounts.credits import CreditLedger
from promptstack.accounts.mail import AccountMail
from promptstack.accounts.models import Tier, UserSnapshot
from promptstack.accounts.recovery import AccountRecovery
from promptstack.accounts.service import AccountService
from promptstack.accounts.sessions import AuthService
from promptstack.accounts.snapshots import UserSnapshots
from promptstack.admin.service import EventAdmin
from promptstack.ai.documents import jobs as document_jobs
from promptstack.ai.documents.embeddings import Embedder, MiniLM
from promptstack.ai.documents.indexing import DocumentIndexer
from promptstack.ai.documents.service import Documents
from promptstack.ai.documents.vectors import ExactVectors
from promptstack.ai.llm.guards import ProviderGuards
from promptstack.ai.llm.prices import DEAREST, Price, PriceBook
from promptstack.ai.llm.providers.anthropic import AnthropicMessages
from promptstack.ai.llm.providers.demo import DemoProvider
from promptstack.ai.llm.providers.gemini import GeminiContent
from promptstack.ai.llm.providers.openai import MODELS as OPENAI_MODELS
from promptstack.ai.llm.providers.openai import OpenAIChat
from promptstack.ai.llm.providers.openai_compatible import openai_compatible
from promptstack.ai.llm.quotas import (
    CallLimits,
    Limits,
    LimitStore,
    MemoryLimitStore,
    RedisLimitStore,
)
from promptstack.ai.llm.registry import ProviderRegistry
from promptstack.ai.llm.reports import UsageReports
from promptstack.ai.llm.retrieval import Retriever
from promptstack.ai.llm.service import LlmGateway
from promptstack.ai.llm.tokens import TokenCounter
from promptstack.ai.llm.usage import UsageLedger
from promptstack.audit.service import AuditLog, Auditor
from promptstack.core.cache import Cache, CacheRegion, MemoryCache, RedisCache, redis_client
from promptstack.core.clock import Clock, SystemClock
from promptstack.core.database import Database
from promptstack.core.email import Mailer, build_mailer
from promptstack.core.ids import IdSource, RandomIds
from promptstack.core.logging import get_logger
from promptstack.core.rate_limit import (
    FailOpenLimiter,
    LeasedRateLimiter,
    MemoryRateLimiter,
    RateLimiter,
    RedisRateLimiter,
)
from promptstack.core.resilience import CircuitBreaker
from promptstack.core.security import PasswordHasher, TokenCodec
from promptstack.core.settings import Settings
from promptstack.core.unit_of_work import UnitOfWorkFactory
from promptstack.events.bus import Publisher
from promptstack.events.consumers import Consumers
from promptstack.events.delivery import Delivery
from promptstack.events.inprocess import InProcessBus
from promptstack.events.outbox import OutboxTable
from promptstack.events.rabbitmq import DeadLetters, RabbitConsumers, RabbitPublisher
from promptstack.events.relay import Relay
from promptstack.events.sourcing import Streams
from promptstack.exports import jobs as export_jobs
from promptstack.exports.service import AccountExports
from promptstack.features.service import FeatureFlags
from promptstack.jobs import handlers as job_handlers
from promptstack.jobs.celery_app import run_worker as run_celery_worker
from promptstack.jobs.executor import Executor, build_executor
from promptstack.jobs.leases import JobLeases
from promptstack.jobs.registry import JobKinds, register_job_modules
from promptstack.jobs.runner import JobRunner
from promptstack.jobs.service import JobService
from promptstack.notifications import handlers as notification_handlers
from promptstack.notifications.service import NotificationService
from promptstack.shop.catalog.models import ProductView
from promptstack.shop.catalog.service import CatalogService
from promptstack.shop.inventory import handlers as inventory_handlers
from promptstack.shop.inventory.service import InventoryService
from promptstack.shop.orders import handlers as order_handlers
from promptstack.shop.orders.domain import ORDERS, Order
from promptstack.shop.orders.projection import OrderProjection
from promptstack.shop.orders.service import OrderService
from promptstack.shop.payments import handlers as payment_handlers
from promptstack.shop.payments import jobs as payment_jobs
from promptstack.shop.payments.gateway import PaymentDeclined, PaymentGateway
from promptstack.shop.payments.http_gateway import GatewayRefused, HttpPaymentGateway
from promptstack.shop.payments.sandbox import SandboxGateway
from promptstack.shop.payments.service import PaymentService

log = get_logger(__name__)


@dataclass(frozen=True, slots=True)
class AccountsServices:
    """accounts/: the accounts, sign-in and sessions, recovery by email, the tokens, the
    credit ledger, and personal API keys."""

    service: AccountService
    auth: AuthService
    recovery: AccountRecovery
    tokens: TokenCodec
    credits: CreditLedger
    api_keys: ApiKeys


@dataclass(frozen=True, slots=True)
class JobsServices:
    """jobs/: the job API, the runner's lease protocol, the runner, and where jobs run."""

    service: JobService
    leases: JobLeases
    runner: JobRunner
    executor: Executor


@dataclass(frozen=True, slots=True)
class EventsServices:
    """events/: the consumers, how they are delivered to, and the outbox's way out."""

    consumers: Consumers
    delivery: Delivery
    publisher: Publisher
    relay: Relay
    broker_consumers: RabbitConsumers | None = None
    # Readiness of the broker, when there is one.
    broker_ping: Callable[[], Awaitable[None]] | None = None


@dataclass(frozen=True, slots=True)
class DocumentsServices:
    """ai/documents/: uploads and search, and the indexer the job and `reembed` run."""

    service: Documents
    indexer: DocumentIndexer


@dataclass(frozen=True, slots=True)
class ShopServices:
    """shop/: the catalog, orders, and the saga's payment and inventory steps."""

    catalog: CatalogService
    orders: OrderService
    projection: OrderProjection
    payments: PaymentService
    inventory: InventoryService
    gateway: PaymentGateway


_GROUPS = (AccountsServices, JobsServices, EventsServices, ShopServices, DocumentsServices)


def _values(holder: object) -> list[object]:
    return [getattr(holder, item.name) for item in fields(holder)]  # type: ignore[arg-type]


@dataclass(frozen=True, slots=True)
class Container:
    """Everything `bootstrap` built: the shared floors, then one entry per domain (a
    group where the domain has several services)."""

    settings: Settings
    clock: Clock
    database: Database
    cache: Cache
    rate_limiter: FailOpenLimiter
    uow: UnitOfWorkFactory
    accounts: AccountsServices
    audit_log: AuditLog
    features: FeatureFlags
    jobs: JobsServices
    exports: AccountExports
    notifications: NotificationService
    event_admin: EventAdmin
    shop: ShopServices
    llm: LlmGateway
    llm_usage: UsageReports
    documents: DocumentsServices
    events: EventsServices

    def services(self) -> dict[type, object]:
        """Everything built, by its type, for routes to ask for (`http.dependencies.provider`);
        the container itself too, for the operational endpoints that look at all of it."""
        found: dict[type, object] = {Container: self}
        for value in _values(self):
            for service in _values(value) if isinstance(value, _GROUPS) else [value]:
                if service is not None:
                    found.setdefault(type(service), service)
        return found

    async def start_events(self) -> None:
        """Relay the outbox, and consume from the broker when there is one."""
        if self.events.broker_consumers is not None:
            await self.events.broker_consumers.start()
        self.events.relay.start()

    async def aclose(self) -> None:
        """Stop consuming, flush the outbox and let running jobs finish within the grace
        period, then close the connections and pools.

        One grace for all the steps, not one each: an orchestrator's kill comes after
        the period it was told, however the time was spent (a flush that runs the saga
        in-process can take all of it)."""
        deadline = self.clock.monotonic() + self.settings.shutdown_grace_seconds

        def left() -> float:
            return max(0.0, deadline - self.clock.monotonic())

        if self.events.broker_consumers is not None:
            await self.events.broker_consumers.stop(left())
        await self.events.relay.stop(left())
        await self.jobs.executor.stop(left())
        await self.events.publisher.aclose()
        if isinstance(self.shop.gateway, HttpPaymentGateway):
            await self.shop.gateway.aclose()
        await self.cache.aclose()
        await self.database.dispose()


def bootstrap(
    settings: Settings | None = None,
    *,
    clock: Clock | None = None,
    ids: IdSource | None = None,
    mailer: Mailer | None = None,
    embedder: Embedder | None = None,
) -> Container:
    settings = settings or Settings()
    if settings.uses_default_secret and settings.environment == "development":
        log.warning(
            "insecure_secret_key",
            detail="SECRET_KEY is the public default: anyone can forge this service's "
            "tokens. Fine on a laptop; set a random SECRET_KEY anywhere else.",
        )
    clock = clock or SystemClock()
    ids = ids or RandomIds()
    database = Database(settings)
    cache, rate_limiter, redis_connection = _cache_and_limiter(settings, clock)
    users: CacheRegion[UserSnapshot] = cache.region(
        "users", UserSnapshot, settings.cache_user_ttl_seconds, immutable=True
    )
    uow = UnitOfWorkFactory(database, outbox=OutboxTable(), clock=clock, ids=ids)
    snapshots = UserSnapshots(
        uow,
        users,
        clock,
        session_window=timedelta(minutes=settings.access_token_expire_minutes),
    )
    uow.on_open(snapshots.follow)
    hasher = PasswordHasher(settings)
    tokens = TokenCodec(settings, clock)
    auditor = Auditor(clock, ids)
    mailer = mailer or build_mailer(settings)
    mail = AccountMail(settings, mailer, clock, ids)
    auth = AuthService(settings, uow, snapshots, hasher, tokens, auditor, clock, ids)
    kinds = JobKinds()
    export_jobs.register(kinds)
    register_job_modules(kinds, settings.job_modules)
    jobs = JobService(settings, uow, clock, ids)
    job_leases = JobLeases(settings, uow, clock)
    job_runner = JobRunner(settings, job_leases, uow, clock, kinds)
    executor = build_executor(settings, job_runner, jobs)

    consumers = Consumers()
    recovery = AccountRecovery(uow, hasher, mail, auditor, clock, ids)
    account_handlers.register(consumers, recovery, mail)
    job_handlers.register(consumers, executor)
    notifications = NotificationService(uow, auditor, mailer, clock, ids, settings)
    notification_handlers.register(consumers, notifications)
    credits = CreditLedger(uow, clock, ids)
    features = FeatureFlags(settings)
    shop = _shop(settings, uow, cache, consumers, kinds, jobs, credits, notifications, auditor, ids)
    delivery = Delivery(uow, clock, concurrency=settings.database_pool_size)
    publisher: Publisher
    broker_consumers = None
    broker_ping = None
    if settings.amqp_url is None:
        publisher = InProcessBus(consumers, delivery)
    else:
        rabbit = RabbitPublisher(settings, consumers)
        publisher, broker_ping = rabbit, rabbit.ping
        broker_consumers = RabbitConsumers(settings, consumers, delivery)
    relay = Relay(settings, uow, publisher, clock)
    relay.also_purge(shop.orders.forget_expired_keys)
    documents = _documents(settings, uow, kinds, jobs, embedder or MiniLM(), ids)
    llm = _llm(settings, uow, features, credits, ids, redis_connection, documents.service)
    relay.also_purge(llm.usage.sweep)
    uow.on_events(relay.wake)
    return Container(
        settings=settings,
        clock=clock,
        database=database,
        cache=cache,
        rate_limiter=rate_limiter,
        uow=uow,
        accounts=AccountsServices(
            service=AccountService(
                uow, hasher, auditor, clock, ids, credits, signup_credits=settings.signup_credits
            ),
            auth=auth,
            recovery=recovery,
            tokens=tokens,
            credits=credits,
            api_keys=ApiKeys(uow, snapshots, auditor, clock, ids),
        ),
        audit_log=AuditLog(uow),
        features=features,
        jobs=JobsServices(service=jobs, leases=job_leases, runner=job_runner, executor=executor),
        exports=AccountExports(uow, jobs, auditor),
        notifications=notifications,
        event_admin=EventAdmin(uow, auditor),
        shop=shop,
        llm=llm,
        llm_usage=UsageReports(uow, clock),
        documents=documents,
        events=EventsServices(
            consumers=consumers,
            delivery=delivery,
            publisher=publisher,
            relay=relay,
            broker_consumers=broker_consumers,
            broker_ping=broker_ping,
        ),
    )


def _shop(
    settings: Settings,
    uow: UnitOfWorkFactory,
    cache: Cache,
    consumers: Consumers,
    kinds: JobKinds,
    jobs: JobService,
    credits: CreditLedger,
    notifications: NotificationService,
    auditor: Auditor,
    ids: IdSource,
) -> ShopServices:
    """The shop's services, and the consumers and jobs of its saga."""
    clock = uow.clock
    products: CacheRegion[ProductView] = cache.region(
        "products", ProductView, settings.cache_product_ttl_seconds, immutable=True
    )
    catalog = CatalogService(uow, products, auditor, clock, ids)
    streams = Streams[Order](ORDERS, snapshot_every=settings.order_snapshot_every)
    orders = OrderService(
        uow,
        catalog,
        streams,
        auditor,
        clock,
        ids,
        idempotency_hours=settings.idempotency_key_hours,
        settle_minutes=settings.order_settle_minutes,
    )
    projection = OrderProjection(uow, streams)
    gateway: PaymentGateway
    if settings.payment_gateway_url is None:
        gateway = SandboxGateway(uow, clock)
    else:
        breaker = CircuitBreaker(
            "payment-gateway",
            failure_threshold=5,
            recovery_timeout=30.0,
            excluded=(PaymentDeclined, GatewayRefused),
            clock=clock.monotonic,
        )
        gateway = HttpPaymentGateway(
            settings.payment_gateway_url,
            timeout=settings.payment_gateway_timeout_seconds,
            breaker=breaker,
        )
    payments = PaymentService(
        uow,
        gateway,
        jobs,
        clock,
        retry_window_seconds=settings.payment_retry_window_seconds,
        retry_base_seconds=settings.payment_retry_base_seconds,
    )
    inventory = InventoryService(catalog, clock)
    payment_handlers.register(consumers, payments)
    payment_jobs.register(kinds, payments)
    inventory_handlers.register(consumers, inventory)
    order_handlers.register(consumers, orders, projection, credits, notifications)
    return ShopServices(
        catalog=catalog,
        orders=orders,
        projection=projection,
        payments=payments,
        inventory=inventory,
        gateway=gateway,
    )


def _documents(
    settings: Settings,
    uow: UnitOfWorkFactory,
    kinds: JobKinds,
    jobs: JobService,
    embedder: Embedder,
    ids: IdSource,
) -> DocumentsServices:
    """The document pipeline: its indexing job, and the service its routes use."""
    indexer = DocumentIndexer(
        uow,
        embedder,
        uow.clock,
        chunk_tokens=settings.document_chunk_tokens,
        overlap_tokens=settings.document_chunk_overlap_tokens,
        batch=settings.document_embed_batch,
    )
    document_jobs.register(kinds, indexer)
    vectors = ExactVectors(uow, max_bytes=settings.document_vector_cache_mb * 2**20)
    service = Documents(
        uow,
        jobs,
        embedder,
        vectors,
        uow.clock,
        ids,
        max_bytes=settings.document_max_bytes,
        pgvector=settings.document_vector_search == "auto",
    )
    return DocumentsServices(service=service, indexer=indexer)


def _llm(
    settings: Settings,
    uow: UnitOfWorkFactory,
    features: FeatureFlags,
    credits: CreditLedger,
    ids: IdSource,
    redis_connection: redis.Redis | None,
    retriever: Retriever,
) -> LlmGateway:
    """The providers, one registration line each, and the gateway in front of them."""
    tokens = TokenCounter()
    registry = ProviderRegistry()
    timeout = settings.llm_timeout_seconds
    registry.register(DemoProvider(tokens))
    registry.register(
        OpenAIChat(
            "openai",
            api_key=_secret(settings.openai_api_key),
            base_url=settings.openai_base_url,
            models=OPENAI_MODELS,
            tokens=tokens,
            timeout_seconds=timeout,
        )
    )
    registry.register(
        openai_compatible(
            base_url=settings.openai_compatible_base_url,
            api_key=_secret(settings.openai_compatible_api_key),
            models=settings.openai_compatible_models,
            tokens=tokens,
            timeout_seconds=timeout,
        )
    )
    registry.register(
        AnthropicMessages(
            api_key=_secret(settings.anthropic_api_key),
            base_url=settings.anthropic_base_url,
            tokens=tokens,
            timeout_seconds=timeout,
        )
    )
    registry.register(
        GeminiContent(
            api_key=_secret(settings.gemini_api_key),
            base_url=settings.gemini_base_url,
            tokens=tokens,
            timeout_seconds=timeout,
        )
    )
    overrides = {
        name: Price(price.prompt, price.completion) for name, price in settings.llm_prices.items()
    }
    prices = PriceBook(overrides, fallback=DEAREST)
    usage = UsageLedger(uow, credits, uow.clock, ids)
    store: LimitStore = (
        MemoryLimitStore(clock=uow.clock.monotonic)
        if redis_connection is None
        else RedisLimitStore(redis_connection, settings.cache_namespace)
    )
    limits = Limits(
        requests_per_minute=settings.llm_requests_per_minute,
        tokens_per_minute=settings.llm_tokens_per_minute,
        daily_tokens={
            Tier.FREE.value: settings.llm_daily_tokens_free,
            Tier.PREMIUM.value: settings.llm_daily_tokens_premium,
        },
    )
    return LlmGateway(
        registry,
        features,
        usage,
        prices,
        CallLimits(store, limits, uow.clock.now),
        ProviderGuards(uow.clock.monotonic),
        default=settings.default_llm_provider,
        fallbacks=tuple(settings.llm_fallbacks),
        retriever=retriever,
    )


def _cache_and_limiter(
    settings: Settings, clock: Clock
) -> tuple[Cache, FailOpenLimiter, redis.Redis | None]:
    """In-process parts by default; Redis-backed ones, sharing one breaker, when configured.

    One breaker per Redis server: when it stops answering, the cache and the limiter
    both stop waiting for it at once, and both notice when it is back.
    """
    durations = clock.monotonic
    local = MemoryCache(settings.cache_local_max_entries, clock=durations)
    if settings.redis_url is None:
        limiter: RateLimiter = MemoryRateLimiter(clock=durations)
        cache = Cache(local=local, local_ttl=settings.cache_local_ttl_seconds, clock=durations)
        return cache, FailOpenLimiter(limiter, clock=durations), None
    client = redis_client(settings.redis_url, settings.redis_timeout_seconds)
    breaker = CircuitBreaker(
        "redis",
        failure_threshold=3,
        recovery_timeout=settings.redis_recovery_seconds,
        clock=durations,
    )
    cache = Cache(
        local=local,
        local_ttl=settings.cache_local_ttl_seconds,
        shared=RedisCache(client),
        breaker=breaker,
        namespace=settings.cache_namespace,
        replay_interval=settings.redis_recovery_seconds,
        clock=durations,
    )
    shared_limiter = LeasedRateLimiter(
        RedisRateLimiter(client, settings.cache_namespace),
        breaker=breaker,
        lease_seconds=settings.rate_limit_lease_seconds,
        clock=durations,
    )
    return cache, FailOpenLimiter(shared_limiter, clock=durations), client


def dead_letters(settings: Settings, consumer: str) -> DeadLetters:
    """The broker's dead-letter queue of one consumer (`promptstack dead-letters`)."""
    return DeadLetters(settings, consumer)


def run_worker(settings: Settings, *, concurrency: int, loglevel: str) -> None:
    """Run a Celery worker whose processes build their services with `bootstrap`."""
    run_celery_worker(settings, bootstrap, concurrency=concurrency, loglevel=loglevel)


def _secret(value: SecretStr | None) -> str | None:
    return None if value is None else value.get_secret_value()
