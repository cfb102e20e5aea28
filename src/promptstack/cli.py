"""The `promptstack` command: serve, migrate, and administer from a shell."""

from __future__ import annotations

import asyncio
import os
import signal
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.markup import escape

if TYPE_CHECKING:
    from promptstack.core.settings import Settings
    from promptstack.shop.catalog.importing import ImportReport

# Each command imports what it needs when it runs, so that `--help` and a typo answer at
# once instead of loading SQLAlchemy, Celery, uvicorn and the whole service first.

app = typer.Typer(help="Prompt Stack: run and administer the service.", no_args_is_help=True)
console = Console(stderr=True)


def _settings() -> Settings:
    from pydantic import ValidationError

    from promptstack.core.errors import readable
    from promptstack.core.settings import Settings

    try:
        return Settings()
    except ValidationError as exc:
        # Named by variable and without the values given, which may be secrets; escaped,
        # since a value quoted in a message could read as console markup.
        for error in exc.errors(include_url=False, include_input=False):
            variable = str(error["loc"][0]).upper() if error["loc"] else "settings"
            # Inside a structured setting (FEATURE_FLAGS), say where: the flag and field.
            inside = ".".join(str(part) for part in error["loc"][1:])
            where = f" (at {inside})" if inside else ""
            console.print(
                f"[red]Configuration error:[/red] {escape(variable)}: "
                f"{escape(readable(error))}{escape(where)}"
            )
        raise typer.Exit(2) from exc
    except ValueError as exc:
        console.print(f"[red]Configuration error:[/red] {escape(str(exc))}")
        raise typer.Exit(2) from exc


def _fail(reason: str) -> typer.Exit:
    """Say `reason` on one line (the terminal may wrap it; logs keep it whole)."""
    console.print(f"[red]Error:[/red] {escape(reason)}", soft_wrap=True)
    return typer.Exit(1)


@contextmanager
def _plainly(settings: Settings) -> Iterator[None]:
    """A failure to reach the database or the broker as one line with a hint, not a
    traceback; anything else as it is."""
    try:
        yield
    except (typer.Exit, KeyboardInterrupt):
        raise
    except Exception as exc:
        from promptstack.core.diagnostics import explain_broker, explain_database

        reason = explain_database(exc, settings.database_url)
        for setting, url in (
            ("AMQP_URL", settings.amqp_url),
            ("CELERY_BROKER_URL", settings.celery_broker_url),
        ):
            if reason is None and url is not None:
                reason = explain_broker(exc, url, setting)
        if reason is None:
            raise
        raise _fail(reason) from None


def _database_ready(settings: Settings) -> None:
    """Refuse to go on without the database `serve` uses, at the schema this code needs.

    An SQLite path is relative to the folder the command runs in: run from another
    folder, a command would otherwise create an empty file there and fail on a table.
    """
    if settings.is_sqlite:
        path = _sqlite_path(settings)
        if path is not None and not path.exists():
            raise _fail(
                f"there is no database at {path.resolve()}: run `promptstack migrate` "
                "(or `serve`) first, in the folder you serve from, or set DATABASE_URL to the "
                "database `serve` uses."
            )
    with _plainly(settings):
        problem = asyncio.run(_schema_problem(settings))
    if problem is not None:
        raise _fail(problem)


def _sqlite_path(settings: Settings) -> Path | None:
    """The SQLite file DATABASE_URL names, or None for an in-memory database."""
    from sqlalchemy.engine import make_url

    path = make_url(settings.database_url).database or ""
    return None if path in {"", ":memory:"} else Path(path)


def _sqlite_folder_ready(settings: Settings) -> None:
    """A new SQLite file needs its folder: say so before the driver fails to open it."""
    path = _sqlite_path(settings)
    if path is not None and not path.parent.is_dir():
        raise _fail(
            f"cannot create the database {path.resolve()}: the folder "
            f"{path.parent.resolve()} does not exist. Create it, or set DATABASE_URL."
        )


