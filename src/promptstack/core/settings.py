"""Configuration from the environment and `.env`, validated once at start.

Nothing else in the code base reads the environment: every knob enters here.
"""

from __future__ import annotations

import ipaddress
import json
import re
import uuid
from functools import cached_property
from pathlib import Path
from typing import Annotated, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    StringConstraints,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

Environment = Literal["development", "test", "staging", "production"]
EmailBackendName = Literal["maildir", "smtp", "console"]

DEFAULT_SECRET_KEY = "dev-insecure-secret-key-change-me-please-0123456789"  # noqa: S105
MIN_SECRET_KEY_LENGTH = 32

# The values of models.user.Role and Tier, spelled out because core may not import the
# models; a unit test keeps them equal.
RoleName = Literal["user", "admin", "super_admin"]
TierName = Literal["free", "premium"]
_FLAG_NAME = re.compile(r"[a-z][a-z0-9]*(?:_[a-z0-9]+)*")
FLAG_NAME_MAX_LENGTH = 64


def _flag_name(value: str) -> str:
    if len(value) > FLAG_NAME_MAX_LENGTH or not _FLAG_NAME.fullmatch(value):
        raise ValueError(
            f"flag names are lowercase snake_case of at most {FLAG_NAME_MAX_LENGTH} "
            "characters, like new_dashboard"
        )
    return value


FlagName = Annotated[str, AfterValidator(_flag_name)]


class FlagRule(BaseModel):
    """Who a feature flag is on for; features/service.py evaluates it per caller.

    `enabled` decides alone when given: false is off for everyone (a kill switch), true on
    for everyone. Otherwise each other field names an audience and the flag is on for a
    caller in ANY of them, so a rule that names none is off. `percentage` is a stable
    rollout to that share of signed-in users; only 100 includes anonymous callers.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool | None = None
    environments: tuple[Environment, ...] = ()
    roles: tuple[RoleName, ...] = ()
    tiers: tuple[TierName, ...] = ()
    beta_testers: bool = False
    authenticated: bool = False
    percentage: float = Field(default=0, ge=0, le=100)
    users: tuple[uuid.UUID, ...] = ()


_PRICED_MODEL = re.compile(r"[a-z][a-z0-9_]*/[\w.:/@-]{1,128}")


def _priced_model(value: str) -> str:
    if not _PRICED_MODEL.fullmatch(value):
        raise ValueError(f"{value[:80]!r} is not provider/model (such as openai/gpt-4o)")
    return value


PricedModel = Annotated[str, AfterValidator(_priced_model)]
# A model's name as a provider spells it (gpt-4o, llama3.1:8b, Qwen/Qwen2.5-7B-Instruct).
ModelName = Annotated[str, StringConstraints(pattern=r"^[\w.:/@-]{1,128}$")]


# The providers bootstrap() registers (ai/llm/providers/); a setting naming another is
# refused at start.
LlmProviderName = Literal["demo", "openai", "anthropic", "gemini", "openai_compatible"]


class LlmPrice(BaseModel):
    """A model's price in micro-credits per token (ai/llm/prices.py)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    prompt: int = Field(ge=0, le=10**9)
    completion: int = Field(ge=0, le=10**9)


DATABASE_URL_FORMS = (
    "sqlite+aiosqlite:///path/to/file.db or postgresql+asyncpg://user:password@host:5432/name"
)


