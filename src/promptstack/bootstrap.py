"""The composition root: the one place that builds every service from `Settings`.

The API, the CLI and (later) the worker and the relay all start here, so no entry point
has wiring of its own. Tests pass their own clock, id source or mailer instead of
patching modules.
"""

from __future__ import annotations

from dataclasses import dataclass

from promptstack.core.background import BackgroundTasks
from promptstack.core.clock import Clock, SystemClock
from promptstack.core.database import Database
from promptstack.core.email import Mailer, build_mailer
from promptstack.core.ids import IdSource, RandomIds
from promptstack.core.security import PasswordHasher, TokenCodec
from promptstack.core.settings import Settings
from promptstack.repositories.unit_of_work import UnitOfWorkFactory
from promptstack.services.account_mail import AccountMail
from promptstack.services.accounts import AccountService
from promptstack.services.audit import AuditLog, Auditor
from promptstack.services.auth import AuthService


@dataclass(frozen=True, slots=True)
class Container:
    settings: Settings
    clock: Clock
    database: Database
    background: BackgroundTasks
    tokens: TokenCodec
    auth: AuthService
    accounts: AccountService
    audit_log: AuditLog

    async def aclose(self) -> None:
        """Let background work finish within the grace period, then close the pools."""
        await self.background.drain(grace=self.settings.shutdown_grace_seconds)
        await self.database.dispose()


def bootstrap(
    settings: Settings | None = None,
    *,
    clock: Clock | None = None,
    ids: IdSource | None = None,
    mailer: Mailer | None = None,
) -> Container:
    settings = settings or Settings()
    clock = clock or SystemClock()
    ids = ids or RandomIds()
    database = Database(settings)
    uow = UnitOfWorkFactory(database)
    background = BackgroundTasks()
    hasher = PasswordHasher(settings)
    tokens = TokenCodec(settings, clock)
    auditor = Auditor(clock, ids)
    mail = AccountMail(settings, mailer or build_mailer(settings), background, clock, ids)
    return Container(
        settings=settings,
        clock=clock,
        database=database,
        background=background,
        tokens=tokens,
        auth=AuthService(settings, uow, hasher, tokens, mail, auditor, background, clock, ids),
        accounts=AccountService(uow, hasher, mail, auditor, clock, ids),
        audit_log=AuditLog(uow),
    )