async def _schema_problem(settings: Settings) -> str | None:
    from sqlalchemy.ext.asyncio import create_async_engine

    from promptstack.migrations.runner import schema_problem

    engine = create_async_engine(settings.database_url)
    try:
        return await schema_problem(engine)
    finally:
        await engine.dispose()


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Address to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on")] = 8000,
    workers: Annotated[int, typer.Option(min=1, help="Worker processes")] = 1,
    reload: Annotated[bool, typer.Option(help="Restart on code changes (development)")] = False,
) -> None:
    """Serve the API. The embedded SQLite database is migrated first."""
    import uvicorn

    from promptstack.http.server_protocol import bounded_http_protocol
    from promptstack.migrations.runner import upgrade

    settings = _settings()
    if settings.is_sqlite:
        _sqlite_folder_ready(settings)
        with _plainly(settings), console.status("Migrating the embedded database"):
            upgrade(settings)
    else:
        _database_ready(settings)
    if workers > 1:
        _share_metrics_between_workers(settings.prometheus_multiproc_dir)
    console.print(f"Serving on http://{host}:{port} (API docs at http://{host}:{port}/docs)")
    uvicorn.run(
        "promptstack.main:create_app",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        reload=reload,
        # httptools with the request head bounded in size and time (RequestHeadLimits).
        http=bounded_http_protocol(settings),
        proxy_headers=False,  # client addresses are resolved by TRUSTED_PROXIES instead
        timeout_graceful_shutdown=int(settings.shutdown_grace_seconds),
        log_config=None,
    )


@app.command()
def migrate(
    revision: Annotated[str, typer.Argument(help="Target revision")] = "head",
    create_database: Annotated[
        bool, typer.Option(help="On PostgreSQL, create the database first if it is missing")
    ] = False,
) -> None:
    """Bring the database schema up to date."""
    from promptstack.migrations.runner import upgrade

    settings = _settings()
    if settings.is_sqlite:
        _sqlite_folder_ready(settings)
    with _plainly(settings):
        if create_database and not settings.is_sqlite:
            _create_database(settings)
        with console.status(f"Migrating to {revision}"):
            upgrade(settings, revision)
    done = "is up to date" if revision == "head" else f"is at revision {escape(revision)}"
    console.print(f"[green]Database {done}.[/green]")


def _create_database(settings: Settings) -> None:
    from sqlalchemy.engine import make_url

    from promptstack.core import provisioning

    url = make_url(settings.database_url)
    # CREATE DATABASE runs from the server's maintenance database.
    server = url.set(database="postgres").render_as_string(hide_password=False)
    if asyncio.run(provisioning.ensure_database(server, url.database or "")):
        console.print(f"Created the database {escape(url.database or '')}.")


@app.command()
def relay(
    metrics_port: Annotated[
        int | None,
        typer.Option(min=1, max=65535, help="Serve this process's Prometheus metrics on it"),
    ] = None,
    metrics_host: Annotated[str, typer.Option(help="Address for --metrics-port")] = "127.0.0.1",
) -> None:
    """Relay the outbox and run the event consumers until SIGTERM or Ctrl-C.

    With AMQP_URL set this publishes to RabbitMQ and consumes every consumer's queue;
    without it, events are handled in this process. Any number may run side by side on
    PostgreSQL.
    """
    import prometheus_client

    from promptstack.core.logging import configure_logging

    settings = _settings()
    _database_ready(settings)
    configure_logging(settings.log_level, json=settings.logs_as_json)
    bus = "RabbitMQ" if settings.amqp_url else "the in-process bus"
    console.print(f"Relaying the outbox to {bus}; Ctrl-C stops.")
    if metrics_port is not None:
        # Events published, handled and dead-lettered are counted in this process.
        prometheus_client.start_http_server(metrics_port, addr=metrics_host)
        console.print(f"Metrics on http://{metrics_host}:{metrics_port}/metrics")
    with _plainly(settings):
        asyncio.run(_relay(settings))


async def _relay(settings: Settings) -> None:
    from promptstack.bootstrap import bootstrap

    container = bootstrap(settings)
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stopping.set)
    try:
        # Without Celery, jobs dispatched by this process's consumers run here too.
        await container.jobs.executor.start()
        await container.start_events()
        await stopping.wait()
    finally:
        await container.aclose()