def checked_database_url(value: str) -> str:
    """A database URL with the async driver this service runs on.

    `sqlite://` and `postgresql://` (or `postgres://`, as hosting platforms write it) get
    their async driver; another driver, another database or a typo is refused here, when
    settings load, rather than deep inside the first connection.
    """
    try:
        url = make_url(value.strip())
    except ArgumentError:
        raise ValueError(f"is not a database URL; expected {DATABASE_URL_FORMS}") from None
    backend, _, driver = url.drivername.partition("+")
    wanted = {"sqlite": "aiosqlite", "postgresql": "asyncpg", "postgres": "asyncpg"}.get(backend)
    if wanted is None:
        raise ValueError(f"names the unknown database {backend!r}; expected {DATABASE_URL_FORMS}")
    if driver not in ("", wanted):
        raise ValueError(f"uses the driver {driver!r}; this service needs {backend}+{wanted}")
    if backend == "sqlite" and not url.database:
        raise ValueError("names no SQLite file; expected sqlite+aiosqlite:///path/to/file.db")
    name = "sqlite" if backend == "sqlite" else "postgresql"
    # Only the scheme changes: the rest stays as written (rendering would re-quote it).
    return f"{name}+{wanted}" + value.strip()[len(url.drivername) :]


class Settings(BaseSettings):
    """Every setting the service knows, named as in the environment (case-insensitive)."""

    model_config = SettingsConfigDict(
        env_file=".env", env_file_encoding="utf-8", extra="ignore", frozen=True
    )

    # --- the process: name, environment, logs, shutdown --------------------------------------
    app_name: str = "Prompt Stack"
    environment: Environment = "development"
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    # JSON lines for log collectors, or coloured lines for a person; unset, JSON
    # everywhere but in development.
    log_json: bool | None = None
    shutdown_grace_seconds: float = Field(default=10.0, ge=0)

    # --- core: the database ------------------------------------------------------------------
    database_url: str = "sqlite+aiosqlite:///./promptstack.db"
    database_read_url: str | None = None
    database_pool_size: int = Field(default=10, ge=1, le=200)
    database_max_overflow: int = Field(default=20, ge=0, le=500)
    database_pool_timeout: float = Field(default=30.0, gt=0)
    database_pool_recycle: int = Field(default=1800, ge=-1)
    database_pool_pre_ping: bool = True
    database_pool_ping_idle_seconds: float = Field(default=5.0, ge=0, le=3600)
    database_echo: bool = False

    # --- core: Redis, the cache and rate limits ----------------------------------------------
    redis_url: str | None = None
    redis_timeout_seconds: float = Field(default=0.25, gt=0, le=10)
    redis_recovery_seconds: float = Field(default=5.0, gt=0, le=300)
    cache_namespace: str = Field(default="promptstack", pattern=r"^[A-Za-z0-9_.-]{1,64}$")
    cache_local_ttl_seconds: float = Field(default=5.0, gt=0, le=3600)
    cache_local_max_entries: int = Field(default=10_000, ge=1)
    cache_user_ttl_seconds: float = Field(default=60.0, gt=0, le=86_400)
    cache_product_ttl_seconds: float = Field(default=300.0, gt=0, le=86_400)
    rate_limit_enabled: bool = True
    rate_limit_per_minute: int = Field(default=600, ge=1)
    rate_limit_burst: int = Field(default=100, ge=1)
    auth_rate_limit_per_minute: int = Field(default=20, ge=1)
    # Tokens a process takes from a shared bucket at once, and how long it may keep them.
    rate_limit_lease: int = Field(default=10, ge=1, le=1000)
    rate_limit_lease_seconds: float = Field(default=1.0, gt=0, le=60)

    # --- http: the HTTP surface, metrics and tracing -----------------------------------------
    trusted_proxies: Annotated[list[str], NoDecode] = Field(default_factory=list)
    cors_origins: Annotated[list[str], NoDecode] = Field(default_factory=list)
    allowed_hosts: Annotated[list[str], NoDecode] = Field(default_factory=lambda: ["*"])
    max_request_body_bytes: int = Field(default=1_048_576, ge=1024)
    # The request line and headers, bounded before the app sees them (the server's
    # protocol enforces these): in all, per line, and the time a client may take.
    max_request_head_bytes: int = Field(default=65_536, ge=1024, le=16 * 1_048_576)
    max_request_header_line_bytes: int = Field(default=16_384, ge=256, le=1_048_576)
    request_head_timeout_seconds: float = Field(default=10.0, gt=0, le=600)
    # /metrics answers only a bearer of this token or a client in these networks, when
    # either is set; the interactive docs (/docs, /redoc, /openapi.json) can be turned off.
    metrics_token: SecretStr | None = None
    metrics_allowed_networks: Annotated[list[str], NoDecode] = Field(default_factory=list)
    docs_enabled: bool = True
    prometheus_multiproc_dir: Path | None = None
    otel_exporter_otlp_endpoint: str | None = None
    otel_service_name: str = "promptstack"

    # --- events: the outbox, the relay and RabbitMQ ------------------------------------------
    # Without AMQP_URL events are dispatched inside the process that relays the outbox.
    amqp_url: str | None = None
    amqp_namespace: str = Field(default="promptstack", pattern=r"^[A-Za-z0-9_.-]{1,64}$")
    amqp_prefetch: int = Field(default=32, ge=1, le=10_000)
    amqp_timeout_seconds: float = Field(default=5.0, gt=0, le=120)
    embedded_relay: bool | None = None
    outbox_batch_size: int = Field(default=100, ge=1, le=10_000)
    outbox_poll_seconds: float = Field(default=1.0, gt=0, le=60)
    outbox_retention_hours: float = Field(default=168.0, gt=0)
    event_max_attempts: int = Field(default=5, ge=1, le=100)
    event_retry_base_seconds: float = Field(default=1.0, gt=0, le=3600)
    event_retry_max_seconds: float = Field(default=300.0, gt=0, le=86_400)

    # --- jobs: executors, retries, leases, Celery --------------------------------------------
    # Without CELERY_BROKER_URL jobs run in the process that serves.
    celery_broker_url: str | None = None
    job_concurrency: int = Field(default=4, ge=1, le=256)
    job_max_retries: int = Field(default=3, ge=0, le=20)
    job_retry_base_seconds: float = Field(default=1.0, gt=0, le=3600)
    # A running job renews its lease at a third of this; a job whose runner died is taken
    # over once the lease has lapsed.
    job_lease_seconds: float = Field(default=60.0, gt=0, le=86_400)
    celery_queue: str = Field(default="promptstack.jobs", pattern=r"^[A-Za-z0-9_.-]{1,128}$")
    # Modules imported at start that define more job kinds (comma-separated).
    job_modules: Annotated[list[str], NoDecode] = Field(default_factory=list)

    # --- accounts: tokens, passwords, login throttling, email --------------------------------
    secret_key: SecretStr = SecretStr(DEFAULT_SECRET_KEY)
    jwt_algorithm: Literal["HS256", "HS384", "HS512"] = "HS256"
    access_token_expire_minutes: int = Field(default=15, ge=1, le=24 * 60)
    refresh_token_expire_days: int = Field(default=14, ge=1, le=365)
    password_reset_expire_minutes: int = Field(default=30, ge=1, le=24 * 60)
    email_verification_expire_hours: int = Field(default=48, ge=1, le=24 * 30)
    password_hash_time_cost: int = Field(default=3, ge=1, le=20)
    password_hash_memory_cost: int = Field(default=65536, ge=8, le=4 * 1024 * 1024)
    password_hash_parallelism: int = Field(default=4, ge=1, le=64)
    login_max_failures_per_account: int = Field(default=5, ge=1)
    login_max_failures_per_address: int = Field(default=50, ge=1)
    login_lockout_minutes: int = Field(default=15, ge=1)
    email_backend: EmailBackendName = "maildir"
    email_from: str = "Prompt Stack <no-reply@promptstack.local>"
    maildir_path: Path = Path("./var/mail")
    smtp_host: str = "localhost"
    smtp_port: int = Field(default=587, ge=1, le=65535)
    smtp_username: str | None = None
    smtp_password: SecretStr | None = None
    smtp_starttls: bool = True
    smtp_use_tls: bool = False
    smtp_timeout: float = Field(default=10.0, gt=0)
    public_base_url: str = "http://127.0.0.1:8000"
    # Where the links in account emails point: this app's own pages by default, or a
    # client that serves /verify-email?token= and /reset-password?token= itself.
    frontend_url: str | None = None

    # --- features: flags ---------------------------------------------------------------------
    # Flag name -> rule, added to the built-in flags (features/service.py) or replacing
    # one of the same name.
    feature_flags: Annotated[dict[FlagName, FlagRule], NoDecode] = Field(default_factory=dict)

    # --- shop: orders ------------------------------------------------------------------------
    # An order's state is saved every this many events (0: never); loading reads the
    # latest snapshot and the events after it.
    order_snapshot_every: int = Field(default=50, ge=0, le=100_000)
    # How long an Idempotency-Key of placing an order stays bound to its order.
    idempotency_key_hours: float = Field(default=24.0, gt=0, le=24 * 30)
    # An order still pending or paid after this long is listed as stuck, and counted
    # by the promptstack_orders_stuck gauge.
    order_settle_minutes: float = Field(default=15.0, gt=0, le=7 * 24 * 60)
    # The payment processor's HTTP API; unset, the sandbox in this database pays (the
    # test tokens: tok_visa, tok_chargeDeclined, tok_gatewayError).
    payment_gateway_url: str | None = None
    payment_gateway_timeout_seconds: float = Field(default=10.0, gt=0, le=120)
    # While the processor is unreachable an order waits, retried with backoff from
    # PAYMENT_RETRY_BASE_SECONDS up to a minute; after the window it is cancelled.
    payment_retry_window_seconds: float = Field(default=600.0, ge=0, le=7 * 86_400)
    payment_retry_base_seconds: float = Field(default=2.0, gt=0, le=600)

    # --- ai: the LLM gateway -----------------------------------------------------------------
    # Tokens a caller may use a UTC day, by tier; calls and tokens per minute, per caller.
    llm_daily_tokens_free: int = Field(default=200_000, ge=1, le=10**12)
    llm_daily_tokens_premium: int = Field(default=5_000_000, ge=1, le=10**12)
    llm_requests_per_minute: int = Field(default=60, ge=1, le=10**9)
    llm_tokens_per_minute: int = Field(default=100_000, ge=1, le=10**12)
    # Credits every new account starts with, through the credit ledger (0: none).
    signup_credits: int = Field(default=100, ge=0, le=10**9)
    # Serves callers who name no provider and have set no preferred_provider.
    default_llm_provider: LlmProviderName = "demo"
    # Comma-separated providers to try, in order, when the one chosen cannot answer for
    # now (down, slow, busy); never after the first token of a stream.
    llm_fallbacks: Annotated[list[LlmProviderName], NoDecode] = Field(default_factory=list)
    # "provider/model" -> {"prompt": micro-credits per token, "completion": ...}, over
    # the table in ai/llm/prices.py.
    llm_prices: Annotated[dict[PricedModel, LlmPrice], NoDecode] = Field(default_factory=dict)
    # A provider's call (or, streaming, the wait for its next piece) gives up after this.
    llm_timeout_seconds: float = Field(default=60.0, gt=0, le=600)
    # The providers: each without its key (or, for openai_compatible, its base URL and
    # models) is listed as unavailable. Base URLs point a provider at a proxy or a
    # regional endpoint; unset, its SDK's own default.
    openai_api_key: SecretStr | None = None
    openai_base_url: str | None = None
    anthropic_api_key: SecretStr | None = None
    anthropic_base_url: str | None = None
    gemini_api_key: SecretStr | None = None
    gemini_base_url: str | None = None
    # Any server speaking OpenAI's chat completions (vLLM, Ollama, llama.cpp), with the
    # comma-separated models it serves, the first being its default.
    openai_compatible_base_url: str | None = None
    openai_compatible_api_key: SecretStr | None = None
    openai_compatible_models: Annotated[list[ModelName], NoDecode] = Field(default_factory=list)

    # --- ai: documents ----------------------------------------------------------------------
    # An upload may be this large (above MAX_REQUEST_BODY_BYTES: this route alone).
    document_max_bytes: int = Field(default=10 * 1024 * 1024, ge=1024, le=1024**3)
    # Chunks hold at most this many of the embedding model's tokens (MiniLM reads 256,
    # two of them its own markers), each starting with up to the overlap of the last one.
    document_chunk_tokens: int = Field(default=200, ge=16, le=254)
    document_chunk_overlap_tokens: int = Field(default=40, ge=0, le=128)
    # Chunks embedded per call (and per progress report).
    document_embed_batch: int = Field(default=32, ge=1, le=1024)
    # Exact search keeps users' vectors in memory, up to this much per process.
    document_vector_cache_mb: int = Field(default=256, ge=0, le=1024 * 1024)
    # auto: through pgvector's HNSW index where PostgreSQL has it (migration 0016), else
    # exact; exact: always every vector, scored in numpy.
    document_vector_search: Literal["auto", "exact"] = "auto"

    @field_validator(
        "trusted_proxies",
        "cors_origins",
        "allowed_hosts",
        "job_modules",
        "metrics_allowed_networks",
        "llm_fallbacks",
        "openai_compatible_models",
        mode="before",
    )
    @classmethod
    def _split_list(cls, value: object) -> object:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("database_url", "database_read_url")
    @classmethod
    def _database_url(cls, value: str | None) -> str | None:
        return None if value is None else checked_database_url(value)

    @field_validator("celery_broker_url", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        """`CELERY_BROKER_URL=` (as in a copied .env) means no broker, not a broker at ''."""
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("trusted_proxies", "metrics_allowed_networks")
    @classmethod
    def _valid_networks(cls, value: list[str]) -> list[str]:
        for network in value:
            ipaddress.ip_network(network, strict=False)
        return value

    @field_validator("feature_flags", "llm_prices", mode="before")
    @classmethod
    def _parse_json(cls, value: object) -> object:
        """Parsed here rather than by pydantic-settings, whose error for bad JSON does not
        say which setting it was reading."""
        if isinstance(value, str):
            try:
                return json.loads(value) if value.strip() else {}
            except json.JSONDecodeError as exc:
                raise ValueError(f"not valid JSON: {exc}") from exc
        return value

    @model_validator(mode="after")
    def _overlap_inside_a_chunk(self) -> Settings:
        if self.document_chunk_overlap_tokens >= self.document_chunk_tokens:
            raise ValueError(
                "DOCUMENT_CHUNK_OVERLAP_TOKENS must be less than DOCUMENT_CHUNK_TOKENS"
            )
        return self

    @model_validator(mode="after")
    def _deployments_need_a_real_secret(self) -> Settings:
        """The default key is public: anyone could sign tokens with it. Only a developer's
        machine and the tests may run on it."""
        if self.environment in ("development", "test"):
            return self
        secret = self.secret_key.get_secret_value()
        if secret == DEFAULT_SECRET_KEY or len(secret) < MIN_SECRET_KEY_LENGTH:
            raise ValueError(
                "SECRET_KEY must be set to a random value of at least "
                f"{MIN_SECRET_KEY_LENGTH} characters in {self.environment} "
                '(for example: python -c "import secrets; print(secrets.token_urlsafe(48))")'
            )
        return self

    @property
    def uses_default_secret(self) -> bool:
        return self.secret_key.get_secret_value() == DEFAULT_SECRET_KEY

    @property
    def relays_in_process(self) -> bool:
        """Whether the serving process relays the outbox itself: by default when there
        is no broker, so one command runs everything."""
        return self.amqp_url is None if self.embedded_relay is None else self.embedded_relay

    @property
    def logs_as_json(self) -> bool:
        return self.environment != "development" if self.log_json is None else self.log_json

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")

    @cached_property
    def metrics_networks(self) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
        return tuple(ipaddress.ip_network(n, strict=False) for n in self.metrics_allowed_networks)

    @cached_property
    def trusted_proxy_networks(self) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
        return tuple(ipaddress.ip_network(n, strict=False) for n in self.trusted_proxies)
