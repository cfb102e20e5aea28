"""Prometheus metrics: every series the service exports, defined in one place.

Labels are low-cardinality by construction: routes by their template, statuses by
class, caches and breakers by name. With several worker processes,
`PROMETHEUS_MULTIPROC_DIR` names a folder they share (the `serve` command sets one up)
and `/metrics` aggregates them.
"""

from __future__ import annotations

from pathlib import Path

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)

REQUESTS = Counter(
    "promptstack_http_requests_total",
    "HTTP requests answered.",
    ["method", "route", "status_class"],
)
REQUEST_DURATION = Histogram(
    "promptstack_http_request_duration_seconds",
    "Time to answer an HTTP request.",
    ["method", "route"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
IN_FLIGHT = Gauge(
    "promptstack_http_requests_in_flight",
    "HTTP requests being answered now.",
    multiprocess_mode="livesum",
)
DB_POOL_CHECKED_OUT = Gauge(
    "promptstack_db_pool_connections_in_use",
    "Database connections checked out of the pool.",
    ["pool"],
    multiprocess_mode="livesum",
)
DB_POOL_SIZE = Gauge(
    "promptstack_db_pool_connections_open",
    "Database connections the pool holds open.",
    ["pool"],
    multiprocess_mode="livesum",
)
CACHE_REQUESTS = Counter(
    "promptstack_cache_requests_total",
    "Cache look-ups by cache name and result.",
    ["cache", "result"],
)
CACHE_ERRORS = Counter(
    "promptstack_cache_errors_total",
    "Cache operations that failed (the service answered without the cache).",
    ["backend"],
)
RATE_LIMITED = Counter(
    "promptstack_rate_limit_rejections_total",
    "Requests refused by a rate limit.",
    ["scope"],
)
RATE_LIMIT_ERRORS = Counter(
    "promptstack_rate_limit_errors_total",
    "Rate-limit checks that failed and let the request through.",
)
CIRCUIT_STATE = Gauge(
    "promptstack_circuit_breaker_state",
    "Circuit breaker state: 0 closed, 1 half-open, 2 open.",
    ["breaker"],
    multiprocess_mode="max",
)
CIRCUIT_TRANSITIONS = Counter(
    "promptstack_circuit_breaker_transitions_total",
    "Circuit breaker state changes.",
    ["breaker", "state"],
)

OUTBOX_PENDING = Gauge(
    "promptstack_outbox_pending_events",
    "Events recorded and not yet published.",
    multiprocess_mode="max",
)
OUTBOX_OLDEST_AGE = Gauge(
    "promptstack_outbox_oldest_pending_age_seconds",
    "Age of the oldest event not yet published (0 when none waits).",
    multiprocess_mode="max",
)
OUTBOX_PARKED = Gauge(
    "promptstack_outbox_parked_events",
    "Events that failed too often and wait for an administrator to replay them.",
    multiprocess_mode="max",
)
EVENTS_PUBLISHED = Counter(
    "promptstack_events_published_total",
    "Events the relay published (or dispatched in-process), by type.",
    ["type"],
)
EVENT_PUBLISH_FAILURES = Counter(
    "promptstack_event_publish_failures_total",
    "Failed attempts to publish an event, by outcome: retry later or parked.",
    ["outcome"],
)
EVENTS_HANDLED = Counter(
    "promptstack_events_handled_total",
    "Event deliveries to consumers, by consumer and result.",
    ["consumer", "result"],
)
EVENTS_DEAD_LETTERED = Counter(
    "promptstack_events_dead_lettered_total",
    "Deliveries given up after the delivery limit and moved to a dead-letter queue.",
    ["consumer"],
)
JOBS = Counter(
    "promptstack_jobs_total",
    "Background jobs that reached a state, by kind and state.",
    ["kind", "state"],
)

JOBS_UNFINISHED = Gauge(
    "promptstack_jobs_unfinished",
    "Jobs waiting (pending) or running (progress), read from the jobs table.",
    ["state"],
    multiprocess_mode="max",
)


ORDERS_STUCK = Gauge(
    "promptstack_orders_stuck",
    "Orders the saga has not settled within ORDER_SETTLE_MINUTES, read from the read model.",
    multiprocess_mode="max",
)


def render(multiprocess_dir: Path | None) -> tuple[bytes, str]:
    """The exposition text, aggregated over processes in multiprocess mode."""
    if multiprocess_dir is not None:
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(), CONTENT_TYPE_LATEST