@app.command()
def worker(
    concurrency: Annotated[
        int | None, typer.Option(min=1, help="Jobs run at once (default JOB_CONCURRENCY)")
    ] = None,
    loglevel: Annotated[str, typer.Option(help="DEBUG, INFO, WARNING or ERROR")] = "INFO",
) -> None:
    """Run a Celery worker for background jobs (needs CELERY_BROKER_URL)."""
    if loglevel.upper() not in {"DEBUG", "INFO", "WARNING", "ERROR"}:
        console.print(f"[red]Unknown log level {escape(loglevel)!r}.[/red]")
        raise typer.Exit(2)
    settings = _settings()
    if settings.celery_broker_url is None:
        console.print(
            "[red]Set CELERY_BROKER_URL (RabbitMQ or Redis) to run workers; without it, "
            "jobs run inside `promptstack serve`.[/red]"
        )
        raise typer.Exit(2)
    _database_ready(settings)
    from promptstack.bootstrap import run_worker

    run_worker(
        settings,
        concurrency=concurrency or settings.job_concurrency,
        loglevel=loglevel.upper(),
    )


@app.command("dead-letters")
def dead_letters(
    consumer: Annotated[str, typer.Argument(help="The consumer, e.g. mail.welcome")],
    replay: Annotated[bool, typer.Option(help="Move them back to the consumer's queue")] = False,
    event: Annotated[str | None, typer.Option(help="Only this event id (with --replay)")] = None,
) -> None:
    """List a consumer's dead letters on RabbitMQ, or replay them once the cause is fixed."""
    settings = _settings()
    if settings.amqp_url is None:
        console.print("[red]Dead-letter queues exist on RabbitMQ only: set AMQP_URL.[/red]")
        raise typer.Exit(2)
    with _plainly(settings):
        asyncio.run(_dead_letters(settings, consumer, replay=replay, event=event))


async def _dead_letters(
    settings: Settings, consumer: str, *, replay: bool, event: str | None
) -> None:
    from rich.table import Table

    from promptstack.bootstrap import bootstrap
    from promptstack.bootstrap import dead_letters as dead_letter_queue

    container = bootstrap(settings)
    try:
        known = sorted(c.name for c in container.events.consumers)
        if consumer not in known:
            console.print(
                f"[red]Unknown consumer {escape(consumer)!r}; one of: {', '.join(known)}[/red]"
            )
            raise typer.Exit(2)
        letters = dead_letter_queue(settings, consumer)
        if replay:
            moved = await letters.replay(event)
            console.print(
                f"[green]Moved {moved} dead letter(s) back to {escape(letters.target)}.[/green]"
            )
            return
        found = await letters.list()
    finally:
        await container.aclose()
    if not found:
        console.print(f"No dead letters in {escape(letters.queue)}.")
        return
    table = Table("event id", "type", "attempts", "last error", title=letters.queue)
    for letter in found:
        table.add_row(
            letter.event_id or "?", letter.type or "?", str(letter.attempts), letter.error or ""
        )
    Console().print(table)


class AdminRole(StrEnum):
    """The roles create-admin hands out (accounts' Role; users register through the API)."""

    ADMIN = "admin"
    SUPER_ADMIN = "super_admin"


@app.command("create-admin")
def create_admin(
    email: Annotated[str, typer.Option(help="The administrator's email")],
    password: Annotated[
        str,
        typer.Option(
            prompt=True,
            hide_input=True,
            confirmation_prompt=True,
            show_default=False,
            help="Asked for twice, unseen, when left out (which keeps it out of the history)",
        ),
    ] = "",
    username: Annotated[str | None, typer.Option(help="Defaults to the email's local part")] = None,
    role: Annotated[AdminRole, typer.Option(help="The administrator's role")] = (
        AdminRole.SUPER_ADMIN
    ),
) -> None:
    """Create an administrator account."""
    from promptstack.core.errors import AppError, ValidationFailed

    settings = _settings()
    _database_ready(settings)
    name = username or email.split("@", 1)[0]
    try:
        with _plainly(settings):
            user = asyncio.run(_create_admin(settings, email, password, name, role))
    except AppError as exc:
        hint = ""
        if username is None and isinstance(exc, ValidationFailed) and exc.loc[-1:] == ("username",):
            hint = f" ('{name}' comes from the email; choose another with --username)"
        console.print(f"[red]{escape(exc.detail + hint)}[/red]")
        raise typer.Exit(1) from exc
    console.print(f"[green]Created {role.value} {user} .[/green]")


