"""The outbox relay: publishes recorded events, in order per aggregate, and marks them.

On PostgreSQL any number of relays run side by side: each claims its batch with
`FOR UPDATE SKIP LOCKED` and holds the rows until it has published and marked them, so
a row goes out twice only if a relay dies between publishing and committing (and the
consumers' inbox absorbs that). SQLite allows one writer, so there one relay at a time
reads a batch, publishes it, and marks it in a short transaction of its own; which
process relays is decided by a lock file beside the database (`serve --workers N` runs
N processes, and another takes over when the one relaying stops).

A relay sleeps until a commit in its process wakes it, a PostgreSQL NOTIFY from another
process arrives, or the poll interval passes, whichever is first.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
from collections.abc import Awaitable, Callable
from datetime import timedelta

from sqlalchemy.engine import make_url

from promptstack.core.clock import Clock
from promptstack.core.logging import Throttle, get_logger
from promptstack.core.metrics import (
    EVENT_PUBLISH_FAILURES,
    EVENTS_PUBLISHED,
    OUTBOX_OLDEST_AGE,
    OUTBOX_PARKED,
    OUTBOX_PENDING,
)
from promptstack.core.resilience import Backoff
from promptstack.core.settings import Settings
from promptstack.core.unit_of_work import UnitOfWorkFactory
from promptstack.events.bus import Publisher
from promptstack.events.inbox import InboxRepository
from promptstack.events.models import Backlog, OutboxMessage
from promptstack.events.outbox import OUTBOX_CHANNEL, OutboxRepository

log = get_logger(__name__)

METRICS_INTERVAL_SECONDS = 1.0
PURGE_INTERVAL_SECONDS = 3600.0
MAX_BACKOFF_SECONDS = 30.0


class Relay:
    def __init__(
        self, settings: Settings, uow: UnitOfWorkFactory, publisher: Publisher, clock: Clock
    ) -> None:
        self.settings = settings
        self.uow = uow
        self.publisher = publisher
        self.clock = clock
        self.locking = not settings.is_sqlite
        self._wake = asyncio.Event()
        self._stopping = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._listener: asyncio.Task[None] | None = None
        self._metrics_at = 0.0
        self._purged_at = 0.0
        self._purges: list[Callable[[], Awaitable[None]]] = []
        self._passes = 0
        self._standing_by = False
        self._warn = Throttle(30.0)
        self._lease = _sqlite_lease(settings.database_url) if settings.is_sqlite else None

    @property
    def relaying(self) -> bool:
        """Whether this relay runs and, on SQLite, holds the lease to relay."""
        return self._task is not None and (self._lease is None or self._lease.held)

    @property
    def standing_by(self) -> bool:
        """Whether this relay runs but found the lease held by another process (SQLite):
        it looks again every poll interval and relays once that process stops."""
        return self._task is not None and self._standing_by

    @property
    def passes(self) -> int:
        """Passes this relay has made so far, each claiming what is due and publishing it:
        one when woken, otherwise when the poll interval has passed."""
        return self._passes

    def wake(self) -> None:
        self._wake.set()

    async def pump(self) -> int:
        """Publish one batch; the number of events claimed (0 when nothing was due).

        Raises `BrokerUnavailable` after recording what did get through."""
        unavailable: str | None = None
        if self.locking:
            async with self.uow() as uow:
                outbox = OutboxRepository.of(uow)
                rows = await outbox.claim(
                    self.settings.outbox_batch_size, self.clock.now(), lock=True
                )
                if rows:
                    unavailable = await self._publish(outbox, rows)
        else:
            async with self.uow(read_only=True) as uow:
                rows = await OutboxRepository.of(uow).claim(
                    self.settings.outbox_batch_size, self.clock.now(), lock=False
                )
            if rows:
                async with self.uow() as uow:
                    unavailable = await self._publish(OutboxRepository.of(uow), rows)
        if unavailable is not None:
            raise BrokerUnavailable(unavailable)
        return len(rows)

    async def _publish(self, outbox: OutboxRepository, messages: list[OutboxMessage]) -> str | None:
        """Hand `messages` to the publisher and record the outcome; the broker's error
        when it could not be reached."""
        report = await self.publisher.publish([message.envelope() for message in messages])
        now = self.clock.now()
        published = set(report.published)
        await outbox.mark_published([m.position for m in messages if m.id in published], now)
        for message in messages:
            if message.id in published:
                EVENTS_PUBLISHED.labels(message.type).inc()
            error = report.failed.get(message.id)
            if error is None:
                continue
            parked = await outbox.record_failure(
                message.position,
                error,
                now,
                max_attempts=self.settings.event_max_attempts,
                base_delay=self.settings.event_retry_base_seconds,
                max_delay=self.settings.event_retry_max_seconds,
            )
            EVENT_PUBLISH_FAILURES.labels("parked" if parked else "retry").inc()
            log.warning(
                "event_parked" if parked else "event_publish_failed",
                event_id=str(message.id),
                event_type=message.type,
                attempt_error=error,
            )
        return report.unavailable

    async def drain(self) -> None:
        """Publish until nothing is due (tests and shutdown use it)."""
        while await self.pump():
            pass

    def start(self) -> None:
        if self._task is None:
            self._stopping.clear()
            self._task = asyncio.get_running_loop().create_task(self._run(), name="outbox_relay")
            if self.locking:
                self._listener = asyncio.get_running_loop().create_task(
                    self._listen(), name="outbox_listener"
                )

    async def stop(self, grace: float) -> None:
        """Stop after the batch in hand, then publish what is due within `grace` seconds."""
        if self._task is None:
            return
        self._stopping.set()
        self._wake.set()
        if self._listener is not None:
            self._listener.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._listener
        await self._task
        self._task = self._listener = None
        try:
            if self._lease is None or self._lease.held:
                await asyncio.wait_for(self.drain(), timeout=grace)
        except (TimeoutError, BrokerUnavailable):
            log.warning("outbox_not_flushed_at_shutdown")
        except Exception:
            log.exception("outbox_flush_failed")
        finally:
            # Held through the flush, so no other process relays the same rows meanwhile.
            if self._lease is not None:
                self._lease.release()

    async def _run(self) -> None:
        failures = 0
        while not self._stopping.is_set():
            if self._lease is not None and not self._lease.acquire():
                # Another process relays; look again now and then in case it stops.
                self._standing_by = True
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stopping.wait(), self.settings.outbox_poll_seconds)
                continue
            self._standing_by = False
            self._wake.clear()
            try:
                claimed = await self.pump()
                failures = 0
            except Exception as exc:
                failures += 1
                claimed = 0
                if self._warn.ready():
                    log.warning("outbox_relay_failed", error=repr(exc), failures=failures)
            await self._housekeeping()
            self._passes += 1
            if claimed >= self.settings.outbox_batch_size:
                continue
            delay = self.settings.outbox_poll_seconds
            if failures:
                delay = Backoff(delay, cap=max(delay, MAX_BACKOFF_SECONDS)).delay(failures + 1)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=delay)

    async def _housekeeping(self) -> None:
        now = self.clock.monotonic()
        try:
            if now - self._metrics_at >= METRICS_INTERVAL_SECONDS:
                self._metrics_at = now
                await self.refresh_metrics()
            if now - self._purged_at >= PURGE_INTERVAL_SECONDS:
                self._purged_at = now
                await self.purge()
        except Exception as exc:
            if self._warn.ready():
                log.warning("outbox_housekeeping_failed", error=repr(exc))

    async def backlog(self) -> Backlog:
        async with self.uow(read_only=True) as uow:
            return await OutboxRepository.of(uow).backlog()

    async def refresh_metrics(self) -> Backlog:
        backlog = await self.backlog()
        OUTBOX_PENDING.set(backlog.pending)
        OUTBOX_PARKED.set(backlog.parked)
        age = (self.clock.now() - backlog.oldest).total_seconds() if backlog.oldest else 0.0
        OUTBOX_OLDEST_AGE.set(max(age, 0.0))
        return backlog

    def also_purge(self, purge: Callable[[], Awaitable[None]]) -> None:
        """Run `purge` with the relay's own, about hourly: a domain's table of things that
        expire (idempotency keys) is kept small by the process that already does this."""
        self._purges.append(purge)

    async def purge(self) -> None:
        """Forget published events and inbox entries older than the retention period,
        then whatever the domains asked to forget."""
        cutoff = self.clock.now() - timedelta(hours=self.settings.outbox_retention_hours)
        async with self.uow() as uow:
            await OutboxRepository.of(uow).purge_published(cutoff)
            await InboxRepository.of(uow).purge(cutoff)
        for purge in self._purges:
            await purge()

    async def _listen(self) -> None:
        """Wake on NOTIFY from relays' peers: commits in other processes."""
        import asyncpg  # noqa: PLC0415  (PostgreSQL only)

        dsn = make_url(self.settings.database_url).set(drivername="postgresql")
        listened_before = False
        while not self._stopping.is_set():
            try:
                connection = await asyncpg.connect(dsn.render_as_string(hide_password=False))
            except Exception as exc:
                self._listen_failed(exc)
                await asyncio.sleep(MAX_BACKOFF_SECONDS / 6)
                continue
            closed = asyncio.Event()
            connection.add_termination_listener(lambda *_, done=closed: done.set())
            try:
                await connection.add_listener(OUTBOX_CHANNEL, lambda *_: self._wake.set())
                if listened_before:
                    # A NOTIFY sent while no one listened is lost: look once now.
                    self._wake.set()
                listened_before = True
                await closed.wait()
            except Exception as exc:
                # Killed between connecting and listening: connect again.
                self._listen_failed(exc)
                await asyncio.sleep(MAX_BACKOFF_SECONDS / 6)
            finally:
                with contextlib.suppress(Exception):
                    await connection.close()

    def _listen_failed(self, exc: Exception) -> None:
        if self._warn.ready():
            log.warning("outbox_listen_failed", error=repr(exc))


class _FileLease:
    """An exclusive lock on a file, held by one process at a time and released by the
    system when that process dies."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self) -> bool:
        if self._fd is not None:
            return True
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        self._fd = fd
        return True

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None


def _sqlite_lease(url: str) -> _FileLease | None:
    database = make_url(url).database
    if not database or database == ":memory:":
        return None
    return _FileLease(f"{database}.relay.lock")


class BrokerUnavailable(ConnectionError):
    """The broker could not take the batch; the relay backs off and tries again."""
