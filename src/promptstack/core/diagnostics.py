"""One line a person can act on, for the failures a command meets when it starts.

A refused connection, a missing database, wrong credentials or a SQLite file that cannot
be opened arrive as driver exceptions several layers deep; `explain` finds the cause in
the chain and says what is wrong and what to do, without the traceback. A failure it
does not recognise is left to propagate as it is.
"""

from __future__ import annotations

import socket
import sqlite3
from collections.abc import Iterator
from urllib.parse import urlsplit

from sqlalchemy.engine import make_url

# PostgreSQL's SQLSTATE codes (appendix A of its manual) for what a user can fix.
_NO_SUCH_DATABASE = "3D000"
_WRONG_PASSWORD = "28P01"  # noqa: S105 -- an error code, not a secret
_NOT_ALLOWED = "28000"


def causes(error: BaseException) -> Iterator[BaseException]:
    """The error, what caused it, and what it interrupted, once each."""
    seen: set[int] = set()
    pending: list[BaseException | None] = [error]
    while pending:
        current = pending.pop(0)
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        pending += [getattr(current, "orig", None), current.__cause__, current.__context__]


def sqlstate(error: BaseException) -> str | None:
    """PostgreSQL's SQLSTATE code for `error`, found wherever the drivers put it."""
    for cause in causes(error):
        state = getattr(cause, "sqlstate", None)
        if state:
            return str(state)
    return None


def explain_database(error: BaseException, url: str) -> str | None:
    """Why the database at `url` cannot be used, with a hint; None if not known."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        for cause in causes(error):
            if isinstance(cause, sqlite3.OperationalError) and "unable to open" in str(cause):
                return (
                    f"cannot open the SQLite file {parsed.database}: does its folder exist, "
                    "and may this user write there?"
                )
        return None
    server = f"{parsed.host or 'localhost'}:{parsed.port or 5432}"
    state = sqlstate(error)
    if state == _NO_SUCH_DATABASE:
        return (
            f'the database "{parsed.database}" does not exist on {server}: create it with '
            "`promptstack migrate --create-database`"
        )
    if state in (_WRONG_PASSWORD, _NOT_ALLOWED):
        return (
            f'PostgreSQL at {server} refused the user "{parsed.username}": '
            "check the user and password in DATABASE_URL"
        )
    for cause in causes(error):
        found = _unreachable(cause, f"PostgreSQL at {server}", "DATABASE_URL")
        if found:
            return found
    return None


def explain_broker(error: BaseException, url: str, setting: str) -> str | None:
    """Why the message broker at `url` (AMQP_URL, CELERY_BROKER_URL) cannot be used."""
    parsed = urlsplit(url)
    where = f"the broker at {parsed.hostname or 'localhost'}:{parsed.port or 5672}"
    for cause in causes(error):
        found = _unreachable(cause, where, setting)
        if found:
            return found
        if "ACCESS_REFUSED" in str(cause) or "authentication" in str(cause).lower():
            return f"{where} refused the user {parsed.username!r}: check {setting}"
    return None


def _unreachable(cause: BaseException, where: str, setting: str) -> str | None:
    if isinstance(cause, socket.gaierror):
        return f"cannot find the host of {where}: check {setting}"
    if isinstance(cause, ConnectionRefusedError) or (
        isinstance(cause, OSError) and "Connect call failed" in str(cause)
    ):
        return f"cannot connect to {where}: connection refused; is it running? ({setting})"
    if isinstance(cause, TimeoutError):
        return f"{where} did not answer in time: is {setting} right, and the server up?"
    return None
