"""Outgoing email through one of three backends chosen by `EMAIL_BACKEND`."""

from __future__ import annotations

import asyncio
import mailbox
from dataclasses import dataclass
from email.message import EmailMessage
from pathlib import Path
from typing import Protocol

import aiosmtplib

from promptstack.core.logging import get_logger
from promptstack.core.settings import Settings

log = get_logger(__name__)


@dataclass(frozen=True, slots=True)
class Email:
    to: str
    subject: str
    body: str


class Mailer(Protocol):
    async def send(self, email: Email) -> None: ...


def _message(email: Email, sender: str) -> EmailMessage:
    message = EmailMessage()
    message["From"] = sender
    message["To"] = email.to
    message["Subject"] = email.subject
    message.set_content(email.body)
    return message


class MaildirMailer:
    """Delivers into a Maildir folder, so any mail reader can open what was sent."""

    def __init__(self, path: Path, sender: str) -> None:
        self.path = path
        self.sender = sender

    async def send(self, email: Email) -> None:
        await asyncio.to_thread(self._deliver, _message(email, self.sender))

    def _deliver(self, message: EmailMessage) -> None:
        # Made here rather than by Maildir(create=True), which skips the sub-folders when
        # the top folder exists and so races with a concurrent first delivery.
        for folder in ("tmp", "new", "cur"):
            (self.path / folder).mkdir(parents=True, exist_ok=True)
        box = mailbox.Maildir(self.path, create=False)
        try:
            box.add(message)
        finally:
            box.close()


class ConsoleMailer:
    """Writes each email to the log instead of sending it."""

    def __init__(self, sender: str) -> None:
        self.sender = sender

    async def send(self, email: Email) -> None:
        log.info("email", to=email.to, subject=email.subject, body=email.body)


class SmtpMailer:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    async def send(self, email: Email) -> None:
        s = self.settings
        await aiosmtplib.send(
            _message(email, s.email_from),
            hostname=s.smtp_host,
            port=s.smtp_port,
            username=s.smtp_username,
            password=s.smtp_password.get_secret_value() if s.smtp_password else None,
            use_tls=s.smtp_use_tls,
            start_tls=s.smtp_starttls if not s.smtp_use_tls else False,
            timeout=s.smtp_timeout,
        )


def build_mailer(settings: Settings) -> Mailer:
    if settings.email_backend == "smtp":
        return SmtpMailer(settings)
    if settings.email_backend == "console":
        return ConsoleMailer(settings.email_from)
    return MaildirMailer(settings.maildir_path, settings.email_from)