async def _create_admin(
    settings: Settings, email: str, password: str, username: str, role: AdminRole
) -> str:
    from promptstack.accounts.models import Role
    from promptstack.accounts.service import NewAccount
    from promptstack.bootstrap import bootstrap

    container = bootstrap(settings)
    try:
        user = await container.accounts.service.register(
            NewAccount(email=email, username=username, password=password), role=Role(role.value)
        )
        return f"{user.username} <{user.email}>"
    finally:
        await container.aclose()


@app.command("import-products")
def import_products(
    file: Annotated[
        Path,
        typer.Argument(exists=True, dir_okay=False, readable=True, help="A CSV file, UTF-8"),
    ],
    dry_run: Annotated[
        bool, typer.Option(help="Check every row and count the changes; write nothing")
    ] = False,
) -> None:
    """Add products from a CSV file, or update those whose SKU exists.

    The header names the columns: sku, name, price_cents and currency, and optionally
    description, stock, kind, credits and active. A row that breaks a rule is reported
    with its line number and skipped; the command then exits with status 1.
    """
    from promptstack.shop.catalog.importing import UnreadableFile

    settings = _settings()
    _database_ready(settings)
    try:
        with _plainly(settings):
            report = asyncio.run(_import_products(settings, file, dry_run=dry_run))
    except (UnreadableFile, UnicodeDecodeError) as exc:
        console.print(f"[red]Cannot import {escape(str(file))}: {escape(str(exc))}[/red]")
        raise typer.Exit(2) from exc
    for rejected in report.rejected:
        console.print(f"[red]line {rejected.line}:[/red] {escape(rejected.reason)}", soft_wrap=True)
    verb = "would be" if dry_run else "were"
    console.print(
        f"{report.rows} row(s): {report.created} product(s) {verb} added, {report.updated} "
        f"{verb} updated, {len(report.rejected)} rejected."
    )
    if report.rejected:
        raise typer.Exit(1)


async def _import_products(settings: Settings, path: Path, *, dry_run: bool) -> ImportReport:
    import csv

    from rich.progress import Progress

    from promptstack.bootstrap import bootstrap
    from promptstack.shop.catalog.importing import import_products as run_import

    with path.open(encoding="utf-8-sig", newline="") as counting:
        rows = max(sum(1 for _ in csv.reader(counting)) - 1, 0)
    container = bootstrap(settings)
    try:
        with (
            Progress(console=console, transient=True) as progress,
            path.open(encoding="utf-8-sig", newline="") as file,
        ):
            task = progress.add_task("Checking" if dry_run else "Importing", total=rows)
            return await run_import(
                container.shop.catalog,
                file,
                dry_run=dry_run,
                advanced=lambda n: progress.advance(task, n),
            )
    finally:
        await container.aclose()


PROJECTIONS = ("orders",)


@app.command("rebuild-projections")
def rebuild_projections(
    projection: Annotated[
        str | None,
        typer.Option(help=f"Only this read model (one of: {', '.join(PROJECTIONS)})"),
    ] = None,
) -> None:
    """Write the read models again from the event store, while the service runs.

    Each view is replaced by what its stream gives; the live projection goes on
    meanwhile, and a newer state it writes is never overwritten by the rebuild.
    """
    if projection is not None and projection not in PROJECTIONS:
        console.print(
            f"[red]No projection {escape(projection)!r}; there is: {', '.join(PROJECTIONS)}.[/red]"
        )
        raise typer.Exit(2)
    settings = _settings()
    _database_ready(settings)
    with _plainly(settings):
        written = asyncio.run(_rebuild_projections(settings))
    console.print(f"Rebuilt {written} order view(s) from the event store.")


