"""Account emails, sent by consumers so that a crash after the commit delays them but
never loses them."""

from __future__ import annotations

from promptstack.accounts.events import (
    EmailChanged,
    PasswordResetRequested,
    UserRegistered,
    VerificationRequested,
)
from promptstack.accounts.mail import AccountMail
from promptstack.accounts.recovery import AccountRecovery
from promptstack.core.envelope import Envelope
from promptstack.core.unit_of_work import UnitOfWork
from promptstack.events.consumers import Consumers


def register(consumers: Consumers, recovery: AccountRecovery, mail: AccountMail) -> None:
    async def welcome(event: UserRegistered, _: Envelope, uow: UnitOfWork) -> None:
        await mail.welcome_new_account(uow, event.user_id)

    async def verify_new(event: UserRegistered, _: Envelope, uow: UnitOfWork) -> None:
        await recovery.send_verification(uow, event.user_id)

    async def verify_changed(event: EmailChanged, _: Envelope, uow: UnitOfWork) -> None:
        await recovery.send_verification(uow, event.user_id)

    async def verify_requested(event: VerificationRequested, _: Envelope, uow: UnitOfWork) -> None:
        await recovery.send_verification(uow, email=event.email)

    async def reset(event: PasswordResetRequested, _: Envelope, uow: UnitOfWork) -> None:
        await recovery.send_password_reset(uow, event)

    consumers.on("mail.welcome", UserRegistered, welcome)
    consumers.on("mail.verification", UserRegistered, verify_new)
    consumers.on("mail.verification", EmailChanged, verify_changed)
    consumers.on("mail.verification", VerificationRequested, verify_requested)
    consumers.on("mail.password_reset", PasswordResetRequested, reset)