async def _rebuild_projections(settings: Settings) -> int:
    from rich.progress import Progress

    from promptstack.bootstrap import bootstrap

    container = bootstrap(settings)
    try:
        with Progress(console=console, transient=True) as progress:
            task = progress.add_task("Rebuilding orders", total=None)
            return await container.shop.projection.rebuild(
                lambda done, total: progress.update(task, completed=done, total=total)
            )
    finally:
        await container.aclose()


@app.command()
def reembed(
    everything: Annotated[
        bool, typer.Option("--all", help="Every document, not only those of another model")
    ] = False,
) -> None:
    """Embed documents again with the configured model, after a change of model.

    Each document whose chunks another model made is cut and embedded again, and its
    chunks replaced at once; search goes on meanwhile, and finds a document by the new
    model as soon as its turn is over.
    """
    settings = _settings()
    _database_ready(settings)
    with _plainly(settings):
        done, model = asyncio.run(_reembed(settings, everything=everything))
    console.print(f"Embedded {done} document(s) again with {model}.")


async def _reembed(settings: Settings, *, everything: bool) -> tuple[int, str]:
    from rich.progress import Progress

    from promptstack.bootstrap import bootstrap

    container = bootstrap(settings)
    indexer = container.documents.indexer
    try:
        with Progress(console=console, transient=True) as progress:
            task = progress.add_task(f"Embedding with {indexer.embedder.name}", total=None)
            done = await indexer.reembed(
                everything=everything,
                advanced=lambda n, total: progress.update(task, completed=n, total=total),
            )
        return done, indexer.embedder.name
    finally:
        await container.aclose()


DEMO_EMAIL = "demo@example.com"
DEMO_PASSWORD = "demo-password-1234"  # noqa: S105  (public by design; refused in production)


@app.command("seed-demo")
def seed_demo() -> None:
    """Stock the sample catalog (goods and a credits pack) and create the demo user.

    Running it again changes nothing: products whose SKU exists and an existing demo
    user are left as they are. Refused in production, since the demo password is public.
    """
    settings = _settings()
    if settings.environment == "production":
        console.print(
            "[red]seed-demo creates a user with a public password: not in production.[/red]"
        )
        raise typer.Exit(2)
    _database_ready(settings)
    with _plainly(settings):
        added, user_created = asyncio.run(_seed_demo(settings))
    console.print(f"Added {added} demo product(s).")
    if user_created:
        console.print(f"Created the demo user {DEMO_EMAIL} (password {DEMO_PASSWORD}).")
    else:
        console.print(f"The demo user {DEMO_EMAIL} exists already; left as it is.")


async def _seed_demo(settings: Settings) -> tuple[int, bool]:
    from promptstack.accounts.service import NewAccount
    from promptstack.bootstrap import bootstrap
    from promptstack.core.errors import Conflict
    from promptstack.shop.catalog.demo import DEMO_PRODUCT_IDS, DEMO_PRODUCTS

    container = bootstrap(settings)
    try:
        imported = await container.shop.catalog.import_products(
            DEMO_PRODUCTS, update=False, ids=DEMO_PRODUCT_IDS
        )
        try:
            await container.accounts.service.register(
                NewAccount(
                    email=DEMO_EMAIL,
                    username="demo",
                    password=DEMO_PASSWORD,
                    full_name="Demo Customer",
                )
            )
        except Conflict:  # the email or username is taken: by the demo user, once seeded
            return imported.created, False
        return imported.created, True
    finally:
        await container.aclose()


def _share_metrics_between_workers(folder: Path | None) -> None:
    """Give the worker processes one folder for their metrics, emptied of a previous run.

    prometheus-client reads the folder from the environment when a worker starts, which
    is why it is passed that way rather than through Settings.
    """
    if folder is None:
        folder = Path(tempfile.mkdtemp(prefix="promptstack-metrics-"))
    folder.mkdir(parents=True, exist_ok=True)
    for stale in folder.glob("*.db"):
        stale.unlink()
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(folder)
